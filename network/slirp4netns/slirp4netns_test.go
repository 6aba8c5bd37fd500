package slirp4netns

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/unroot/unroot/internal/testutil"
	"github.com/unroot/unroot/network"
	"github.com/unroot/unroot/network/internal/nstest"
)

func TestMain(m *testing.M) {
	nstest.Main(m, func(c network.Config, o Options) (network.Driver, error) { return New(c, o) })
}

var allFlags = map[string]bool{
	"--netns-type": true, "--userns-path": true, "--enable-sandbox": true, "--enable-seccomp": true,
	"--disable-host-loopback": true, "--exit-fd": true, "--enable-ipv6": true, "--cidr": true, "--api-socket": true,
}

func TestBuildArgs(t *testing.T) {
	def, _ := network.Config{}.WithDefaults()
	attached := network.Child{PID: 42, NetNS: "/proc/42/ns/net", UserNS: "/proc/42/ns/user"}
	detached := network.Child{PID: 42, NetNS: "/proc/42/root/run/x/netns", UserNS: "/proc/42/ns/user", Detached: true}
	custom := def
	custom.CIDR = netip.MustParsePrefix("10.41.0.0/16")
	custom.DisableHostLoopback = true
	custom.IPv6 = true
	custom.MTU = 1500
	custom.IfName = "eth0"
	tests := []struct {
		name string
		cfg  network.Config
		c    network.Child
		o    startOpts
		want string
	}{
		{"defaults", def, attached, startOpts{}, "--mtu 65520 --ready-fd 3 42 tap0"},
		{"everything", custom, attached, startOpts{exitFD: true, sandbox: true, seccomp: true, apiSocket: "/s/.s4nn.sock"},
			"--mtu 1500 --ready-fd 3 --exit-fd 4 --disable-host-loopback --cidr 10.41.0.0/16 --api-socket /s/.s4nn.sock --enable-sandbox --enable-seccomp --enable-ipv6 42 eth0"},
		{"detached", def, detached, startOpts{exitFD: true},
			"--mtu 65520 --ready-fd 3 --exit-fd 4 --userns-path=/proc/42/ns/user --netns-type=path /proc/42/root/run/x/netns tap0"},
	}
	for _, tt := range tests {
		got, err := buildArgs(tt.cfg, tt.c, tt.o)
		if err != nil || strings.Join(got, " ") != tt.want {
			t.Errorf("%s: buildArgs = %q, %v\nwant %q", tt.name, strings.Join(got, " "), err, tt.want)
		}
	}
	if _, err := buildArgs(def, network.Child{}, startOpts{}); err == nil {
		t.Error("buildArgs with no pid: want error")
	}
	if _, err := buildArgs(def, network.Child{Detached: true}, startOpts{}); err == nil {
		t.Error("buildArgs detached without paths: want error")
	}
}

func TestResolve(t *testing.T) {
	old := seccompFilter
	defer func() { seccompFilter = old }()
	seccompFilter = func() bool { return true }
	mk := func(opts Options, mod func(*network.Config)) *Driver {
		cfg := network.Config{Binary: "/bin/true"}
		if mod != nil {
			mod(&cfg)
		}
		d, err := New(cfg, opts)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	attached, detached := network.Child{PID: 1}, network.Child{PID: 1, Detached: true}
	tests := []struct {
		name    string
		d       *Driver
		flags   map[string]bool
		c       network.Child
		want    startOpts
		wantErr string
	}{
		{"default off", mk(Options{}, nil), allFlags, attached, startOpts{exitFD: true}, ""},
		{"auto attached", mk(Options{Sandbox: network.Auto, Seccomp: network.Auto}, nil), allFlags, attached, startOpts{sandbox: true, seccomp: true, exitFD: true}, ""},
		{"auto detached", mk(Options{Sandbox: network.Auto, Seccomp: network.Auto}, nil), allFlags, detached, startOpts{seccomp: true, exitFD: true}, ""},
		{"auto unsupported", mk(Options{Sandbox: network.Auto, Seccomp: network.Auto}, nil), map[string]bool{}, attached, startOpts{}, ""},
		{"sandbox true detached", mk(Options{Sandbox: network.On}, nil), allFlags, detached, startOpts{},
			"--slirp4netns-sandbox=true cannot be used with --detach-netns: use --slirp4netns-sandbox=auto or false"},
		{"seccomp true unsupported", mk(Options{Seccomp: network.On}, nil), map[string]bool{}, attached, startOpts{}, "does not support --enable-seccomp"},
		{"detached old", mk(Options{}, nil), map[string]bool{}, detached, startOpts{}, "does not support --netns-type, needed for --detach-netns"},
		{"loopback old", mk(Options{}, func(c *network.Config) { c.DisableHostLoopback = true }), map[string]bool{}, attached, startOpts{}, "does not support --disable-host-loopback"},
	}
	for _, tt := range tests {
		got, err := tt.d.resolve(tt.flags, tt.c)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: error = %v, want %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: resolve = %+v, %v, want %+v", tt.name, got, err, tt.want)
		}
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		cfg  network.Config
		opts Options
		want string
	}{
		{network.Config{Binary: "/nonexistent/slirp4netns"}, Options{}, "slirp4netns binary /nonexistent/slirp4netns: "},
		{network.Config{Binary: "/bin/true"}, Options{Sandbox: 7}, `Options.Sandbox 7 or Options.Seccomp 0 is not a network.TriState`},
		{network.Config{Binary: "/bin/true", CIDR: netip.MustParsePrefix("10.0.2.100/24")}, Options{}, "cidr must be like 10.0.2.0/24, not like 10.0.2.100/24"},
		{network.Config{Binary: "/bin/true", MTU: 65522}, Options{}, "mtu must be <= 65521"},
		// slirp4netns#349: no IPv6-only network; say which driver can.
		{network.Config{Binary: "/bin/true", CIDR: netip.MustParsePrefix("fd12:3456::/64")}, Options{}, "slirp4netns cannot make an IPv6-only network (--cidr=fd12:3456::/64): it always has IPv4, and its IPv6 (--ipv6) is fixed to fd00::/64; use --net=pasta or --net=netstack"},
	}
	for _, tt := range tests {
		_, err := New(tt.cfg, tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v, %+v) error = %v, want %q", tt.cfg, tt.opts, err, tt.want)
		}
	}
	t.Setenv("PATH", t.TempDir())
	_, err := New(network.Config{}, Options{})
	if err == nil || !strings.HasPrefix(err.Error(), "slirp4netns not found in PATH: install it (apt-get install slirp4netns), or use --net=pasta") {
		t.Errorf("New without slirp4netns in PATH: %v", err)
	}
}

// slirp4netns's sandbox seteuid(0)s in the child's user namespace, which
// fails until the ids are mapped: only without it may the driver start
// before the mapping.
func TestPreTapBeforeIDMap(t *testing.T) {
	for sandbox, want := range map[network.TriState]bool{network.Off: true, network.On: false, network.Auto: false} {
		d, err := New(network.Config{Binary: "/bin/true"}, Options{Sandbox: sandbox})
		if err != nil {
			t.Fatal(err)
		}
		if got := d.PreTap().BeforeIDMap; got != want {
			t.Errorf("sandbox %q: BeforeIDMap = %v, want %v", sandbox, got, want)
		}
	}
}

func TestInfo(t *testing.T) {
	d, err := New(network.Config{Binary: "/bin/true", IPv6: true}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	i := d.Info()
	if i.Driver != "slirp4netns" || i.ChildIP != "10.0.2.100" || !slices.Equal(i.DNS, []string{"10.0.2.3", "fd00::3"}) {
		t.Errorf("Info = %+v", i)
	}
}

// configure does in the namespace what the launcher's child does with netlink.
func configure(t *testing.T, s *nstest.Session) {
	t.Helper()
	st := s.Setup
	for _, cmd := range [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"ip", "link", "set", st.IfName, "mtu", fmt.Sprint(st.MTU), "up"},
		{"ip", "addr", "add", st.Addr.String(), "dev", st.IfName},
		{"ip", "route", "add", "default", "via", st.Gateway.String(), "dev", st.IfName},
	} {
		if out, err := s.Exec(5*time.Second, cmd...); err != nil {
			t.Fatalf("%v: %v: %s", cmd, err, out)
		}
	}
	if st.Addr6.IsValid() {
		for _, cmd := range [][]string{
			{"ip", "-6", "addr", "add", st.Addr6.String(), "dev", st.IfName, "nodad"},
			{"ip", "-6", "route", "add", "default", "via", st.Gateway6.String(), "dev", st.IfName},
		} {
			if out, err := s.Exec(5*time.Second, cmd...); err != nil {
				t.Fatalf("%v: %v: %s", cmd, err, out)
			}
		}
	}
}

func apiCall(t *testing.T, sock, req string) string {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("dial API socket: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	c.(*net.UnixConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read API socket: %v", err)
	}
	return string(b)
}

func hostServer(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello from the host") })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

func checkGone(t *testing.T, s *nstest.Session) {
	t.Helper()
	if len(s.HelperPIDs) == 0 {
		t.Fatal("no helper process was seen")
	}
	if left := nstest.WaitGone(s.HelperPIDs, 10*time.Second); len(left) > 0 {
		t.Errorf("helper processes %v still running", left)
	}
}

func TestDriverUnprivileged(t *testing.T) {
	for _, tc := range []struct {
		name     string
		detached bool
		noLoop   bool
		opts     Options
	}{
		{name: "attached", opts: Options{Sandbox: network.Auto, Seccomp: network.Auto, APISocket: true}},
		{name: "attached-no-host-loopback", noLoop: true},
		{name: "detached", detached: true, opts: Options{Sandbox: network.Auto, Seccomp: network.Auto}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, _ := json.Marshal(tc.opts)
			s := nstest.Start(t, nstest.Spec{Detached: tc.detached, Config: network.Config{DisableHostLoopback: tc.noLoop}, Options: opts})
			if s.Err != "" {
				t.Fatalf("Start: %s", s.Err)
			}
			t.Logf("Start took %.1f ms", s.StartMS)
			if s.Setup.Addr.String() != "10.0.2.100/24" || s.Setup.Gateway.String() != "10.0.2.2" || s.Setup.MTU != 65520 || s.Setup.IfName != "tap0" {
				t.Errorf("Setup = %+v", s.Setup)
			}
			if tc.opts.APISocket {
				sock := s.APISocket
				if fi, err := os.Stat(sock); err != nil || fi.Mode().Type() != os.ModeSocket {
					t.Errorf("API socket %q: %v", sock, err)
				}
				// It answers as soon as Start returns.
				if got := apiCall(t, sock, `{"execute":"list_hostfwd"}`); !strings.Contains(got, `"entries"`) {
					t.Errorf("list_hostfwd answered %q", got)
				}
			}
			if want := `{"driver":"slirp4netns","dns":["10.0.2.3"],"childIP":"10.0.2.100"}`; string(s.Info) != want {
				t.Errorf("Info = %s, want %s", s.Info, want)
			}
			links, err := s.Exec(5*time.Second, "cat", "/proc/net/dev")
			if err != nil || !strings.Contains(links, "tap0:") {
				t.Fatalf("tap0 not in the namespace: %v %s", err, links)
			}
			configure(t, s)
			port := hostServer(t)
			// Room for a loaded machine where the answer must come; a short
			// wait where none may.
			maxTime := "15"
			if tc.noLoop {
				maxTime = "3"
			}
			out, err := s.Exec(20*time.Second, "curl", "-sS", "--max-time", maxTime, fmt.Sprintf("http://10.0.2.2:%d/", port))
			if tc.noLoop {
				if err == nil {
					t.Errorf("reached the host's loopback through 10.0.2.2 with DisableHostLoopback: %s", out)
				}
			} else if err != nil || out != "hello from the host" {
				t.Errorf("curl host loopback via 10.0.2.2: %v %q", err, out)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			checkGone(t, s)
			if sock := s.APISocket; sock != "" {
				if _, err := os.Stat(sock); err == nil {
					t.Errorf("API socket %s left behind", sock)
				}
			}
		})
	}
}

// With --ipv6 the child gets fd00::100/64 and a route via fd00::2 at once,
// reaches the host's loopback (::1) through fd00::2, and DNS includes fd00::3.
func TestDriverIPv6(t *testing.T) {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatalf("host has no IPv6 loopback (::1): %v; enable it: sysctl -w net.ipv6.conf.lo.disable_ipv6=0", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello over IPv6") })}
	go srv.Serve(l)
	defer srv.Close()
	s := nstest.Start(t, nstest.Spec{Config: network.Config{IPv6: true}})
	if s.Err != "" {
		t.Fatalf("Start: %s", s.Err)
	}
	if want := `{"driver":"slirp4netns","dns":["10.0.2.3","fd00::3"],"childIP":"10.0.2.100","ipv6":true}`; string(s.Info) != want {
		t.Errorf("Info = %s, want %s", s.Info, want)
	}
	if s.Setup.Addr6.String() != "fd00::100/64" || s.Setup.Gateway6.String() != "fd00::2" {
		t.Errorf("Setup IPv6 = %s via %s, want fd00::100/64 via fd00::2", s.Setup.Addr6, s.Setup.Gateway6)
	}
	configure(t, s)
	port := l.Addr().(*net.TCPAddr).Port
	out, err := s.Exec(20*time.Second, "curl", "-sS", "--max-time", "15", fmt.Sprintf("http://[fd00::2]:%d/", port))
	if err != nil || out != "hello over IPv6" {
		t.Errorf("curl the host's ::1 via fd00::2: %v %q", err, out)
	}
}

// When unroot is SIGKILLed, slirp4netns must go too.
func TestHelperDiesWithParent(t *testing.T) {
	s := nstest.Start(t, nstest.Spec{})
	if s.Err != "" {
		t.Fatalf("Start: %s", s.Err)
	}
	s.Kill()
	checkGone(t, s)
}

// A child that is not a process must fail fast with slirp4netns's reason.
func TestStartFailureSaysWhy(t *testing.T) {
	testutil.RequireTool(t, "slirp4netns", "slirp4netns")
	d, err := New(network.Config{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// pid 2^22+1 is above pid_max, so it never exists.
	_, err = d.Start(t.Context(), network.Child{PID: 1<<22 + 1})
	if err == nil {
		d.Close()
		t.Fatal("Start against a missing pid succeeded")
	}
	if !strings.HasPrefix(err.Error(), "start slirp4netns: exited (exit status 1) before it was ready: ") || strings.Contains(err.Error(), "\n") {
		t.Errorf("error = %q", err)
	}
}
