package bypass

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The prober brings the relay back only when the program's host socket is
// gone: not while a server holds it bound and has not listened yet (it
// would then fail its listen with EADDRINUSE), nor while it listens; but
// yes once it is closed, even with its connections in TIME_WAIT.
func TestPortFree(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { unix.Close(fd) }()
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) // as Go and most servers do
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := sa.(*unix.SockaddrInet4).Port
	b := &boundPort{host: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)), family: unix.AF_INET}
	if portFree("tcp", b) {
		t.Error("a socket bound and not yet listening counts as free: the relay would take its port")
	}
	if err := unix.Listen(fd, 8); err != nil {
		t.Fatal(err)
	}
	if portFree("tcp", b) {
		t.Error("a listening socket counts as free")
	}
	// A connection the server closes first leaves TIME_WAIT on its side.
	c, err := net.Dial("tcp4", b.host.String())
	if err != nil {
		t.Fatal(err)
	}
	nfd, _, err := unix.Accept(fd)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(nfd)
	unix.Close(fd)
	fd = -1
	buf := make([]byte, 1)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	c.Read(buf) // EOF: the server's FIN has come
	c.Close()
	if !portFree("tcp", b) {
		t.Error("a closed server with a connection in TIME_WAIT counts as not free")
	}
}

func TestPortFreeUDP(t *testing.T) {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &boundPort{host: c.LocalAddr().(*net.UDPAddr).AddrPort(), family: unix.AF_INET}
	if portFree("udp", b) {
		t.Error("a bound UDP socket counts as free")
	}
	c.Close()
	if !portFree("udp", b) {
		t.Error("a closed UDP socket's port counts as not free")
	}
}
