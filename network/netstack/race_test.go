//go:build race

package netstack

// raceEnabled: the race detector multiplies memory use, so memory bounds
// do not apply.
const raceEnabled = true
