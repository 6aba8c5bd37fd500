package forward

import (
	"errors"
	"sync"
	"time"

	"github.com/unroot/unroot/internal/relay"
	"github.com/unroot/unroot/internal/sys"
)

// acceptBatch bounds the connections taken per readiness report.
const acceptBatch = 32

// acceptRetry is how long accepting pauses after an error that descriptors
// or memory freeing up cure (EMFILE, ENOBUFS).
const acceptRetry = 100 * time.Millisecond

// startTCP relays the connections of the listening socket fd (inside the
// namespace) to the host service: the relay loop accepts each and connects
// a host socket to the service, both on its own thread.
func (f *Forwarder) startTCP(fd int, sp Spec) (func(), error) {
	if f.eng == nil {
		eng, err := relay.NewEngine(1, f.log)
		if err != nil {
			sys.Close(fd)
			return nil, err
		}
		f.eng = eng
	}
	g := f.eng.NewGroup()
	fails := newFailureLog(sp, f.log, f.failEvery)
	done := make(chan struct{})
	var (
		mu     sync.Mutex
		retry  *time.Timer // owned under mu
		rl     *relay.Listener
		resume func()
	)
	accept := func(lfd int, add func(relay.Pair) error) bool {
		for range acceptBatch {
			cfd, _, err := sys.Accept(lfd)
			if err != nil {
				if errors.Is(err, sys.EAGAIN) {
					return true
				}
				if errors.Is(err, sys.ECONNABORTED) {
					continue
				}
				f.log.Warn("accepting on a forward failed; retrying", "forward", sp.String(), "err", err)
				mu.Lock()
				retry = time.AfterFunc(acceptRetry, resume)
				mu.Unlock()
				return false
			}
			hfd, err := dialHost(sp)
			if err != nil {
				fails.failed(err)
				sys.CloseReset(cfd)
				continue
			}
			// The engine owns both from here, and resets the client if the
			// connect fails.
			add(relay.Pair{Client: cfd, Child: hfd, ConnectFailed: fails.failed})
		}
		return true
	}
	var err error
	rl, err = g.Listen(fd, accept)
	if err != nil {
		g.Close()
		fails.close()
		return nil, err
	}
	resume = func() {
		select {
		case <-done:
			return
		default:
		}
		rl.Resume(func(err error) {
			f.log.Warn("watching a forward's socket failed", "forward", sp.String(), "err", err)
		})
	}
	resume()
	return func() {
		close(done)
		rl.Close()
		mu.Lock()
		if retry != nil {
			retry.Stop()
		}
		mu.Unlock()
		g.Close()
		fails.close()
	}, nil
}

// localCC is the congestion control for host sockets on loopback, looked
// up once.
var localCC = sync.OnceValue(sys.LocalCongestionControl)

// dialHost starts connecting a new host socket to the service: a TCP
// connect under way, or a unix connect, which completes at once.
func dialHost(sp Spec) (int, error) {
	if sp.HostPath != "" {
		fd, err := sys.UnixSocket()
		if err != nil {
			return -1, err
		}
		if err := sys.ConnectUnix(fd, sp.HostPath); err != nil {
			sys.Close(fd)
			return -1, err
		}
		return fd, nil
	}
	family := sys.AF_INET6
	if sp.HostIP.Is4() {
		family = sys.AF_INET
	}
	fd, err := sys.Socket(family, sys.SOCK_STREAM)
	if err != nil {
		return -1, err
	}
	if sp.HostIP.IsLoopback() {
		// A hop that never leaves this host: BBR's pacing is pure cost
		// there (see sys.LocalCongestionControl).
		if cc := localCC(); cc != "" {
			sys.SetCongestionControl(fd, cc)
		}
	}
	if err := sys.Connect(fd, family, sp.hostAddrPort()); err != nil && !errors.Is(err, sys.EINPROGRESS) {
		sys.Close(fd)
		return -1, err
	}
	return fd, nil
}
