package builtin

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/unroot/unroot/port"
)

func listenTCP(s port.Spec) (*net.TCPListener, error) {
	network, addr := port.ListenAddr(s)
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, listenError(s, err)
	}
	return ln.(*net.TCPListener), nil
}

func listenUDP(s port.Spec) (*net.UDPConn, error) {
	network, addr := port.ListenAddr(s)
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		return nil, listenError(s, err)
	}
	return pc.(*net.UDPConn), nil
}

// listenError turns a listen failure into one line that says what to do.
func listenError(s port.Spec, err error) error {
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

func displaySpec(s port.Spec) string {
	_, addr := port.ListenAddr(s)
	return s.Proto + " " + addr
}
