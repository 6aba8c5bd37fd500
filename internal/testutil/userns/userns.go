// Package userns is the test helper that needs the doctor: it lives apart
// from internal/testutil so that the packages doctor imports (seccomp,
// procfs, operr) can still use testutil in their own tests.
package userns

import (
	"context"
	"testing"

	"github.com/unroot/unroot/doctor"
	"github.com/unroot/unroot/internal/testutil"
)

// Require ends the test through testutil.Unavailable unless this process
// can create user namespaces, as the doctor's userns check finds out; the
// reason is the check's.
func Require(t testing.TB) {
	t.Helper()
	r := doctor.Run(context.Background(), doctor.Select(doctor.Options{}, doctor.CheckUserNS)...)
	if len(r) == 1 && r[0].Status == doctor.Fail {
		testutil.Unavailable(t, "user namespaces are unavailable here: %s", r[0].Detail)
	}
}
