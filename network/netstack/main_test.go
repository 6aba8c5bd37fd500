package netstack

import (
	"testing"

	"github.com/unroot/unroot/internal/testutil"
)

// TestMain fails the package when its tests leave goroutines or
// descriptors behind.
func TestMain(m *testing.M) { testutil.Main(m) }
