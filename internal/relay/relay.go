// Package relay moves bytes both ways between two stream connections until
// both directions have ended, keeping TCP half-close: when one side stops
// sending, the other side's write half is shut and the reverse direction
// keeps flowing.
//
// Between two *net.TCPConn the copy runs on splice(2) through a kernel
// pipe, so payload never enters user-space buffers: Go's TCPConn.ReadFrom
// splices when the source is a TCP socket, and reports "not handled" for any
// other source, in which case io.Copy falls back to a buffered copy. We rely
// on that path rather than a hand-written splice loop because it is
// integrated with the runtime poller (no thread blocks in splice) and reuses
// pipes from a pool sized 1 MiB; a hand-written loop measured no faster (see
// BenchmarkRelay).
package relay

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
)

// Conn is a full-duplex stream that can shut its write half.
// *net.TCPConn and *net.UnixConn satisfy it.
type Conn interface {
	net.Conn
	CloseWrite() error
}

// Result counts the bytes moved in each direction.
type Result struct {
	AToB, BToA int64
}

// Run relays between a and b until both directions end or ctx is done, then
// closes both. An error from either direction other than a normal end of
// stream aborts the other direction too (a reset on one side becomes a
// close on the other), and is returned.
func Run(ctx context.Context, a, b Conn) (Result, error) {
	return RunOn(ctx, a, b, nil)
}

// RunOn is Run with the a→b direction started by spawn (nil: a new
// goroutine); b→a runs on the calling goroutine.
func RunOn(ctx context.Context, a, b Conn, spawn func(func())) (Result, error) {
	var (
		res      Result
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	abort := func(err error) {
		errOnce.Do(func() {
			firstErr = err
			a.Close()
			b.Close()
		})
	}
	stop := context.AfterFunc(ctx, func() { abort(ctx.Err()) })
	defer stop()
	half := func(dst, src Conn, n *int64) {
		defer wg.Done()
		var err error
		*n, err = io.Copy(dst, src)
		if err != nil {
			abort(err)
			return
		}
		// The source sent FIN: pass it on and keep the reverse direction.
		// ENOTCONN: the destination was reset meanwhile; the reverse
		// direction reports that.
		if err := dst.CloseWrite(); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, syscall.ENOTCONN) {
			abort(err)
		}
	}
	wg.Add(2)
	aToB := func() { half(b, a, &res.AToB) }
	if spawn != nil {
		spawn(aToB)
	} else {
		go aToB()
	}
	half(a, b, &res.BToA)
	wg.Wait()
	abort(nil)
	if errors.Is(firstErr, net.ErrClosed) {
		// Closed by the other direction's abort; the cause was reported there
		// or was a context cancel.
		firstErr = nil
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	return res, firstErr
}
