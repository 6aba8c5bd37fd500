package bypass

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// The socket calls of the supervisor: this file and internal/seccomp are
// the only ones here that make system calls.

// sockInfo is what the supervisor learns of the target's socket.
type sockInfo struct {
	family, typ, proto int
	nonblock           bool
	v6only             bool
	local              netip.AddrPort // its bound address, port 0 if unbound
}

// pidfdThread is PIDFD_THREAD (Linux 6.9): a pidfd of one thread, not of
// its process.
const pidfdThread = unix.O_EXCL

// takeSocket duplicates descriptor fd of thread tid (a notification names
// the thread that made the call) into this one.
func takeSocket(tid, fd int) (int, error) {
	pidfd, err := openThread(tid)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pidfd)
	s, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_getfd %d of thread %d: %w", fd, tid, err)
	}
	return s, nil
}

// openThread opens a pidfd whose descriptor table is thread tid's. In a
// multi-threaded program (Go's runtime, a thread pool) the caller is often
// not the thread-group leader, and a plain pidfd_open of such a thread
// fails (EINVAL on older kernels, ENOENT on 6.18). PIDFD_THREAD (6.9) names
// the thread itself; before it, the process is opened through the Tgid in
// /proc/TID/status (its threads share the table unless one unshared it).
func openThread(tid int) (int, error) {
	pidfd, err := unix.PidfdOpen(tid, pidfdThread)
	if err != unix.EINVAL {
		if err != nil {
			return -1, fmt.Errorf("pidfd_open thread %d: %w", tid, err)
		}
		return pidfd, nil
	}
	pidfd, err = unix.PidfdOpen(tid, 0)
	if err == unix.EINVAL || err == unix.ENOENT {
		b, rerr := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/status")
		if pid, ok := parseTgid(string(b)); rerr == nil && ok && pid != tid {
			pidfd, err = unix.PidfdOpen(pid, 0)
		}
	}
	if err != nil {
		return -1, fmt.Errorf("pidfd_open %d: %w", tid, err)
	}
	return pidfd, nil
}

// inspect reads the socket's kind; ok is false for a descriptor that is not
// a TCP or UDP socket over IPv4 or IPv6.
func inspect(fd int) (sockInfo, bool) {
	var si sockInfo
	var err error
	if si.family, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil {
		return si, false
	}
	if si.family != unix.AF_INET && si.family != unix.AF_INET6 {
		return si, false
	}
	if si.typ, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil {
		return si, false
	}
	si.proto, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	switch {
	case si.typ == unix.SOCK_STREAM && (si.proto == unix.IPPROTO_TCP || si.proto == unix.IPPROTO_MPTCP):
		// Go listens with MPTCP by default where the kernel has it.
	case si.typ == unix.SOCK_DGRAM && si.proto == unix.IPPROTO_UDP:
	default:
		return si, false
	}
	if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err == nil {
		si.nonblock = fl&unix.O_NONBLOCK != 0
	}
	if si.family == unix.AF_INET6 {
		v, _ := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
		si.v6only = v != 0
	}
	if sa, err := unix.Getsockname(fd); err == nil {
		si.local = fromSockaddr(sa)
	}
	return si, true
}

// netnsOf is the inode of the network namespace fd's socket belongs to
// (SIOCGSKNS needs CAP_NET_ADMIN over that namespace, which this process
// has for the namespace it made, and for the host's only when it is root
// there: EPERM then means a host socket).
func netnsOf(fd int) (uint64, error) {
	ns, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
	if err == unix.EPERM {
		return 0, nil // not the namespace's
	}
	if err != nil {
		return 0, fmt.Errorf("network namespace of the socket (SIOCGSKNS): %w", err)
	}
	defer unix.Close(ns)
	var st unix.Stat_t
	if err := unix.Fstat(ns, &st); err != nil {
		return 0, fmt.Errorf("network namespace of the socket: %w", err)
	}
	return st.Ino, nil
}

// nsInode is the inode of /proc/PID/ns/net, 0 if the process is gone.
func nsInode(pid int) uint64 {
	var st unix.Stat_t
	if unix.Stat("/proc/"+strconv.Itoa(pid)+"/ns/net", &st) != nil {
		return 0
	}
	return st.Ino
}

// fdCloexec reads the close-on-exec flag of a target's descriptor from
// /proc/PID/fdinfo (pidfd_getfd sets its own).
func fdCloexec(pid, fd int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd))
	if err != nil {
		return false
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("flags:")); ok {
			fl, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 8, 64)
			return err == nil && fl&unix.O_CLOEXEC != 0
		}
	}
	return false
}

// hostSocket makes a socket of si's kind in this process's (the host's)
// network namespace with the options the program set on theirs.
func hostSocket(si sockInfo, theirs int) (int, error) {
	typ := si.typ | unix.SOCK_CLOEXEC
	if si.nonblock {
		typ |= unix.SOCK_NONBLOCK
	}
	fd, err := unix.Socket(si.family, typ, si.proto)
	if err != nil {
		return -1, fmt.Errorf("create host socket: %w", err)
	}
	copyOptions(theirs, fd, si)
	return fd, nil
}

type sockopt struct{ level, name int }

var (
	commonOpts = []sockopt{
		{unix.SOL_SOCKET, unix.SO_REUSEADDR}, {unix.SOL_SOCKET, unix.SO_REUSEPORT},
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE}, {unix.SOL_SOCKET, unix.SO_BROADCAST},
		{unix.SOL_SOCKET, unix.SO_PRIORITY}, {unix.SOL_SOCKET, unix.SO_RCVLOWAT},
		{unix.SOL_SOCKET, unix.SO_MARK},
	}
	tcpOpts = []sockopt{
		{unix.IPPROTO_TCP, unix.TCP_NODELAY}, {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL}, {unix.IPPROTO_TCP, unix.TCP_KEEPCNT},
		{unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT}, {unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT},
		{unix.IPPROTO_TCP, unix.TCP_FASTOPEN}, {unix.IPPROTO_TCP, unix.TCP_QUICKACK},
		{unix.IPPROTO_TCP, unix.TCP_MAXSEG},
	}
	v4Opts = []sockopt{{unix.IPPROTO_IP, unix.IP_TOS}, {unix.IPPROTO_IP, unix.IP_PKTINFO}, {unix.IPPROTO_IP, unix.IP_RECVTOS}, {unix.IPPROTO_IP, unix.IP_FREEBIND}}
	v6Opts = []sockopt{{unix.IPPROTO_IPV6, unix.IPV6_V6ONLY}, {unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO}, {unix.IPPROTO_IPV6, unix.IPV6_TCLASS}, {unix.IPPROTO_IPV6, unix.IPV6_FREEBIND}}
)

// copyOptions sets on ours every option whose value on theirs differs from
// a fresh socket's. Buffer sizes are copied only when set (the kernel
// reports them doubled, and setting one turns off its autotuning).
func copyOptions(theirs, ours int, si sockInfo) {
	opts := slicesConcat(commonOpts, v4Opts)
	if si.family == unix.AF_INET6 {
		opts = slicesConcat(commonOpts, v6Opts, v4Opts[:1])
	}
	if si.typ == unix.SOCK_STREAM {
		opts = append(opts, tcpOpts...)
	}
	for _, o := range opts {
		v, err := unix.GetsockoptInt(theirs, o.level, o.name)
		if err != nil {
			continue
		}
		if cur, err := unix.GetsockoptInt(ours, o.level, o.name); err == nil && cur == v {
			continue
		}
		_ = unix.SetsockoptInt(ours, o.level, o.name, v)
	}
	for _, name := range []int{unix.SO_RCVBUF, unix.SO_SNDBUF} {
		v, err1 := unix.GetsockoptInt(theirs, unix.SOL_SOCKET, name)
		cur, err2 := unix.GetsockoptInt(ours, unix.SOL_SOCKET, name)
		if err1 == nil && err2 == nil && v != cur {
			_ = unix.SetsockoptInt(ours, unix.SOL_SOCKET, name, v/2)
		}
	}
	for _, name := range []int{unix.SO_RCVTIMEO, unix.SO_SNDTIMEO} {
		if tv, err := unix.GetsockoptTimeval(theirs, unix.SOL_SOCKET, name); err == nil && (tv.Sec != 0 || tv.Usec != 0) {
			_ = unix.SetsockoptTimeval(ours, unix.SOL_SOCKET, name, tv)
		}
	}
	if l, err := unix.GetsockoptLinger(theirs, unix.SOL_SOCKET, unix.SO_LINGER); err == nil && l.Onoff != 0 {
		_ = unix.SetsockoptLinger(ours, unix.SOL_SOCKET, unix.SO_LINGER, l)
	}
}

func slicesConcat(ss ...[]sockopt) []sockopt {
	var out []sockopt
	for _, s := range ss {
		out = append(out, s...)
	}
	return out
}

func toSockaddr(family int, ap netip.AddrPort) unix.Sockaddr {
	if family == unix.AF_INET {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

func fromSockaddr(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

func errnoOf(err error) unix.Errno {
	if e, ok := err.(unix.Errno); ok {
		return e
	}
	return unix.EIO
}

// connectHost connects ours to target for a program whose socket blocks
// (nonblock false): it waits up to the kernel's own connect time for
// loopback, which answers at once. It returns the errno the program's
// connect returns.
func connectHost(fd int, family int, target netip.AddrPort, nonblock bool) unix.Errno {
	err := unix.Connect(fd, toSockaddr(family, target))
	if err == nil {
		return 0
	}
	if err != unix.EINPROGRESS || nonblock {
		return errnoOf(err)
	}
	// Our socket is blocking too (made so for the program); a blocking
	// connect does not return EINPROGRESS. Kept for safety.
	return errnoOf(err)
}

// sendDatagram sends payload from fd to target with the program's send
// flags; it returns the errno the program's call fails with, or 0.
func sendDatagram(fd, family int, payload []byte, flags int, target netip.AddrPort) unix.Errno {
	if err := unix.Sendto(fd, payload, flags|unix.MSG_NOSIGNAL, toSockaddr(family, target)); err != nil {
		return errnoOf(err)
	}
	return 0
}
