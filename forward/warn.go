package forward

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

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

// failureQueue is how many warnings of one forward may wait for the
// logger; more (a logger stalled for minutes, since at most one line per
// interval is queued) are dropped and counted in the next line.
const failureQueue = 8

// failureLog logs, at warning level and rate-limited per forward, that
// traffic through a forward could not reach its host service: a service
// that is down or a wrong address shows at once, and a client retrying in
// a loop does not flood the log.
//
// failed runs on the relay engine's thread (relay.Pair.ConnectFailed), which
// must never block: a logger writing to a stalled stderr would freeze every
// connection. So failed only queues the line, without waiting, and a
// goroutine of the forward's own writes it; close ends that goroutine.
type failureLog struct {
	sp      Spec
	log     *slog.Logger
	rate    lograte.Limiter
	lines   chan failure
	dropped atomic.Int64 // lines that found the queue full
	done    chan struct{}
	ended   chan struct{}
}

// failure is one queued warning: the error and how many the limiter held
// back before it.
type failure struct {
	err  error
	held int
}

// newFailureLog starts the writer of sp's warnings, which go out at most
// once per interval every (zero: lograte.DefaultEvery). The caller ends it
// with close.
func newFailureLog(sp Spec, log *slog.Logger, every time.Duration) *failureLog {
	l := &failureLog{sp: sp, log: log, rate: lograte.Limiter{Every: every},
		lines: make(chan failure, failureQueue), done: make(chan struct{}), ended: make(chan struct{})}
	go l.run()
	return l
}

// failed queues a warning of err (what the connect or send to the host
// service returned), if the rate limit lets it out; it never blocks.
func (l *failureLog) failed(err error) {
	if !l.log.Enabled(context.Background(), slog.LevelWarn) {
		return
	}
	ok, held := l.rate.Allow()
	if !ok {
		return
	}
	select {
	case l.lines <- failure{err, held}:
	default:
		l.dropped.Add(1)
	}
}

// run writes queued warnings until close, then those still queued.
func (l *failureLog) run() {
	defer close(l.ended)
	for {
		select {
		case f := <-l.lines:
			l.write(f)
		case <-l.done:
			for {
				select {
				case f := <-l.lines:
					l.write(f)
				default:
					return
				}
			}
		}
	}
}

func (l *failureLog) write(f failure) {
	var msg string
	if l.sp.Proto == "udp" {
		msg = fmt.Sprintf("forward %s: a datagram could not reach the host service; start the service at %s, or fix the address", l.sp, l.sp.Host())
	} else if l.sp.HostPath != "" {
		msg = fmt.Sprintf("forward %s: connecting to the host socket failed, resetting the connection inside; start the service that listens on %s, or fix the path", l.sp, l.sp.HostPath)
	} else {
		msg = fmt.Sprintf("forward %s: connecting to the host service failed, resetting the connection inside; start the service at %s, or fix the address", l.sp, l.sp.Host())
	}
	args := []any{"err", f.err}
	if f.held > 0 {
		args = append(args, "repeated", f.held)
	}
	if n := l.dropped.Swap(0); n > 0 {
		args = append(args, "dropped", n)
	}
	l.log.Warn(msg, args...)
}

// close writes the warnings still queued and ends the writer. failed may
// still be called after it (a late connect failure): the line is dropped.
func (l *failureLog) close() {
	close(l.done)
	<-l.ended
}
