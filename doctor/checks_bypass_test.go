package doctor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/unroot/unroot/internal/seccomp"
)

func TestCheckBypass(t *testing.T) {
	defer func(p func() error) { probeBypass = p }(probeBypass)
	for _, tc := range []struct {
		name   string
		err    error
		status Status
		fix    string
	}{
		{"works", nil, OK, ""},
		{"old kernel", fmt.Errorf("SECCOMP_IOCTL_NOTIF_ADDFD: %w (%w)", syscall.EINVAL, seccomp.ErrNotSupported), Warn, "upgrade to Linux 5.9"},
		{"refused", errors.New("install seccomp filter: permission denied"), Warn, "--security-opt seccomp=unconfined"},
	} {
		probeBypass = func() error { return tc.err }
		r := checkBypass(context.Background(), nil)
		if r.Status != tc.status || !strings.Contains(r.Fix, tc.fix) {
			t.Errorf("%s: got %v %q (fix %q), want %v with fix containing %q", tc.name, r.Status, r.Detail, r.Fix, tc.status, tc.fix)
		}
		if tc.err != nil && !strings.Contains(r.Detail, tc.err.Error()) {
			t.Errorf("%s: detail %q does not say why (%v)", tc.name, r.Detail, tc.err)
		}
	}
}
