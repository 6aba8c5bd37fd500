package forward

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"

	"github.com/unroot/unroot/internal/lograte"
)

// hostSocketWarning says why connections to sp's host unix socket cannot
// succeed now, or returns "" when the socket is there (or sp is no unix
// forward). Such a forward is still made, since a service may create its
// socket later (started after unroot, or socket-activated), and it works
// from then on; the warning tells the user at once instead of at the
// first reset connection.
func hostSocketWarning(sp Spec) string {
	if sp.HostPath == "" {
		return ""
	}
	fi, err := os.Stat(sp.HostPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("forward %s: no socket at %s yet: connections to port %d inside are reset until a service listens there; start the service, or fix the path", sp, sp.HostPath, sp.NSPort)
	case err != nil:
		return fmt.Sprintf("forward %s: %v: connections to port %d inside fail until unroot can reach the socket; fix the path, or the permissions of its directories", sp, err, sp.NSPort)
	case fi.Mode().Type() != fs.ModeSocket:
		return fmt.Sprintf("forward %s: %s is not a unix socket (%s): connections to port %d inside are reset; give the path of the service's socket", sp, sp.HostPath, fi.Mode().Type(), sp.NSPort)
	}
	return ""
}

// failureLog logs, at warning level and rate-limited per forward, that
// traffic through a forward could not reach its host service: a service
// that is down or a wrong address shows at once, and a client retrying in
// a loop does not flood the log.
type failureLog struct {
	sp   Spec
	log  *slog.Logger
	rate lograte.Limiter
}

// failed logs err (what the connect or send to the host service returned).
func (l *failureLog) failed(err error) {
	var msg string
	if l.sp.Proto == "udp" {
		msg = fmt.Sprintf("forward %s: a datagram could not reach the host service; start the service at %s, or fix the address", l.sp, l.sp.Host())
	} else if l.sp.HostPath != "" {
		msg = fmt.Sprintf("forward %s: connecting to the host socket failed, resetting the connection inside; start the service that listens on %s, or fix the path", l.sp, l.sp.HostPath)
	} else {
		msg = fmt.Sprintf("forward %s: connecting to the host service failed, resetting the connection inside; start the service at %s, or fix the address", l.sp, l.sp.Host())
	}
	l.rate.Log(context.Background(), l.log, slog.LevelWarn, msg, "err", err)
}
