package doctor

import (
	"context"
	"errors"

	"github.com/unroot/unroot/internal/seccomp"
)

// CheckBypass tests what `unroot run --bypass` needs: seccomp user
// notification with ADDFD (Linux 5.9) and pidfd_getfd (5.6), not refused
// by a security module or an outer seccomp policy.
const CheckBypass = "bypass"

// probeBypass is swapped by tests.
var probeBypass = seccomp.Probe

func checkBypass(ctx context.Context, e *env) Result {
	err := probeBypass()
	if err == nil {
		return Result{Status: OK, Detail: "seccomp user notification with ADDFD and pidfd_getfd work: --bypass can hand sockets to the host"}
	}
	fix := "run without --bypass (or with --bypass=auto, which relays where it cannot)"
	if errors.Is(err, seccomp.ErrNotSupported) {
		fix = "upgrade to Linux 5.9 or later for --bypass; meanwhile " + fix
	} else {
		fix = "inside a container, allow seccomp(2) and pidfd_getfd(2) in its seccomp profile (e.g. docker run --security-opt seccomp=unconfined); or " + fix
	}
	// Only --bypass needs it.
	return Result{Status: Warn, Detail: "--bypass cannot work here: " + err.Error(), Fix: fix}
}
