package builtin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/unroot/unroot/internal/operr"
	"github.com/unroot/unroot/internal/sys"
	"github.com/unroot/unroot/port"
)

// tcpListener is a listening socket held as a raw non-blocking descriptor:
// the relay engine's loop accepts on it (see serveTCP), and a copy in the
// runtime's poller would wake that poller for every connection too.
type tcpListener struct {
	fd   int
	addr net.Addr
}

func listenTCP(s port.Spec) (*tcpListener, error) {
	network, addr := port.ListenAddr(s)
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = sys.SetListenerOptions(int(fd)) })
		return errors.Join(err, serr)
	}}
	// Go listens with MPTCP by default where the kernel has it; a plain TCP
	// client then costs MPTCP's fallback on every accept, and the relay
	// splices plain TCP.
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), network, addr)
	if err != nil {
		return nil, listenError(s, err)
	}
	defer ln.Close()
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		return nil, listenError(s, err)
	}
	// The copy shares the socket and its O_NONBLOCK; closing ln leaves it
	// listening.
	fd := -1
	cerr := rc.Control(func(lfd uintptr) { fd, err = sys.DupCloexec(int(lfd)) })
	if err = errors.Join(cerr, err); err != nil {
		return nil, listenError(s, err)
	}
	return &tcpListener{fd: fd, addr: ln.Addr()}, nil
}

func listenUDP(s port.Spec) (*net.UDPConn, error) {
	network, addr := port.ListenAddr(s)
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		return nil, listenError(s, err)
	}
	// Big buffers (forced past the sysctl caps where permitted: this one
	// socket queues every client's datagrams) and no DF for what it sends
	// back; GRO so a run of datagrams from one client is read at once
	// (serveUDP).
	if rc, err := pc.(*net.UDPConn).SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			sys.SetUDPListener(int(fd), udpSockBuf)
			sys.EnableUDPGRO(int(fd))
		})
	}
	return pc.(*net.UDPConn), nil
}

// listenError turns a listen failure into one line that says what to do,
// typed operr.Listen.
func listenError(s port.Spec, err error) error {
	return operr.Wrap(operr.Listen, s.String(), listenMessage(s, err))
}

func listenMessage(s port.Spec, err error) error {
	// net's own "listen tcp ADDR:" would say again what we say first.
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		err = op.Err
	}
	switch {
	case errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM):
		start := "1024"
		if b, rerr := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); rerr == nil {
			start = strings.TrimSpace(string(b))
		}
		exe, _ := os.Executable()
		if exe == "" {
			exe = "/path/to/unroot"
		}
		return fmt.Errorf("listen %s: %w: ports below %s are privileged; allow them with `sudo sysctl net.ipv4.ip_unprivileged_port_start=%d` (persist it in /etc/sysctl.d), or `sudo setcap cap_net_bind_service=ep %s`, or publish a port >= %s", displaySpec(s), err, start, s.ParentPort, exe, start)
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("listen %s: %w: another process (or another unroot) listens there; stop it or pick another parent port", displaySpec(s), err)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("listen %s: %w: %s is not an address of this host; use one of its addresses or 0.0.0.0", displaySpec(s), err, s.ParentIP)
	}
	return fmt.Errorf("listen %s: %w", displaySpec(s), err)
}

// displaySpec is the listening side as errors show it: "tcp *:8080".
func displaySpec(s port.Spec) string { return s.Proto + " " + s.ParentString() }
