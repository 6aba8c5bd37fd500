package unroot

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/unroot/unroot/api"
	"github.com/unroot/unroot/network"
)

// NetworkFailure selects what the launcher does when the network driver's
// helper (slirp4netns, pasta) is lost for good: it died and cannot be
// restarted, or keeps dying.
type NetworkFailure string

const (
	// NetworkFailureExit (the default, "" too) stops the command (SIGTERM,
	// then SIGKILL after NetworkFailureGrace) and makes Wait return
	// ErrNetworkDown with status 1, so that a supervisor such as systemd
	// sees the failure and restarts the whole unit.
	NetworkFailureExit NetworkFailure = "exit"
	// NetworkFailureKeep runs on without network; /v1/info reports it.
	NetworkFailureKeep NetworkFailure = "keep"
)

// ParseNetworkFailure parses --on-network-failure.
func ParseNetworkFailure(s string) (NetworkFailure, error) {
	switch NetworkFailure(s) {
	case "", NetworkFailureExit:
		return NetworkFailureExit, nil
	case NetworkFailureKeep:
		return NetworkFailureKeep, nil
	}
	return "", fmt.Errorf("--on-network-failure=%s: must be exit or keep", s)
}

// NetworkFailureGrace is how long the command has to end after SIGTERM
// when the network is lost under NetworkFailureExit.
var NetworkFailureGrace = 20 * time.Second

// ErrNetworkDown is wrapped by Wait's error when the launcher stopped the
// command because the network was lost (NetworkFailureExit).
var ErrNetworkDown = errors.New("network down")

// networkHealth is the health block of /v1/info: nil for the host network.
func (l *Launcher) networkHealth() *api.HealthInfo {
	if l.Network == nil || !l.privateNet() || !l.netUp {
		return nil
	}
	h := api.NetworkHealth{Driver: l.Network.Name(), State: api.HealthUp}
	if sv, ok := l.Network.(network.Supervised); ok {
		h = sv.Health()
	}
	return &api.HealthInfo{Network: &h}
}

// watchNetwork acts on the loss of the network driver's helper, from the
// start of the command until the init exits.
func (s *startup) watchNetwork() {
	l := s.l
	sv, ok := l.Network.(network.Supervised)
	if !ok || !l.netUp {
		return
	}
	failed := sv.Failed()
	if failed == nil {
		return
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		select {
		case <-l.exited:
			return
		case <-l.released:
			return // the command ended: the helper is being stopped
		case <-failed:
		}
		select {
		case <-l.exited:
			return // both at once: the helper died with the namespace
		case <-l.released:
			return
		default:
		}
		h := sv.Health()
		why := fmt.Sprintf("network driver %s is down: %s", h.Driver, h.LastError)
		if l.OnNetworkFailure == NetworkFailureKeep {
			l.log.Error(why + "; the command runs on without network (--on-network-failure=keep)")
			return
		}
		l.netFailure.Store(&netFailureErr{why: why})
		l.log.Debug("network lost: stopping the command", "grace", NetworkFailureGrace)
		// The init forwards SIGTERM to the command; SIGKILL takes the init
		// and so the whole namespace.
		_ = syscall.Kill(l.childPID, syscall.SIGTERM)
		t := time.NewTimer(NetworkFailureGrace)
		defer t.Stop()
		select {
		case <-l.exited:
		case <-t.C:
			_ = syscall.Kill(l.childPID, syscall.SIGKILL)
		}
	}()
}

type netFailureErr struct{ why string }

func (e *netFailureErr) Error() string {
	return e.why + "; unroot stopped the command (--on-network-failure=keep would run on without network)"
}

func (e *netFailureErr) Unwrap() error { return ErrNetworkDown }
