package doctor

import (
	"errors"
	"strings"
	"testing"
)

func TestWithoutFixes(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"plain", "plain"},
		{"open /dev/net/tun: permission denied; fix: sudo chmod 0666 /dev/net/tun (in a container: pass --device /dev/net/tun)", "open /dev/net/tun: permission denied"},
		{"start network driver slirp4netns: start slirp4netns: exited: child failed(1); fix: /dev/net/tun is not readable", "start network driver slirp4netns: start slirp4netns: exited: child failed(1)"},
		{"a (b; fix: c (d)) e; fix: f", "a (b) e"},
		{"x; fix: y\nnext line", "x\nnext line"},
		{"; fix: ", ""},
	} {
		if got := withoutFixes(tt.in); got != tt.want {
			t.Errorf("withoutFixes(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// An explained error prints its fix once: the driver's own hint inside the
// wrapped error is dropped in favour of the check's fix.
func TestExplainedErrorPrintsFixOnce(t *testing.T) {
	inner := errors.New("start network driver netstack: open tap tap0 in the namespace: open /dev/net/tun: permission denied; fix: sudo chmod 0666 /dev/net/tun (in a container: pass --device /dev/net/tun)")
	e := &Error{Err: inner, Result: Result{Status: Fail, Detail: "cannot open /dev/net/tun: permission denied", Fix: "sudo chmod 0666 /dev/net/tun\nto keep it across reboots: …"}}
	msg := e.Error()
	if n := strings.Count(msg, "fix:"); n != 1 {
		t.Errorf("%d fixes in %q, want 1", n, msg)
	}
	if n := strings.Count(msg, "chmod 0666"); n != 1 {
		t.Errorf("the chmod fix appears %d times in %q, want once", n, msg)
	}
	if !errors.Is(e, inner) {
		t.Error("the explained error no longer wraps the original")
	}
	// Without a fix of its own, the check leaves the error's hint alone.
	e.Result.Fix = ""
	if !strings.Contains(e.Error(), "; fix: sudo chmod") {
		t.Errorf("hint dropped although the check has none: %q", e.Error())
	}
}

func FuzzWithoutFixes(f *testing.F) {
	f.Add("a; fix: b (c) d)")
	f.Add("; fix: ; fix: ((")
	f.Fuzz(func(t *testing.T, s string) {
		out := withoutFixes(s)
		if strings.Contains(out, fixMark) || len(out) > len(s) {
			t.Fatalf("withoutFixes(%q) = %q", s, out)
		}
	})
}
