package e2e

import (
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
