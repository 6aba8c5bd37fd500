package bypass

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/internal/lograte"
	"github.com/unroot/unroot/internal/seccomp"
)

// Rules are the calls the namespace init traps for the supervisor: bind and
// connect with an IPv4 or IPv6 address length, sendto with an address, and
// sendmsg. The address lengths keep unix and netlink sockets (dockerd's and
// containerd's chatter) off the supervisor's path. sendmsg keeps its address
// in memory, out of the filter's sight: every sendmsg stops for the
// supervisor, which lets those without an IPv4/IPv6 address run at once
// (docs/bypass.md gives the cost).
func Rules() []seccomp.Rule {
	lens := inetLens[:]
	return []seccomp.Rule{
		{Nr: unix.SYS_BIND, LenArg: 2, Lens: lens, NonZeroArg: -1},
		{Nr: unix.SYS_CONNECT, LenArg: 2, Lens: lens, NonZeroArg: -1},
		{Nr: unix.SYS_SENDTO, LenArg: 5, Lens: lens, NonZeroArg: 4},
		{Nr: unix.SYS_SENDMSG, LenArg: -1, NonZeroArg: -1},
	}
}

// inetLens are the address lengths of IPv4 and IPv6 sockaddrs programs
// pass: sockaddr_in, the RFC 2133 sockaddr_in6, sockaddr_in6 and
// sockaddr_storage.
var inetLens = [...]uint32{16, 24, 28, 128}

// Ports is the supervisor's view of the port driver.
type Ports interface {
	// Published lists the published ports now (the API may add some).
	Published(ctx context.Context) []Published
	// StepAside closes the relay's host listener of port id, and StepBack
	// opens it again.
	StepAside(ctx context.Context, id int) error
	StepBack(ctx context.Context, id int) error
}

// Config configures a Supervisor.
type Config struct {
	// Listener receives the notifications; the Supervisor owns it.
	Listener *seccomp.Listener
	// NetNS is the inode of the namespace's network namespace: calls of
	// processes in any other one run untouched.
	NetNS uint64
	// InitPID is a process in that namespace, whose /proc/PID/net/route
	// lists its networks.
	InitPID int
	Policy  Policy
	// Ports may be nil: no port is published, binds stay inside.
	Ports  Ports
	Logger *slog.Logger
}

// Supervisor serves the notifications until Close.
type Supervisor struct {
	cfg  Config
	log  *slog.Logger
	stop int // eventfd
	wg   sync.WaitGroup
	ctx  context.Context
	done context.CancelFunc

	mu     sync.Mutex
	bound  map[boundKey]*boundPort
	aside  map[int]bool // published port IDs whose relay listener stepped aside
	routes []netip.Prefix
	read   time.Time
	warned map[string]bool
	limits map[string]*lograte.Limiter
	// swapped are the host sockets put in programs in the last seconds.
	swapped map[uint64]swap

	closeOnce sync.Once
}

type boundKey struct {
	transport string
	childPort uint16
}

// boundPort is a published port whose program socket is on the host now.
type boundPort struct {
	host   netip.AddrPort
	family int
	v6only bool
	ids    []int
	// freeOnce: the last probe found the host address free.
	freeOnce bool
}

// Start serves cfg.Listener in the background.
func Start(cfg Config) (*Supervisor, error) {
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("start bypass: eventfd: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Listener.SyncWakeUp(); err != nil {
		log.Debug("bypass: without synchronous wake-ups", "err", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Supervisor{cfg: cfg, log: log.With("component", "bypass"), stop: stop, ctx: ctx, done: cancel,
		bound: map[boundKey]*boundPort{}, aside: map[int]bool{}, warned: map[string]bool{}, limits: map[string]*lograte.Limiter{}, swapped: map[uint64]swap{}}
	s.wg.Add(2)
	go s.loop()
	go s.probe()
	return s, nil
}

// Close stops serving, waits for the goroutines and closes the listener:
// calls trapped later fail with ENOSYS (the command is normally gone).
func (s *Supervisor) Close() error {
	s.closeOnce.Do(func() {
		s.done()
		var one [8]byte
		one[0] = 1
		unix.Write(s.stop, one[:])
		s.wg.Wait()
		unix.Close(s.stop)
		s.cfg.Listener.Close()
	})
	return nil
}

func (s *Supervisor) loop() {
	defer s.wg.Done()
	if err := s.serve(); err != nil {
		// Closed now, not at Close: a listener nobody reads would leave
		// every trapped call of the command waiting for good.
		s.cfg.Listener.Close()
		s.log.Error("bypass: supervisor stopped; trapped calls now fail with ENOSYS: " + err.Error() +
			" (its binds, connects and sendtos to IPv4/IPv6 addresses and all its sendmsg calls fail from now on: restart the command, or run it without --bypass; please report this as a bug)")
	}
}

// serve receives notifications until Close (nil) or an error.
func (s *Supervisor) serve() error {
	var handlers sync.WaitGroup
	defer handlers.Wait()
	for {
		ready, hup, err := s.cfg.Listener.Wait(s.stop)
		if err != nil {
			return err
		}
		if !ready {
			if hup || s.ctx.Err() != nil {
				return nil
			}
			continue
		}
		n, err := s.cfg.Listener.Recv()
		if errors.Is(err, seccomp.ErrGone) {
			continue
		}
		if err != nil {
			return fmt.Errorf("receive seccomp notification: %w", err)
		}
		if n.Nr == unix.SYS_SENDMSG && s.plainSendmsg(n) {
			// Most sendmsg calls (unix sockets, connected sockets) carry
			// no address: answered here, without waking another thread.
			s.cont(n)
			continue
		}
		handlers.Add(1)
		go func() {
			defer handlers.Done()
			s.handle(n)
		}()
	}
}

// plainSendmsg reports whether a trapped sendmsg names no IPv4/IPv6
// destination (or its header cannot be read because the pointer is bad or
// the caller is gone, which the kernel answers as without --bypass).
func (s *Supervisor) plainSendmsg(n seccomp.Notif) bool {
	var b [msghdrSize]byte
	if err := seccomp.ReadMem(int(n.Pid), n.Args[1], b[:]); err != nil {
		return errors.Is(err, unix.EFAULT) || errors.Is(err, unix.ESRCH)
	}
	h := decodeMsghdr(b[:])
	return h.name == 0 || !slices.Contains(inetLens[:], h.namelen)
}

// warnOnce logs a problem the user should know of once per kind.
func (s *Supervisor) warnOnce(key, msg string, args ...any) {
	s.mu.Lock()
	seen := s.warned[key]
	s.warned[key] = true
	s.mu.Unlock()
	if !seen {
		s.log.Warn(msg, args...)
	}
}

func (s *Supervisor) cont(n seccomp.Notif) {
	if err := s.cfg.Listener.Continue(n.ID); err != nil && !errors.Is(err, seccomp.ErrGone) {
		s.warnOnce("continue", "let a trapped call continue", "err", err)
	}
}

// fallback lets a call that should have been bypassed run inside the
// namespace, as without --bypass, and says so: what was not bypassed and
// why. The warning is rate-limited per kind (key), as the cause may repeat
// on every call.
func (s *Supervisor) fallback(n seccomp.Notif, key, what string, err error, args ...any) {
	if errors.Is(s.cfg.Listener.Valid(n.ID), seccomp.ErrGone) {
		// The call is gone (its process died, or a signal restarts it and
		// a new notification comes): nothing was decided. On any other
		// error the call is let go on all the same: returning would leave
		// it waiting for an answer that never comes.
		return
	}
	s.mu.Lock()
	lim := s.limits[key]
	if lim == nil {
		lim = &lograte.Limiter{Every: 10 * time.Second}
		s.limits[key] = lim
	}
	s.mu.Unlock()
	msg := "bypass: " + what + " runs inside the namespace, through the relay or driver as without --bypass"
	if fix := fallbackFix(key, err); fix != "" {
		msg += "; " + fix
	}
	lim.Log(s.ctx, s.log, slog.LevelWarn, msg, append([]any{"pid", n.Pid, "err", err}, args...)...)
	s.cont(n)
}

func (s *Supervisor) handle(n seccomp.Notif) {
	if n.Nr == unix.SYS_SENDMSG {
		// The message header first: most carry no address.
		s.sendmsg(n)
		return
	}
	pid := int(n.Pid)
	if nsInode(pid) != s.cfg.NetNS {
		s.cont(n)
		return
	}
	switch n.Nr {
	case unix.SYS_BIND:
		s.bind(n)
	case unix.SYS_CONNECT:
		s.connect(n, 1, 2, false)
	case unix.SYS_SENDTO:
		s.connect(n, 4, 5, true)
	default:
		s.cont(n)
	}
}

// sendmsg serves a trapped sendmsg: one with an IPv4/IPv6 destination
// (msg_name) from the namespace is decided as a sendto to that address.
func (s *Supervisor) sendmsg(n seccomp.Notif) {
	var b [msghdrSize]byte
	if err := seccomp.ReadMem(int(n.Pid), n.Args[1], b[:]); err != nil {
		if errors.Is(err, unix.EFAULT) || errors.Is(err, unix.ESRCH) {
			s.cont(n) // the kernel fails it as without --bypass; or it is gone
			return
		}
		s.fallback(n, "read-sendmsg", "a sendmsg (its message header could not be read, so it is not looked at)", err)
		return
	}
	h := decodeMsghdr(b[:])
	if h.name == 0 || !slices.Contains(inetLens[:], h.namelen) || nsInode(int(n.Pid)) != s.cfg.NetNS {
		s.cont(n)
		return
	}
	fam, dst, ok, err := s.readSockaddr(n, h.name, h.namelen)
	if err != nil {
		s.fallback(n, "read-sendmsg", "a sendmsg (its address could not be read, so it is not looked at)", err)
		return
	}
	if !ok {
		s.cont(n)
		return
	}
	s.route(n, fam, dst, true)
}

// readAddr reads the sockaddr at argument ptr whose length is argument ln.
// ok is false for an address that is not IPv4 or IPv6 (left to the kernel);
// err says why it could not be read.
func (s *Supervisor) readAddr(n seccomp.Notif, ptr, ln int) (fam int, ap netip.AddrPort, ok bool, err error) {
	return s.readSockaddr(n, n.Args[ptr], uint32(n.Args[ln]))
}

// readSockaddr reads a sockaddr of length ln at addr in the target.
func (s *Supervisor) readSockaddr(n seccomp.Notif, addr uint64, ln uint32) (int, netip.AddrPort, bool, error) {
	b := make([]byte, min(ln, 128))
	if err := seccomp.ReadMem(int(n.Pid), addr, b); err != nil {
		if errors.Is(err, unix.EFAULT) {
			// A bad pointer: the kernel fails the call with EFAULT, as
			// without --bypass.
			return 0, netip.AddrPort{}, false, nil
		}
		return 0, netip.AddrPort{}, false, err
	}
	if err := s.cfg.Listener.Valid(n.ID); err != nil {
		return 0, netip.AddrPort{}, false, err
	}
	fam, ap, ok := decodeSockaddr(b)
	return fam, ap, ok, nil
}

// callName names a trapped call in warnings.
func callName(n seccomp.Notif) string {
	switch n.Nr {
	case unix.SYS_BIND:
		return "bind"
	case unix.SYS_CONNECT:
		return "connect"
	case unix.SYS_SENDTO:
		return "sendto"
	case unix.SYS_SENDMSG:
		return "sendmsg"
	}
	return "call " + strconv.Itoa(int(n.Nr))
}

func transportOf(si sockInfo) string {
	if si.typ == unix.SOCK_STREAM {
		return "tcp"
	}
	return "udp"
}

// swap is a host socket put in a program, remembered for a while by its
// inode: a signal that interrupts the trapped call after the swap but
// before the answer makes the kernel restart it, on the host socket now,
// and the restarted call must not run as the program wrote it.
type swap struct {
	redirect netip.AddrPort // the connect target, for a redirected connect
	family   int
	bound    bool // a bind: it is done
	at       time.Time
	// For a restarted redirected connect: nsSocket connected again, and
	// errno is what the program gets.
	again bool
	errno unix.Errno
}

// remember records ours as swapped in; the returned func forgets it again
// (for a swap that failed).
func (s *Supervisor) remember(ours int, w swap) (forget func()) {
	var st unix.Stat_t
	if unix.Fstat(ours, &st) != nil {
		return func() {}
	}
	w.at = time.Now()
	s.mu.Lock()
	s.swapped[st.Ino] = w
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.swapped, st.Ino)
		s.mu.Unlock()
	}
}

// nsSock is what nsSocket found of the target's socket.
type nsSock struct {
	fd int      // the namespace's socket, when ok
	si sockInfo // its kind, when ok
	// ok: an IPv4/IPv6 TCP or UDP socket of the namespace, fd is ours to
	// close.
	ok bool
	// host: a socket of the host's network namespace (SIOCGSKNS refused,
	// or one the bypass swapped in a moment ago), not of a third one (a
	// container's, made through setns).
	host bool
	// w is what was done to a socket swapped a moment ago.
	w *swap
}

// nsSocket takes the target's socket when it is an IPv4/IPv6 TCP or UDP
// socket of the namespace (not one already swapped for a host socket).
// Otherwise, for a socket swapped a moment ago, it returns what was done,
// and for a redirected connect trapped again (a restart) connects it
// again. err says why the socket could not be looked at: the caller warns,
// as the call it would have bypassed runs inside.
func (s *Supervisor) nsSocket(n seccomp.Notif) (nsSock, error) {
	theirs, err := takeSocket(int(n.Pid), int(int32(n.Args[0])))
	if err != nil {
		return nsSock{}, err
	}
	// The namespace first: a host socket (one swapped in already, a
	// datagram server's replies) is told apart in one call.
	ns, err := netnsOf(theirs)
	if err != nil {
		unix.Close(theirs)
		return nsSock{}, err
	}
	if ns == s.cfg.NetNS {
		if si, ok := inspect(theirs); ok {
			return nsSock{fd: theirs, si: si, ok: true}, nil
		}
		unix.Close(theirs)
		return nsSock{}, nil
	}
	defer unix.Close(theirs)
	r := nsSock{host: ns == 0} // 0: SIOCGSKNS refused, the host's
	var st unix.Stat_t
	if unix.Fstat(theirs, &st) == nil {
		s.mu.Lock()
		if v, found := s.swapped[st.Ino]; found {
			r.w, r.host = &v, true
		}
		s.mu.Unlock()
	}
	if r.w != nil && r.w.redirect.IsValid() && n.Nr == unix.SYS_CONNECT {
		// A redirected connect again: it was started on our socket. Only
		// a connect: a send on the connected socket goes to sendHost.
		errno := connectHost(theirs, r.w.family, r.w.redirect, true)
		if errno == unix.EISCONN {
			errno = 0
		}
		r.w.again, r.w.errno = true, errno
	}
	return r, nil
}

func (s *Supervisor) bind(n seccomp.Notif) {
	if s.cfg.Ports == nil {
		s.cont(n)
		return
	}
	_, addr, ok, err := s.readAddr(n, 1, 2)
	if err != nil {
		s.fallback(n, "read-bind", "a bind (its address could not be read, so a published port may not be bypassed)", err)
		return
	}
	if !ok {
		s.cont(n)
		return
	}
	// Cheap test first: most binds are of ports nobody published.
	pubs := s.cfg.Ports.Published(s.ctx)
	if len(matchBind(pubs, "tcp", addr, s.cfg.Policy.Self))+len(matchBind(pubs, "udp", addr, s.cfg.Policy.Self)) == 0 {
		s.cont(n)
		return
	}
	ns, err := s.nsSocket(n)
	theirs, si, ok := ns.fd, ns.si, ns.ok
	if ns.w != nil && ns.w.bound {
		s.answer(n, 0) // restarted after the swap: it is bound
		return
	}
	if err != nil {
		s.fallback(n, "sock-bind", "the bind of published port "+addr.String(), err)
		return
	}
	if !ok {
		s.cont(n)
		return
	}
	defer unix.Close(theirs)
	transport := transportOf(si)
	match := matchBind(pubs, transport, addr, s.cfg.Policy.Self)
	if len(match) == 0 {
		s.cont(n)
		return
	}
	host, ok := pickBind(si.family, si.v6only, match)
	if !ok {
		s.fallback(n, "family"+strconv.Itoa(match[0].ID), "the bind of published port "+addr.String(), errors.New("the program's socket (its address family or IPV6_V6ONLY) cannot serve the published host address; the relay serves it"))
		return
	}
	ours, ok := s.hostSocket(n, si, theirs, "the bind of published port "+addr.String())
	if !ok {
		return
	}
	defer unix.Close(ours)
	key := boundKey{transport, addr.Port()}
	entry := &boundPort{host: host, family: si.family, v6only: si.v6only, ids: portIDs(match)}
	if err := s.claim(key, entry); err != nil {
		s.fallback(n, "aside"+strconv.Itoa(match[0].ID), "the bind of published port "+addr.String(), fmt.Errorf("the relay could not step aside, it serves the port: %w", err))
		return
	}
	if err := unix.Bind(ours, toSockaddr(si.family, host)); err != nil {
		errno := errnoOf(err)
		if errno == unix.EACCES || errno == unix.EPERM || errno == unix.EADDRNOTAVAIL {
			// The host refuses what the relay could not do either; the
			// program keeps its socket inside, as without --bypass.
			s.fallback(n, "bind"+host.String(), "the bind of published port "+addr.String(), fmt.Errorf("bind %s on the host: %w (the port is served inside, through the relay once it is back)", host, err))
			return
		}
		// EADDRINUSE and the like: the program's own earlier socket, or
		// another process of the host; the program sees what a bind inside
		// would have said.
		s.answer(n, errno)
		return
	}
	// Remembered before the swap: a restart of the call can be served the
	// moment the program holds our socket.
	forget := s.remember(ours, swap{bound: true})
	if err := s.cfg.Listener.Replace(n.ID, ours, int(int32(n.Args[0])), fdCloexec(int(n.Pid), int(int32(n.Args[0])))); err != nil {
		forget()
		if !errors.Is(err, seccomp.ErrGone) {
			s.fallback(n, "addfd", "the bind of published port "+addr.String(), fmt.Errorf("swap in the host socket: %w", err))
		}
		return
	}
	s.mu.Lock()
	s.bound[key] = entry
	s.mu.Unlock()
	s.log.Debug("bind bypassed", "bind", addr, "host", host, "transport", transport, "pid", n.Pid)
	s.answer(n, 0)
}

// claim steps the relay aside for entry's ports and records the port as
// bound in one go, so the prober (which holds the same lock) cannot bring
// the relay back in between. From here a failure leaves the port to the
// prober, which brings the relay back once the host address has been free
// a while.
func (s *Supervisor) claim(key boundKey, entry *boundPort) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stepAsideLocked(entry.ids); err != nil {
		return err
	}
	if old, ok := s.bound[key]; ok {
		old.freeOnce = false // bound again: not free
	} else {
		s.bound[key] = entry
	}
	return nil
}

// portIDs are the IDs of the published ports a bind matched.
func portIDs(match []Published) []int {
	ids := make([]int, len(match))
	for i, p := range match {
		ids[i] = p.ID
	}
	return ids
}

// hostSocket is a host socket like theirs (hostSocket); when none can be
// made the call goes on inside the namespace, with one warning, and ok is
// false.
func (s *Supervisor) hostSocket(n seccomp.Notif, si sockInfo, theirs int, what string) (ours int, ok bool) {
	ours, err := hostSocket(si, theirs)
	if err != nil {
		s.fallback(n, "socket", what, err)
		return -1, false
	}
	return ours, true
}

func (s *Supervisor) answer(n seccomp.Notif, errno unix.Errno) {
	if err := s.cfg.Listener.Return(n.ID, 0, errno); err != nil && !errors.Is(err, seccomp.ErrGone) {
		s.warnOnce("send", "answer a trapped call", "err", err)
	}
}

func (s *Supervisor) stepAsideLocked(ids []int) error {
	for _, id := range ids {
		if s.aside[id] {
			continue
		}
		if err := s.cfg.Ports.StepAside(s.ctx, id); err != nil {
			return err
		}
		s.aside[id] = true
	}
	return nil
}

// boundLookup finds the host listener of a port bound through the bypass.
func (s *Supervisor) boundLookup(transport string, family int) func(uint16) (netip.AddrPort, bool) {
	return func(port uint16) (netip.AddrPort, bool) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for k, b := range s.bound {
			if k.childPort != port || (transport != "" && k.transport != transport) {
				continue
			}
			if family == 0 {
				return b.host, true
			}
			return reachBound(family, b.host, b.v6only)
		}
		return netip.AddrPort{}, false
	}
}

// ownRoutes are the namespace's routed prefixes, read at most once a second.
func (s *Supervisor) ownRoutes() []netip.Prefix {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.read) < time.Second {
		return s.routes
	}
	base := "/proc/" + strconv.Itoa(s.cfg.InitPID) + "/net/"
	r4, _ := os.ReadFile(base + "route")
	r6, _ := os.ReadFile(base + "ipv6_route")
	s.routes = append(parseRoutes4(string(r4)), parseRoutes6(string(r6))...)
	s.read = time.Now()
	return s.routes
}

func (s *Supervisor) connect(n seccomp.Notif, ptr, ln int, sendto bool) {
	fam, dst, ok, err := s.readAddr(n, ptr, ln)
	if err != nil {
		s.fallback(n, "read-"+callName(n), "a "+callName(n)+" (its address could not be read, so it is not looked at)", err)
		return
	}
	if !ok {
		s.cont(n)
		return
	}
	s.route(n, fam, dst, sendto)
}

// route decides a connect to dst, or (send) a sendto or sendmsg to it.
func (s *Supervisor) route(n seccomp.Notif, fam int, dst netip.AddrPort, send bool) {
	sendto := send
	own := s.ownRoutes()
	first, _ := s.cfg.Policy.connect(fam, dst, own, s.boundLookup("", 0))
	if first == keep {
		s.cont(n)
		return
	}
	ns, err := s.nsSocket(n)
	theirs, si, ok := ns.fd, ns.si, ns.ok
	if ns.w != nil && ns.w.again {
		// Restarted after a redirect: nsSocket connected again.
		s.answer(n, ns.w.errno)
		return
	}
	if err != nil {
		s.fallback(n, "sock-"+callName(n), "a "+callName(n)+" to "+dst.String(), err)
		return
	}
	if !ok {
		// A host socket (swapped in already, a connected one included)
		// sending to a bypassed port; a third namespace's socket keeps
		// its own routing.
		if send && ns.host && first == redirect {
			s.sendHost(n, dst, own)
			return
		}
		s.cont(n)
		return
	}
	defer unix.Close(theirs)
	if si.local.Port() != 0 || (sendto && si.typ != unix.SOCK_DGRAM) {
		// Bound inside (a server replying, a client that chose its
		// port): its address is the namespace's; leave it there.
		s.cont(n)
		return
	}
	act, target := s.cfg.Policy.connect(si.family, dst, own, s.boundLookup(transportOf(si), si.family))
	if act == keep {
		s.cont(n)
		return
	}
	what := "a " + callName(n) + " to " + dst.String()
	var payload []byte
	if act == redirect && sendto {
		// The datagram goes to the bypassed socket: the supervisor sends
		// it from the program's new host socket, as the kernel would
		// have sent it to the address the program named.
		var errno unix.Errno
		if payload, errno, err = s.readPayload(n); err != nil {
			s.fallback(n, "payload", what, err)
			return
		}
		if errno != 0 {
			s.answer(n, errno)
			return
		}
	}
	ours, ok := s.hostSocket(n, si, theirs, what)
	if !ok {
		return
	}
	defer unix.Close(ours)
	fd := int(int32(n.Args[0]))
	cloexec := fdCloexec(int(n.Pid), fd)
	if act == egress {
		if err := s.cfg.Listener.Replace(n.ID, ours, fd, cloexec); err != nil {
			if !errors.Is(err, seccomp.ErrGone) {
				s.fallback(n, "addfd", what, fmt.Errorf("swap in the host socket: %w", err))
			}
			return
		}
		s.cont(n)
		return
	}
	if sendto {
		if err := s.cfg.Listener.Replace(n.ID, ours, fd, cloexec); err != nil {
			if !errors.Is(err, seccomp.ErrGone) {
				s.fallback(n, "addfd", what, fmt.Errorf("swap in the host socket: %w", err))
			}
			return
		}
		s.sendAnswer(n, ours, si.family, payload, target)
		return
	}
	errno := connectHost(ours, si.family, target, si.nonblock)
	forget := s.remember(ours, swap{redirect: target, family: si.family})
	if err := s.cfg.Listener.Replace(n.ID, ours, fd, cloexec); err != nil {
		forget()
		if !errors.Is(err, seccomp.ErrGone) {
			s.fallback(n, "addfd", what, fmt.Errorf("swap in the host socket: %w", err))
		}
		return
	}
	s.log.Debug("connect redirected", "dst", dst, "host", target, "pid", n.Pid)
	s.answer(n, errno)
}

// probe brings the relay back for ports whose host socket is gone: a bind
// of the host address succeeds again.
func (s *Supervisor) probe() {
	defer s.wg.Done()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		for ino, w := range s.swapped {
			if time.Since(w.at) > 10*time.Second {
				delete(s.swapped, ino)
			}
		}
		// A port must be found free twice in a row: programs that close
		// and bind again between clients (iperf3 -s) keep it.
		var free []boundKey
		for k, b := range s.bound {
			if !portFree(k.transport, b) {
				b.freeOnce = false
				continue
			}
			if b.freeOnce {
				free = append(free, k)
			}
			b.freeOnce = true
		}
		for _, k := range free {
			b := s.bound[k]
			back := true
			for _, id := range b.ids {
				if err := s.cfg.Ports.StepBack(s.ctx, id); err != nil {
					s.log.Debug("relay not back yet", "id", id, "err", err)
					back = false
					continue
				}
				delete(s.aside, id)
			}
			if back {
				delete(s.bound, k)
			}
		}
		s.mu.Unlock()
	}
}

// portFree reports whether no socket holds the host address any more. A
// UDP probe binds without SO_REUSEADDR, which fails while any socket is
// bound there. For TCP a plain bind that succeeds says the same. When it
// fails, a probe with SO_REUSEADDR that listens tells a listener (not
// free) from what else refuses a plain bind: connections of the old socket
// (TIME_WAIT and the like, which do not count), or the program's socket,
// bound and not listening yet (a server that binds, then listens seconds
// later; the relay must not take its port meanwhile). Only connections show
// in /proc/net/tcp*, so the port is free when one of them is there.
func portFree(transport string, b *boundPort) bool {
	if transport == "udp" {
		return bindFree(unix.SOCK_DGRAM, b, false)
	}
	if bindFree(unix.SOCK_STREAM, b, false) {
		return true
	}
	return bindFree(unix.SOCK_STREAM, b, true) && tcpConnsOnPort(b.host.Port())
}

// bindFree binds (and, with reuse, sets SO_REUSEADDR and listens) a
// throwaway socket on b's host address.
func bindFree(typ int, b *boundPort, reuse bool) bool {
	fd, err := unix.Socket(b.family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	if b.family == unix.AF_INET6 && !b.v6only {
		unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
	}
	if reuse {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	}
	if unix.Bind(fd, toSockaddr(b.family, b.host)) != nil {
		return false
	}
	return !reuse || unix.Listen(fd, 1) == nil
}

// tcpConnsOnPort reports whether the host network namespace has a TCP
// socket other than a listener with local port port (/proc/net/tcp and
// tcp6: a socket that is only bound is not listed there).
func tcpConnsOnPort(port uint16) bool {
	suffix := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			// sl local_address rem_address st ...; 0A is LISTEN.
			if len(fs) > 3 && strings.HasSuffix(fs[1], suffix) && fs[3] != "0A" {
				return true
			}
		}
	}
	return false
}

// sendHost serves a sendto or sendmsg from the namespace on a socket that
// is a host socket already (one the bypass swapped in): a datagram to a
// port bound through the bypass (at 127.0.0.1 or the namespace's own
// address) is sent to that port's host socket; anything else runs as the
// program made it.
func (s *Supervisor) sendHost(n seccomp.Notif, dst netip.AddrPort, own []netip.Prefix) {
	theirs, err := takeSocket(int(n.Pid), int(int32(n.Args[0])))
	if err != nil {
		s.fallback(n, "sock-"+callName(n), "a "+callName(n)+" to "+dst.String(), err)
		return
	}
	defer unix.Close(theirs)
	si, ok := inspect(theirs)
	if !ok || si.typ != unix.SOCK_DGRAM {
		s.cont(n)
		return
	}
	act, target := s.cfg.Policy.connect(si.family, dst, own, s.boundLookup("udp", si.family))
	if act != redirect {
		s.cont(n)
		return
	}
	payload, errno, err := s.readPayload(n)
	if err != nil {
		s.fallback(n, "payload", "a "+callName(n)+" to "+dst.String(), err)
		return
	}
	if errno != 0 {
		s.answer(n, errno)
		return
	}
	s.sendAnswer(n, theirs, si.family, payload, target)
}

// sendAnswer sends payload from fd to target with the trapped call's flags
// and answers the call with the byte count or the error.
func (s *Supervisor) sendAnswer(n seccomp.Notif, fd, family int, payload []byte, target netip.AddrPort) {
	flags := int(n.Args[3]) // sendto(fd, buf, len, flags, ...)
	if n.Nr == unix.SYS_SENDMSG {
		flags = int(n.Args[2]) // sendmsg(fd, msg, flags)
	}
	if errno := sendDatagram(fd, family, payload, flags, target); errno != 0 {
		s.answer(n, errno)
		return
	}
	s.log.Debug("datagram redirected", "host", target, "pid", n.Pid, "bytes", len(payload))
	if err := s.cfg.Listener.Return(n.ID, int64(len(payload)), 0); err != nil && !errors.Is(err, seccomp.ErrGone) {
		s.warnOnce("send", "answer a trapped call", "err", err)
	}
}

// readPayload reads the datagram of a trapped sendto or sendmsg from the
// target's memory. errno is what the call fails with as the kernel would
// have failed it (EINVAL, EMSGSIZE, EFAULT); err that it could not be read,
// or that it carries control messages the supervisor does not send.
func (s *Supervisor) readPayload(n seccomp.Notif) (payload []byte, errno unix.Errno, err error) {
	iovs := []iovec{sendtoIovec(n.Args[1], n.Args[2])}
	if n.Nr == unix.SYS_SENDMSG {
		if iovs, errno, err = s.readIovecs(n); err != nil || errno != 0 {
			return nil, errno, err
		}
	}
	total, errno := payloadSize(iovs)
	if errno != 0 {
		return nil, errno, nil
	}
	payload = make([]byte, 0, total)
	for _, v := range iovs {
		b := make([]byte, v.len) // v.len <= total <= maxDatagram
		if err := seccomp.ReadMem(int(n.Pid), v.base, b); err != nil {
			if errors.Is(err, unix.EFAULT) {
				return nil, unix.EFAULT, nil
			}
			return nil, 0, err
		}
		payload = append(payload, b...)
	}
	if err := s.cfg.Listener.Valid(n.ID); err != nil {
		return nil, 0, err
	}
	return payload, 0, nil
}

// readIovecs reads the iovecs a trapped sendmsg names.
func (s *Supervisor) readIovecs(n seccomp.Notif) ([]iovec, unix.Errno, error) {
	var b [msghdrSize]byte
	if err := seccomp.ReadMem(int(n.Pid), n.Args[1], b[:]); err != nil {
		if errors.Is(err, unix.EFAULT) {
			return nil, unix.EFAULT, nil
		}
		return nil, 0, err
	}
	h := decodeMsghdr(b[:])
	if errno, err := checkMsghdr(h); errno != 0 || err != nil {
		return nil, errno, err
	}
	raw := make([]byte, 16*h.iovlen)
	if err := seccomp.ReadMem(int(n.Pid), h.iov, raw); err != nil {
		if errors.Is(err, unix.EFAULT) {
			return nil, unix.EFAULT, nil
		}
		return nil, 0, err
	}
	return decodeIovecs(raw), 0, nil
}
