package relay

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// AcceptFunc takes connections from the listening socket lfd on a loop's
// thread when lfd is readable. It must not block: it accepts what it can
// take now, passes each connection to add, and returns false when it can
// take no more until Resume (no child socket is ready, descriptors ran
// out). The loop then stops watching lfd, and connections wait in the
// kernel's backlog.
type AcceptFunc func(lfd int, add func(Pair) error) bool

// Listener is a listening socket watched by one of the engine's loops.
//
// Accepting on the loop's thread spares every connection the hand-off
// between an accepting goroutine and the loop: a wake-up of the runtime's
// poller, a goroutine switch and an eventfd write. On a small machine
// those cost about as much as the connect to the server.
type Listener struct {
	l      *loop
	g      *Group
	fd     int
	accept AcceptFunc
	done   chan struct{} // closed once fd is closed

	// Owned by the loop's thread.
	idx   int32 // in l.listeners; -1 once closed
	gen   int32
	armed bool
}

// Listen hands the listening socket fd to the engine, which owns it from
// then on, even on error: it is closed by Close, or at once if the group
// or the engine is closed. fd must be non-blocking. Accepting starts
// paused: call Resume.
func (g *Group) Listen(fd int, accept AcceptFunc) (*Listener, error) {
	l := g.e.loops[g.e.next.Add(1)%uint32(len(g.e.loops))]
	ln := &Listener{l: l, g: g, fd: fd, accept: accept, done: make(chan struct{}), idx: -1}
	g.mu.Lock()
	ok := !g.closed && l.post(func() { l.listen(ln) })
	g.mu.Unlock()
	if !ok {
		unix.Close(fd)
		close(ln.done)
		return nil, errors.New("relay: group closed")
	}
	return ln, nil
}

// Resume starts watching the listener again after its AcceptFunc returned
// false (or for the first time). It does not wait. If the watch fails
// (the kernel lacks memory for it, or the engine has stopped), failed is
// called, on the loop's thread or this one, as a pause with that error
// would be: the listener is not watched until the next Resume.
func (ln *Listener) Resume(failed func(error)) {
	l := ln.l
	if !l.post(func() {
		if err := l.resume(ln); err != nil {
			failed(err)
		}
	}) {
		failed(errors.New("relay: engine stopped"))
	}
}

func (l *loop) resume(ln *Listener) error {
	if ln.idx < 0 || ln.armed {
		return nil
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: listenerFd(ln.idx), Pad: ln.gen}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, ln.fd, &ev); err != nil {
		return fmt.Errorf("relay: watch the listening socket: %w", err)
	}
	ln.armed = true
	return nil
}

// Close stops accepting, closes the listening socket and waits until it
// is closed. Connections already accepted are not touched.
func (ln *Listener) Close() {
	l := ln.l
	if !l.post(func() { l.closeListener(ln) }) {
		// The loop has stopped; its shutdown closes the socket.
		<-l.done
	}
	<-ln.done
}

// listenerFd is the epoll event tag of listener idx: negative, so it cannot
// be taken for a pair's slot, and below the eventfd's -1.
func listenerFd(idx int32) int32 { return -2 - idx }

func (l *loop) listen(ln *Listener) {
	idx := int32(-1)
	for i, x := range l.listeners {
		if x == nil {
			idx = int32(i)
			break
		}
	}
	if idx < 0 {
		idx = int32(len(l.listeners))
		l.listeners = append(l.listeners, nil)
	}
	l.gen++
	ln.idx, ln.gen = idx, int32(l.gen&(1<<30-1))
	l.listeners[idx] = ln
}

func (l *loop) closeListener(ln *Listener) {
	if ln.idx < 0 {
		return
	}
	if ln.armed {
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, ln.fd, nil)
	}
	unix.Close(ln.fd)
	l.listeners[ln.idx] = nil
	ln.idx, ln.armed = -1, false
	close(ln.done)
}

// acceptEvent runs a listener's AcceptFunc.
func (l *loop) acceptEvent(ev unix.EpollEvent) {
	idx := -2 - ev.Fd
	if int(idx) >= len(l.listeners) {
		return
	}
	ln := l.listeners[idx]
	if ln == nil || !ln.armed || ln.gen != ev.Pad {
		return
	}
	if ln.accept(ln.fd, ln.add) {
		return
	}
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, ln.fd, nil)
	ln.armed = false
}

// add starts relaying a connection the listener accepted.
func (ln *Listener) add(p Pair) error { return ln.g.addFrom(ln.l, p) }
