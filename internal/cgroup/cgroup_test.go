package cgroup

import "testing"

func TestParseSelf(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"0::/user.slice/user-1000.slice/session-1.scope\n", "/user.slice/user-1000.slice/session-1.scope", false},
		{"12:pids:/x\n1:name=systemd:/y\n0::/z\n", "/z", false},
		{"12:pids:/x\n", "", true},
		{"", "", true},
	}
	for _, tt := range tests {
		got, err := ParseSelf([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseSelf(%q) = %q, %v; want %q, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"evac", "k3s_evac"} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("ValidateName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a/b", "..", "."} {
		if ValidateName(bad) == nil {
			t.Errorf("ValidateName(%q) = nil, want error", bad)
		}
	}
}

func FuzzParseSelf(f *testing.F) {
	f.Add("0::/a\n")
	f.Fuzz(func(t *testing.T, in string) {
		p, err := ParseSelf([]byte(in))
		if err == nil && len(p) > len(in) {
			t.Fatalf("path %q longer than input", p)
		}
	})
}
