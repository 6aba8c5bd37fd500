package unroot

import (
	"os"

	"github.com/unroot/unroot/internal/childinit"
)

// Init runs the namespace init when this process is the launcher's
// re-executed child, and never returns in that case. In any other process
// it returns false at once and has no effect. Call it first thing in main,
// before flags are parsed or goroutines started.
func Init() bool {
	if v, ok := os.LookupEnv(childinit.EnvConfig); ok {
		childinit.Run(v)
		os.Exit(1) // not reached
	}
	if _, ok := os.LookupEnv(childinit.EnvActivation); ok {
		childinit.RunActivation()
		os.Exit(1) // not reached
	}
	return false
}
