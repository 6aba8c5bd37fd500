// Package relay moves bytes both ways between pairs of TCP sockets until
// both directions have ended, keeping TCP half-close: when one side stops
// sending, the other side's write half is shut and the reverse direction
// keeps flowing. Payload moves with splice(2) through kernel pipes and never
// enters user space.
package relay

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/unroot/unroot/internal/lograte"
	"golang.org/x/sys/unix"
)

// Engine relays pairs of TCP sockets on a few OS threads of its own, each
// running a level-triggered epoll loop that moves bytes with splice(2).
//
// It exists because the Go runtime's poller costs a relay more than the
// relaying: for every request of a keep-alive connection, a goroutine per
// direction wakes, splices in, splices out, splices again to see EAGAIN and
// parks, and the scheduler hands goroutines between threads. A
// level-triggered loop splices in and out once per readiness report and
// asks epoll again, and a new connection costs two epoll_ctl calls, not a
// dup and a poller registration per socket.
//
// Descriptors handed to the engine must not be duplicated elsewhere:
// closing one is what removes it from the epoll set.
type Engine struct {
	loops []*loop
	next  atomic.Uint32
}

// Pair is one connection to relay: Client is the accepted socket, Child
// the socket connected (or connecting) to the server. From Add on, the
// engine owns both descriptors.
type Pair struct {
	Client, Child int
	// ConnectTimeout bounds Child's connect(2), which may still be under
	// way when the pair is added (0: 10 s).
	ConnectTimeout time.Duration
	// Redial, if set, is called once, on its own goroutine, when Child's
	// connect fails with anything but ECONNREFUSED or times out. It
	// returns a new socket whose connect has been started, and that
	// connect's timeout. Bytes the client sent meanwhile are kept.
	Redial func() (fd int, timeout time.Duration, err error)
	// ClientCC, if set, is the TCP congestion control Client switches to
	// once bytes for it queue up: a transfer, not an exchange of small
	// messages, which would pay the setsockopt for nothing.
	ClientCC string
	// ConnectFailed, if set, is called with the reason when Child's
	// connect (and its redial, if any) fails for good, just before the
	// client is reset. It runs on the engine's thread: it must not block.
	ConnectFailed func(error)
}

// Group is a set of pairs that end together: the connections of one
// published port.
type Group struct {
	e      *Engine
	mu     sync.Mutex
	closed bool
}

// NewEngine starts threads loops (at least one).
func NewEngine(threads int, log *slog.Logger) (*Engine, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{}
	for range max(threads, 1) {
		l, err := newLoop(log)
		if err != nil {
			e.Close()
			// Each loop needs two descriptors and an epoll instance.
			return nil, fmt.Errorf("%w (if the descriptors ran out, raise the open-file limit: ulimit -n, LimitNOFILE=)", err)
		}
		e.loops = append(e.loops, l)
		go l.run()
	}
	return e, nil
}

// NewGroup returns an empty group.
func (e *Engine) NewGroup() *Group { return &Group{e: e} }

// Close ends every pair of every group, stops the loops and waits for
// Redial calls under way: cancel what they wait on first.
func (e *Engine) Close() {
	for _, l := range e.loops {
		l.stop()
	}
}

// Add starts relaying p. If the group is closed, p's sockets are closed
// and an error is returned.
func (g *Group) Add(p Pair) error { return g.addFrom(nil, p) }

// addFrom is Add called on the thread of loop from (nil: any other
// thread). A pair that falls to that loop is registered at once, so its
// first bytes are read in the same round.
func (g *Group) addFrom(from *loop, p Pair) error {
	// Pairs are spread over the loops in turn.
	l := g.e.loops[g.e.next.Add(1)%uint32(len(g.e.loops))]
	// Posting under g.mu queues the pair ahead of a concurrent Close's
	// message to the same loop, so Close cannot miss it. On that loop's
	// own thread, a Close's message can only run after this returns.
	g.mu.Lock()
	ok := !g.closed
	if ok && l == from {
		g.mu.Unlock()
		l.add(g, p)
		return nil
	}
	ok = ok && l.post(func() { l.add(g, p) })
	g.mu.Unlock()
	if !ok {
		unix.Close(p.Client)
		unix.Close(p.Child)
		return errors.New("relay: group closed")
	}
	return nil
}

// Close ends the group's pairs and waits until their sockets are closed.
func (g *Group) Close() {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	g.mu.Unlock()
	var wg sync.WaitGroup
	for _, l := range g.e.loops {
		wg.Add(1)
		if !l.post(func() { l.closeGroup(g); wg.Done() }) {
			wg.Done()
		}
	}
	wg.Wait()
}

const (
	pipeSize              = 1 << 20 // as Go's splice pipes; the most an unprivileged F_SETPIPE_SZ gives
	spareMax              = 16      // empty pipes kept per loop
	maxEvents             = 128
	dirIn                 = 0 // client → child
	dirOut                = 1 // child → client
	defaultConnectTimeout = 10 * time.Second
)

type loop struct {
	log      *slog.Logger
	pipeWarn lograte.Limiter // "no pipe" repeats once per connection under exhaustion
	epfd     int
	evfd     int

	mu       sync.Mutex
	queue    []func()
	sleeping bool
	stopped  bool
	done     chan struct{}
	redials  sync.WaitGroup // Redial calls under way

	// Owned by the loop's thread.
	pairs     []*link
	free      []int32
	retired   []int32
	gen       uint32
	spare     []pipe
	timers    timerHeap
	listeners []*Listener
}

type pipe struct{ r, w int }

// link is a Pair's state. fd[0] is the client, fd[1] the child; dir[i]
// moves bytes from fd[i] to fd[1-i].
type link struct {
	slot       int32
	gen        uint32 // tells this pair's epoll events from a slot's earlier pair
	attempt    uint32 // counts connects, to tell a redial's timer from the first one's
	g          *Group
	fd         [2]int
	dir        [2]direction
	want       [2]uint32 // epoll interest registered per fd; 0: not in the set
	connecting bool
	timeout    time.Duration
	redial     func() (int, time.Duration, error)
	clientCC   string
	failed     func(error) // Pair.ConnectFailed
	closed     bool
}

type direction struct {
	p      pipe
	hasP   bool
	n      int // bytes in the pipe not yet written out
	eof    bool
	closed bool // FIN passed on
}

func newLoop(log *slog.Logger) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("relay: epoll_create1: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("relay: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: -1}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, fmt.Errorf("relay: epoll_ctl: %w", err)
	}
	return &loop{log: log, epfd: epfd, evfd: evfd, done: make(chan struct{})}, nil
}

// post runs fn on the loop's thread. It reports false if the loop has
// stopped, in which case fn does not run.
func (l *loop) post(fn func()) bool {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return false
	}
	l.queue = append(l.queue, fn)
	l.wakeLocked()
	return true
}

// wakeLocked unlocks l.mu and, if the loop sleeps in epoll_wait, wakes it.
func (l *loop) wakeLocked() {
	wake := l.sleeping
	l.sleeping = false
	l.mu.Unlock()
	if wake {
		var one = [8]byte{1}
		unix.Write(l.evfd, one[:])
	}
}

func (l *loop) stop() {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		<-l.done
		return
	}
	l.stopped = true
	l.wakeLocked()
	<-l.done
	// A Redial ends when its caller's context does; what it returns
	// finds the loop stopped and is closed.
	l.redials.Wait()
}

func (l *loop) run() {
	// The loop's syscalls do not block (but epoll_wait), so it keeps its
	// thread rather than sharing the runtime's. It changes nothing about
	// the thread, so it hands it back at the end: a goroutine that ends
	// locked ends its thread, and the namespace init, forked with
	// Pdeathsig from whichever thread the runtime used, may be that
	// thread's child and would be killed with it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer close(l.done)
	events := make([]unix.EpollEvent, maxEvents)
	var cmds []func()
	for {
		l.mu.Lock()
		cmds, l.queue = l.queue, cmds[:0]
		stopped := l.stopped
		l.mu.Unlock()
		for i, fn := range cmds {
			fn()
			cmds[i] = nil
		}
		if stopped {
			l.shutdown()
			return
		}
		n, err := epollPoll(l.epfd, events)
		if n == 0 && err == nil {
			timeout := l.nextTimeout()
			l.mu.Lock()
			if len(l.queue) > 0 || l.stopped {
				l.mu.Unlock()
				continue
			}
			l.sleeping = true
			l.mu.Unlock()
			n, err = unix.EpollWait(l.epfd, events, timeout)
			l.mu.Lock()
			l.sleeping = false
			l.mu.Unlock()
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			l.log.Error("relay: epoll_wait failed; stopping the relay loop", "err", err)
			l.mu.Lock()
			l.stopped = true
			l.mu.Unlock()
			// Back to the top: what was posted before runs (its callers
			// may wait for it), then the loop shuts down.
			continue
		}
		for i := range n {
			l.event(events[i])
		}
		l.expire()
		l.free = append(l.free, l.retired...)
		l.retired = l.retired[:0]
	}
}

func (l *loop) event(ev unix.EpollEvent) {
	if ev.Fd < 0 {
		if ev.Fd != -1 {
			l.acceptEvent(ev)
			return
		}
		var b [8]byte
		unix.Read(l.evfd, b[:])
		return
	}
	if int(ev.Fd) >= len(l.pairs) {
		return
	}
	p := l.pairs[ev.Fd]
	side := int(ev.Pad & 1)
	if p == nil || p.closed || p.gen != uint32(ev.Pad)>>1 {
		return
	}
	if ev.Events&unix.EPOLLERR != 0 {
		serr, _ := unix.GetsockoptInt(p.fd[side], unix.SOL_SOCKET, unix.SO_ERROR)
		err := unix.Errno(serr)
		if side == 1 && p.connecting {
			l.connectFailed(p, err)
			return
		}
		l.log.Debug("relay: connection reset", "side", side, "err", err)
		l.close(p, false)
		return
	}
	if ev.Events&(unix.EPOLLIN|unix.EPOLLHUP) != 0 {
		if !l.pump(p, side) {
			return
		}
	}
	if ev.Events&unix.EPOLLOUT != 0 {
		l.pump(p, 1-side)
	}
}

// add registers a new pair.
func (l *loop) add(g *Group, in Pair) {
	var slot int32
	if n := len(l.free); n > 0 {
		slot = l.free[n-1]
		l.free = l.free[:n-1]
	} else {
		slot = int32(len(l.pairs))
		l.pairs = append(l.pairs, nil)
	}
	l.gen++
	p := &link{slot: slot, gen: l.gen & (1<<30 - 1), g: g, fd: [2]int{in.Client, in.Child}, connecting: true, timeout: in.ConnectTimeout, redial: in.Redial, clientCC: in.ClientCC, failed: in.ConnectFailed}
	l.pairs[slot] = p
	l.arm(p)
	if !l.update(p, 0) || !l.update(p, 1) {
		l.close(p, true)
	}
}

// closeGroup closes g's pairs. It scans the table: closing a port is rare,
// and the scan spares every connection a group bookkeeping entry.
func (l *loop) closeGroup(g *Group) {
	for _, p := range l.pairs {
		if p != nil && p.g == g {
			l.close(p, false)
		}
	}
}

// pump moves what it can in direction side (fd[side] → fd[1-side]) and
// updates the epoll interest. It reports false if the pair ended.
func (l *loop) pump(p *link, side int) bool {
	if p.closed {
		return false
	}
	d := &p.dir[side]
	src, dst := p.fd[side], p.fd[1-side]
	for !d.closed {
		if d.n > 0 {
			if dst < 0 {
				break // a new child socket is being dialled
			}
			drained, err := l.flush(p, side)
			if err != nil {
				return false
			}
			if !drained {
				break
			}
		}
		if d.eof {
			if dst < 0 {
				break
			}
			l.releasePipe(d)
			d.closed = true
			if p.dir[1-side].closed {
				break // both ended: closing dst sends its FIN
			}
			if err := unix.Shutdown(dst, unix.SHUT_WR); err != nil && err != unix.ENOTCONN {
				l.close(p, false)
				return false
			}
			break
		}
		if src < 0 {
			break
		}
		if !d.hasP {
			pp, err := l.getPipe()
			if err != nil {
				l.pipeWarn.Log(context.Background(), l.log, slog.LevelWarn, "relay: no pipe for a connection, closing it; if this repeats, raise the open-file limit (ulimit -n, LimitNOFILE=)", "err", err)
				l.close(p, false)
				return false
			}
			d.p, d.hasP = pp, true
		}
		n, err := splice(src, d.p.w, pipeSize)
		if err == unix.EAGAIN {
			l.releasePipe(d)
			break
		}
		if err != 0 {
			if side == dirOut && p.connecting && isConnectError(err) {
				// The child's connect failed, and this read is where
				// the loop learns of it.
				l.connectFailed(p, err)
				return false
			}
			l.log.Debug("relay: read failed", "side", side, "err", err)
			l.close(p, false)
			return false
		}
		if side == dirOut {
			p.connecting = false
		}
		if n == 0 {
			d.eof = true
			continue
		}
		d.n = int(n)
		if n < pipeSize {
			// Level-triggered: if more arrives, epoll says so. Write this
			// out, then stop reading.
			if _, err := l.flush(p, side); err != nil {
				return false
			}
			break
		}
	}
	if p.dir[0].closed && p.dir[1].closed {
		l.close(p, false)
		return false
	}
	if !l.update(p, side) || !l.update(p, 1-side) {
		l.close(p, false)
		return false
	}
	return true
}

// flush writes the pipe of direction side out until it is empty (true) or
// the destination is full (false). On a write error it closes the pair.
func (l *loop) flush(p *link, side int) (bool, error) {
	d := &p.dir[side]
	dst := p.fd[1-side]
	for d.n > 0 && dst >= 0 {
		n, err := splice(d.p.r, dst, d.n)
		if err == unix.EAGAIN {
			l.full(p, side)
			return false, nil
		}
		if err != 0 {
			if side == dirIn && p.connecting && isConnectError(err) {
				// The child's connect failed, and writing the client's
				// first bytes is where the loop learns of it: the same
				// reset (or redial) as when epoll reports it first.
				l.connectFailed(p, err)
				return false, err
			}
			l.log.Debug("relay: write failed", "side", side, "err", err)
			l.close(p, false)
			return false, err
		}
		d.n -= int(n)
		if side == dirIn {
			p.connecting = false
		}
	}
	if d.n == 0 {
		l.releasePipe(d)
	}
	return d.n == 0, nil
}

// full notes that direction side's destination is full.
func (l *loop) full(p *link, side int) {
	if side == dirOut && p.clientCC != "" {
		unix.SetsockoptString(p.fd[0], unix.IPPROTO_TCP, unix.TCP_CONGESTION, p.clientCC)
		p.clientCC = ""
	}
}

// update sets the epoll interest of fd[side]: readable while its outgoing
// direction may read, writable while its incoming direction has bytes
// waiting. A socket with no interest leaves the set, so a hang-up it
// reports cannot spin the loop.
func (l *loop) update(p *link, side int) bool {
	fd := p.fd[side]
	if fd < 0 {
		return true
	}
	var want uint32
	if out := &p.dir[side]; !out.closed && !out.eof && out.n == 0 {
		want |= unix.EPOLLIN
	}
	if in := &p.dir[1-side]; in.n > 0 {
		want |= unix.EPOLLOUT
	}
	have := p.want[side]
	if want == have {
		return true
	}
	ev := unix.EpollEvent{Events: want, Fd: p.slot, Pad: int32(p.gen<<1 | uint32(side))}
	var err error
	switch {
	case have == 0:
		err = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
	case want == 0:
		err = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	default:
		err = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, fd, &ev)
	}
	if err != nil {
		l.log.Warn("relay: epoll_ctl failed, closing the connection; ENOSPC means fs.epoll.max_user_watches is too low for this many connections", "err", err)
		return false
	}
	p.want[side] = want
	return true
}

func (l *loop) connectFailed(p *link, err error) {
	if p.redial == nil || errors.Is(err, unix.ECONNREFUSED) {
		l.log.Debug("relay: connect in the child failed; resetting the client", "err", err)
		l.connectGaveUp(p, err)
		return
	}
	l.log.Debug("relay: connect failed; dialling again", "err", err)
	redial := p.redial
	p.redial = nil
	unix.Close(p.fd[1])
	p.fd[1], p.want[1] = -1, 0
	if !l.update(p, 0) {
		l.close(p, true)
		return
	}
	gen := p.gen
	l.redials.Go(func() {
		fd, timeout, err := redial()
		ok := l.post(func() {
			if p.closed || p.gen != gen {
				if err == nil {
					unix.Close(fd)
				}
				return
			}
			if err != nil {
				l.log.Debug("relay: dialling again failed; resetting the client", "err", err)
				l.connectGaveUp(p, err)
				return
			}
			p.fd[1], p.connecting, p.timeout = fd, true, timeout
			l.arm(p)
			l.pump(p, dirIn)
		})
		if !ok && err == nil {
			unix.Close(fd)
		}
	})
}

// isConnectError reports an error only a failed connect gives; a reset
// after the connect succeeded (ECONNRESET, EPIPE) is no connect failure.
func isConnectError(err unix.Errno) bool {
	switch err {
	case unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ENETUNREACH, unix.ETIMEDOUT:
		return true
	}
	return false
}

// connectGaveUp tells the pair's owner why its connect failed for good and
// resets the client.
func (l *loop) connectGaveUp(p *link, err error) {
	if p.failed != nil {
		p.failed(err)
	}
	l.close(p, true)
}

// close closes both sockets and frees the pair's slot once the current
// batch of events is handled (later events in it may name the slot); rst
// sends the client a reset, as a refused connect does.
func (l *loop) close(p *link, rst bool) {
	if p.closed {
		return
	}
	p.closed = true
	if rst {
		unix.SetsockoptLinger(p.fd[0], unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	}
	for i := range p.fd {
		if p.fd[i] >= 0 {
			unix.Close(p.fd[i])
			p.fd[i] = -1
		}
		d := &p.dir[i]
		if d.hasP {
			if d.n > 0 {
				unix.Close(d.p.r)
				unix.Close(d.p.w)
				d.hasP = false
			} else {
				l.releasePipe(d)
			}
		}
	}
	l.pairs[p.slot] = nil
	l.retired = append(l.retired, p.slot)
}

func (l *loop) getPipe() (pipe, error) {
	if n := len(l.spare); n > 0 {
		pp := l.spare[n-1]
		l.spare = l.spare[:n-1]
		return pp, nil
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return pipe{}, fmt.Errorf("pipe2: %w", err)
	}
	// A bigger pipe moves more per splice; past the per-user pipe quota
	// the kernel refuses, and the default size still works.
	unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, pipeSize)
	return pipe{r: fds[0], w: fds[1]}, nil
}

func (l *loop) releasePipe(d *direction) {
	if !d.hasP || d.n > 0 {
		return
	}
	d.hasP = false
	if len(l.spare) < spareMax {
		l.spare = append(l.spare, d.p)
		return
	}
	unix.Close(d.p.r)
	unix.Close(d.p.w)
}

// nextTimeout is epoll_wait's timeout in ms: until the first connect
// deadline, or -1.
func (l *loop) nextTimeout() int {
	l.dropStale()
	if len(l.timers) == 0 {
		return -1
	}
	d := time.Until(l.timers[0].at)
	if d <= 0 {
		return 0
	}
	return int((d + time.Millisecond - 1) / time.Millisecond)
}

// dropStale pops timers of pairs that connected or ended: connects finish
// in order, so the heap stays as small as the connects under way.
func (l *loop) dropStale() {
	for len(l.timers) > 0 {
		t := l.timers[0]
		if !t.p.closed && t.p.gen == t.gen && t.p.attempt == t.attempt && t.p.connecting {
			return
		}
		heap.Pop(&l.timers)
	}
}

func (l *loop) expire() {
	now := time.Now()
	for {
		l.dropStale()
		if len(l.timers) == 0 || l.timers[0].at.After(now) {
			return
		}
		t := heap.Pop(&l.timers).(timer)
		p := t.p
		if p.fd[1] < 0 {
			continue // dialling again; that connect has its own timer
		}
		// Traffic from the child proves the connect; a server that waits
		// for the client to speak first gives none, so ask the socket.
		if _, err := unix.Getpeername(p.fd[1]); err == nil {
			p.connecting = false
			continue
		}
		serr, _ := unix.GetsockoptInt(p.fd[1], unix.SOL_SOCKET, unix.SO_ERROR)
		err := error(unix.ETIMEDOUT)
		if serr != 0 {
			err = unix.Errno(serr)
		}
		l.connectFailed(p, err)
	}
}

func (l *loop) shutdown() {
	for _, ln := range l.listeners {
		if ln != nil {
			l.closeListener(ln)
		}
	}
	for _, p := range l.pairs {
		if p != nil {
			l.close(p, false)
		}
	}
	for _, pp := range l.spare {
		unix.Close(pp.r)
		unix.Close(pp.w)
	}
	l.spare = nil
	unix.Close(l.epfd)
	unix.Close(l.evfd)
}

type timer struct {
	at           time.Time
	p            *link
	gen, attempt uint32
}

// arm starts the timer of the pair's current connect.
func (l *loop) arm(p *link) {
	if p.timeout <= 0 {
		p.timeout = defaultConnectTimeout
	}
	p.attempt++
	heap.Push(&l.timers, timer{at: time.Now().Add(p.timeout), p: p, gen: p.gen, attempt: p.attempt})
}

type timerHeap []timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

// splice moves up to n bytes without blocking. The loop's system calls do
// not block (epoll_wait aside), so they skip the runtime's bookkeeping for
// calls that might: it cost a few percent of the relay's CPU.
func splice(in, out, n int) (int, unix.Errno) {
	r, _, e := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
	if e != 0 {
		return 0, e
	}
	return int(r), 0
}

// epollPoll is epoll_wait with a zero timeout (epoll_pwait without a
// signal mask: arm64 has no epoll_wait).
func epollPoll(epfd int, events []unix.EpollEvent) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
