package unroot

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseBypassMode(t *testing.T) {
	for in, want := range map[string]BypassMode{"": BypassOn, "true": BypassOn, "on": BypassOn, "auto": BypassAuto, "false": BypassOff, "0": BypassOff} {
		if got, err := ParseBypassMode(in); err != nil || got != want {
			t.Errorf("ParseBypassMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseBypassMode("fast"); err == nil || !strings.Contains(err.Error(), "true, false or auto") {
		t.Errorf("ParseBypassMode(fast): %v, want the values it takes", err)
	}
}

func TestParseBypassIgnore(t *testing.T) {
	got, err := ParseBypassIgnore([]string{"192.168.1.7/16", "fd00::1", ""})
	if err != nil || len(got) != 2 || got[0] != netip.MustParsePrefix("192.168.0.0/16") || got[1] != netip.MustParsePrefix("fd00::1/128") {
		t.Errorf("ParseBypassIgnore = %v, %v", got, err)
	}
	if _, err := ParseBypassIgnore([]string{"nope"}); err == nil || !strings.Contains(err.Error(), "not a CIDR") {
		t.Errorf("ParseBypassIgnore(nope): %v", err)
	}
}

func TestValidateBypass(t *testing.T) {
	for _, tc := range []struct {
		name string
		l    *Launcher
		want string
	}{
		{"host network", &Launcher{Command: []string{"true"}, Bypass: Bypass{Mode: BypassOn}}, "network namespace of its own"},
		{"detached netns", &Launcher{Command: []string{"true"}, Network: fakeNet{}, DetachNetNS: true, Bypass: Bypass{Mode: BypassAuto}}, "DetachNetNS false"},
		{"bad mode", &Launcher{Command: []string{"true"}, Network: fakeNet{}, Bypass: Bypass{Mode: "fast"}}, "must be on, off or auto"},
		{"ok", &Launcher{Command: []string{"true"}, Network: fakeNet{}, Bypass: Bypass{Mode: BypassOn}}, ""},
		{"off on host", &Launcher{Command: []string{"true"}, Bypass: Bypass{Mode: BypassOff}}, ""},
	} {
		err := tc.l.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: Validate() = %v, want %q", tc.name, err, tc.want)
		}
	}
}
