package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/unroot/unroot/internal/relay"
	"github.com/unroot/unroot/internal/sys"
	"github.com/unroot/unroot/port"
)

// Forwarder runs the forwards of one namespace. It is safe for concurrent
// use; Close ends every forward and waits for its goroutines.
type Forwarder struct {
	src port.SocketSource
	log *slog.Logger

	mu       sync.Mutex
	closed   bool
	disabled string // why Add refuses, if it does
	nextID   int
	fwds     map[int]*active
	eng      *relay.Engine // made with the first TCP forward

	// failEvery is the least time between two warnings of one forward's
	// failures (zero: lograte.DefaultEvery); tests shorten or lengthen it.
	failEvery time.Duration
}

// active is one running forward.
type active struct {
	status Status
	stop   func() // stops it and waits
}

// New returns a Forwarder whose namespace-side sockets come from src (the
// launcher's socket source, which makes them in the child's netns). log
// may be nil.
func New(src port.SocketSource, log *slog.Logger) *Forwarder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Forwarder{src: src, log: log.With("component", "forward"), nextID: 1, fwds: map[int]*active{}}
}

// Disable makes Add refuse every new forward with reason (a network driver
// that would publish their ports on the host).
func (f *Forwarder) Disable(reason string) {
	f.mu.Lock()
	f.disabled = reason
	f.mu.Unlock()
}

// ErrClosed is returned by Add after Close.
var ErrClosed = errors.New("forwards are closed: the launcher is stopping")

// Add validates sp, listens on its port inside the namespace and starts
// forwarding to the host service.
func (f *Forwarder) Add(ctx context.Context, sp Spec) (Status, error) {
	if err := Validate(sp); err != nil {
		return Status{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return Status{}, ErrClosed
	}
	if f.disabled != "" {
		return Status{}, errors.New(f.disabled)
	}
	if err := f.conflictLocked(sp); err != nil {
		return Status{}, err
	}
	sotype := sys.SOCK_STREAM
	if sp.Proto == "udp" {
		sotype = sys.SOCK_DGRAM
	}
	fd, err := f.listen(ctx, sotype, uint16(sp.NSPort))
	if err != nil {
		return Status{}, fmt.Errorf("forward %s: %w", sp, err)
	}
	return f.startLocked(sp, fd)
}

// AddListener starts forward sp on ln, its socket already bound inside
// the namespace (listening, for TCP): the launcher has the namespace make
// those of Launcher.Forward before the command starts. AddListener owns ln
// from the call on.
func (f *Forwarder) AddListener(sp Spec, ln *os.File) (Status, error) {
	defer ln.Close()
	if err := Validate(sp); err != nil {
		return Status{}, err
	}
	rc, err := ln.SyscallConn()
	if err != nil {
		return Status{}, fmt.Errorf("forward %s: %w", sp, err)
	}
	fd := -1
	var derr error
	if err := rc.Control(func(raw uintptr) { fd, derr = sys.DupCloexec(int(raw)) }); err != nil || derr != nil {
		return Status{}, fmt.Errorf("forward %s: take its socket: %w", sp, errors.Join(err, derr))
	}
	if err := sys.SetNonblock(fd); err != nil {
		sys.Close(fd)
		return Status{}, fmt.Errorf("forward %s: %w", sp, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		sys.Close(fd)
		return Status{}, ErrClosed
	}
	if err := f.conflictLocked(sp); err != nil {
		sys.Close(fd)
		return Status{}, err
	}
	return f.startLocked(sp, fd)
}

// conflictLocked refuses a second forward of one port inside.
func (f *Forwarder) conflictLocked(sp Spec) error {
	for id, a := range f.fwds {
		if a.status.Spec.Proto == sp.Proto && a.status.Spec.NSPort == sp.NSPort {
			return fmt.Errorf("conflict with ID %d: %d/%s inside is already forwarded to %s", id, sp.NSPort, sp.Proto, a.status.Spec.Host())
		}
	}
	return nil
}

// startLocked relays fd's traffic to the host service; it owns fd.
func (f *Forwarder) startLocked(sp Spec, fd int) (Status, error) {
	var stop func()
	var err error
	if sp.Proto == "tcp" {
		stop, err = f.startTCP(fd, sp)
	} else {
		stop, err = f.startUDP(fd, sp)
	}
	if err != nil {
		return Status{}, fmt.Errorf("forward %s: %w", sp, err)
	}
	st := Status{ID: f.nextID, Spec: sp}
	f.nextID++
	f.fwds[st.ID] = &active{status: st, stop: stop}
	f.log.Debug("forwarding", "id", st.ID, "spec", sp.String())
	if w := hostSocketWarning(sp); w != "" {
		f.log.Warn(w)
		st.Warning = w
	}
	return st, nil
}

// listen makes a socket in the namespace and binds it on the wildcard
// address at port: dual-stack where the namespace has IPv6, IPv4 only
// where it has not.
func (f *Forwarder) listen(ctx context.Context, sotype int, nsPort uint16) (int, error) {
	var errs []error
	for _, family := range []int{sys.AF_INET6, sys.AF_INET} {
		fd, err := f.src.Socket(ctx, family, sotype)
		if err != nil {
			if errors.Is(err, port.ErrSourceClosed) {
				return -1, err
			}
			errs = append(errs, err)
			continue
		}
		if err := sys.BindAny(fd, family, sotype, nsPort); err != nil {
			sys.Close(fd)
			if errors.Is(err, sys.EADDRINUSE) {
				return -1, fmt.Errorf("port %d is in use inside the namespace: pick another NSPORT, or stop what listens there", nsPort)
			}
			errs = append(errs, fmt.Errorf("bind port %d inside the namespace: %w", nsPort, err))
			continue
		}
		if sotype == sys.SOCK_STREAM {
			if err := sys.SetListenerOptions(fd); err != nil {
				sys.Close(fd)
				return -1, err
			}
		}
		return fd, nil
	}
	return -1, errors.Join(errs...)
}

// List returns the forwards by ID.
func (f *Forwarder) List(context.Context) ([]Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Status, 0, len(f.fwds))
	for _, a := range f.fwds {
		out = append(out, a.status)
	}
	slices.SortFunc(out, func(a, b Status) int { return a.ID - b.ID })
	return out, nil
}

// Remove stops forward id and the connections it carries.
func (f *Forwarder) Remove(_ context.Context, id int) error {
	f.mu.Lock()
	a, ok := f.fwds[id]
	delete(f.fwds, id)
	f.mu.Unlock()
	if !ok {
		return fmt.Errorf("unknown id: %d", id)
	}
	a.stop()
	return nil
}

// Close stops every forward. It is safe to call more than once.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	f.closed = true
	fwds := f.fwds
	f.fwds = map[int]*active{}
	eng := f.eng
	f.eng = nil
	f.mu.Unlock()
	for _, a := range fwds {
		a.stop()
	}
	if eng != nil {
		eng.Close()
	}
	return nil
}
