package cgroup

import "testing"

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

func TestParseCgroup2Mount(t *testing.T) {
	tests := []struct{ in, want string }{
		{"31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw\n40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n", ""},
		{"30 23 0:27 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n", "/sys/fs/cgroup"},
		{"41 31 0:38 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw\n", "/sys/fs/cgroup/unified"},
		{"41 31 0:38 / /my\\040cgroup rw - cgroup2 none rw\n", "/my cgroup"},
		{"garbage\n - cgroup2\n", ""},
	}
	for _, tt := range tests {
		if got := ParseCgroup2Mount(tt.in); got != tt.want {
			t.Errorf("ParseCgroup2Mount(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzParseCgroup2Mount(f *testing.F) {
	f.Add("30 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")
	f.Add("1 2 3 / /a\\134b - cgroup2 x\n")
	f.Fuzz(func(t *testing.T, in string) {
		if got := ParseCgroup2Mount(in); len(got) > len(in) {
			t.Fatalf("mount point %q longer than the input", got)
		}
	})
}
