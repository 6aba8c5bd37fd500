package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A --cidr no namespace can have is refused before anything starts, in one
// line, for every driver: the empty one (unroot run; RootlessKit takes
// --cidr= as the default), and unspecified, loopback and multicast
// networks, which used to pass unroot's check and fail inside slirp4netns
// (or make pasta pick another network).
func TestBadCIDR(t *testing.T) {
	t.Parallel()
	type tc struct {
		args []string
		want string
	}
	tests := []tc{
		{[]string{"unroot", "run", "--cidr=", "true"}, "unroot: cidr is empty"},
		{[]string{"unroot", "run", "--net=none", "--cidr=", "true"}, "unroot: --cidr cannot be used with --net=none"},
		{[]string{"rootlesskit", "--net=slirp4netns", "--cidr=0.0.0.0/0", "true"}, "[rootlesskit:parent] error: cidr 0.0.0.0/0 contains unspecified addresses"},
	}
	for _, net := range []string{"slirp4netns", "pasta", "netstack"} {
		for cidr, what := range map[string]string{"0.0.0.0/0": "unspecified", "127.0.0.0/8": "loopback", "224.0.0.0/4": "multicast", "64.0.0.0/2": "loopback"} {
			tests = append(tests, tc{[]string{"unroot", "run", "--net=" + net, "--cidr=" + cidr, "true"}, "unroot: cidr " + cidr + " contains " + what + " addresses"})
		}
	}
	for _, tt := range tests {
		r := RunUser(t, 10*time.Second, tt.args[0], tt.args[1:]...)
		lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
		if r.Code != 1 || !strings.HasPrefix(r.Stderr, tt.want) || len(lines) != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 1 and one line starting %q", tt.args, r.Code, r.Stderr, tt.want)
		}
	}
}

// An IPv6 --cidr alone makes the namespace IPv6-only with that prefix
// (slirp4netns#349), for pasta and netstack: the address and default route
// come from the prefix, there is no IPv4 but loopback's, resolv.conf names
// the driver's IPv6 DNS, published ports and forwards work. slirp4netns,
// which cannot, says which drivers can.
func TestIPv6OnlyCIDR(t *testing.T) {
	t.Parallel()
	cl := fwClient(t)
	svc := startFwServices(t)
	www := filepath.Join(TempDir(t), "www")
	os.MkdirAll(www, 0o755)
	os.WriteFile(filepath.Join(www, "index.html"), []byte("v6 only inside\n"), 0o644)
	for net, dns := range map[string]string{"pasta": "fd12:3456:1::3", "netstack": "fd12:3456:1::1"} {
		hostPort := ptPorts(t, 1)[0]
		state, pid, _, _ := lcStart(t, "unroot", "run", "--net="+net, "--cidr=fd12:3456:1::/64",
			"-p", fmt.Sprintf("127.0.0.1:%d:80/tcp", hostPort),
			"--forward=127.0.0.1:"+strconv.Itoa(svc.tcpPort)+":5000/tcp",
			"busybox", "httpd", "-f", "-p", "80", "-h", www)
		inside := func(args ...string) string {
			out, err := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(pid), "-n"}, args...)...).CombinedOutput()
			if err != nil {
				t.Errorf("--net=%s: %v: %v: %s", net, args, err, out)
			}
			return string(out)
		}
		if out := inside("ip", "-o", "addr", "show", "tap0"); !strings.Contains(out, "inet6 fd12:3456:1::100/64") || strings.Contains(out, "inet ") {
			t.Errorf("--net=%s: tap0 = %q; want fd12:3456:1::100/64 and no IPv4", net, out)
		}
		if out := inside("ip", "-4", "route"); strings.TrimSpace(out) != "" {
			t.Errorf("--net=%s: IPv4 routes %q in an IPv6-only namespace", net, out)
		}
		if out := inside("ip", "-6", "route", "show", "default"); !strings.Contains(out, "default via fd12:3456:1::") {
			t.Errorf("--net=%s: IPv6 default route %q", net, out)
		}
		if b, err := os.ReadFile(filepath.Join(state, "resolv.conf")); err != nil || strings.TrimSpace(string(b)) != "nameserver "+dns {
			t.Errorf("--net=%s: resolv.conf %q, %v; want nameserver %s", net, b, err, dns)
		}
		// child_pid is written as httpd starts, not once it listens.
		waitListening(t, pid, 80, 20*time.Second)
		resp, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/", hostPort))
		if err != nil || resp != "v6 only inside\n" {
			t.Errorf("--net=%s: published port = %q, %v", net, resp, err)
		}
		if out := inside(cl, "tcp", "@tap06:5000", "v6"); out != "tcp:v6\n" {
			t.Errorf("--net=%s: forward at the IPv6 tap address = %q", net, out)
		}
	}
	r := RunUser(t, 10*time.Second, "unroot", "run", "--net=slirp4netns", "--cidr=fd12:3456:1::/64", "true")
	if r.Code != 1 || !strings.Contains(r.Stderr, "use --net=pasta or --net=netstack") || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
		t.Errorf("slirp4netns IPv6-only: exit %d, stderr %q; want one line naming pasta and netstack", r.Code, r.Stderr)
	}
	r = RunUser(t, 10*time.Second, "unroot", "run", "--net=pasta", "--cidr=fd12:3456::/48", "true")
	if r.Code != 1 || !strings.Contains(r.Stderr, "pasta gives its IPv6 address a /64") {
		t.Errorf("pasta /48: exit %d, stderr %q", r.Code, r.Stderr)
	}
}

func httpGet(url string) (string, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
