package childinit

import "testing"

func TestConfigRoundTrip(t *testing.T) {
	c := Config{Stage: 1, CtlFD: 3, SockFD: 4, Command: []string{"id"}, StateDir: "/tmp/x", CopyUp: []string{"/etc"}}
	got, err := DecodeConfig(c.Encode())
	if err != nil || got.StateDir != "/tmp/x" || got.Command[0] != "id" || got.CopyUp[0] != "/etc" {
		t.Errorf("round trip = %+v, %v", got, err)
	}
	for _, bad := range []string{"", "{}", `{"stage":3,"ctlFD":3,"sockFD":4,"command":["x"]}`, `{"stage":1,"ctlFD":3,"sockFD":3,"command":["x"]}`, `{"stage":1,"ctlFD":3,"sockFD":4}`} {
		if _, err := DecodeConfig(bad); err == nil {
			t.Errorf("DecodeConfig(%q) = nil error", bad)
		}
	}
}

func TestPropagationFlags(t *testing.T) {
	for _, ok := range []string{"", "private", "rprivate", "slave", "rslave", "shared", "rshared"} {
		if _, err := PropagationFlags(ok); err != nil {
			t.Errorf("PropagationFlags(%q) = %v", ok, err)
		}
	}
	if _, err := PropagationFlags("unbindable"); err == nil {
		t.Error("PropagationFlags(unbindable) = nil error")
	}
}

func FuzzDecodeConfig(f *testing.F) {
	f.Add(Config{Stage: 2, CtlFD: 3, SockFD: 4, Command: []string{"sh"}}.Encode())
	f.Fuzz(func(t *testing.T, s string) {
		c, err := DecodeConfig(s)
		if err == nil && (len(c.Command) == 0 || c.CtlFD < 3) {
			t.Fatalf("accepted %+v", c)
		}
	})
}

func TestScratchDir(t *testing.T) {
	tests := []struct {
		state  string
		copyUp []string
		want   string
	}{
		{"/tmp/rootlesskit1", []string{"/etc"}, "/tmp/rootlesskit1"},
		{"/run/user/1000/dockerd-rootless", []string{"/etc", "/run"}, "/tmp"},
		{"/run/user/1000/x", []string{"/run/"}, "/tmp"},
		{"/runner/x", []string{"/run"}, "/runner/x"},
		{"/var/lib/x", nil, "/var/lib/x"},
	}
	for _, tt := range tests {
		if got := scratchDir(Config{StateDir: tt.state, CopyUp: tt.copyUp}); got != tt.want {
			t.Errorf("scratchDir(%s, %v) = %s, want %s", tt.state, tt.copyUp, got, tt.want)
		}
	}
}
