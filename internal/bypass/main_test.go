package bypass

import (
	"os"
	"testing"

	"github.com/unroot/unroot/internal/testutil"
)

// TestMain fails the package when its tests leave goroutines or
// descriptors behind. The test binary is also the trapped program of
// TestSupervisor (helperEnv).
func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode))
	}
	testutil.Main(m)
}
