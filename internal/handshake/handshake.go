// Package handshake is the typed, versioned message channel between the
// launcher (parent) and the namespace init (child). Both ends are the same
// binary, so the format is private, but it is versioned anyway: a stale
// binary replaced under a running parent fails with a clear error instead of
// misreading fields.
//
// Messages are single SOCK_SEQPACKET datagrams in internal/wire's encoding, with file
// descriptors attached as SCM_RIGHTS. A datagram is never split or merged,
// so no length framing is needed, and a closed peer reads as io.EOF.
package handshake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/unroot/unroot/internal/operr"
	"github.com/unroot/unroot/internal/wire"
	"github.com/unroot/unroot/network"
)

// Version of the message format.
const Version = 3

// MaxMsg bounds a datagram; the largest message (Network) takes a few
// hundred bytes. Each read allocates this much, in both fresh processes.
const MaxMsg = 8 << 10

// Kind names a message.
type Kind string

// Messages in the order they flow. Parent→child: IDMapped, OpenTap, Network.
// Child→parent: TapCreated (first, only when asked for), NSReady, Tap,
// Started. Either way: Error.
const (
	// TapCreated: the child pre-created the persistent tap of
	// Config.PreTap, or says in Err why it could not.
	TapCreated Kind = "tap-created"
	IDMapped   Kind = "id-mapped"
	NSReady    Kind = "ns-ready"
	OpenTap    Kind = "open-tap"
	Tap        Kind = "tap"
	Network    Kind = "network"
	Started    Kind = "started"
	// Forwards carries the listening sockets of the reverse forwards,
	// made inside before the command starts (child → parent).
	Forwards Kind = "forwards"
	Error    Kind = "error"
)

// Msg is one handshake message. Only the fields of its Kind are set.
type Msg struct {
	V    int
	Kind Kind
	// Err is the failure, for Error and TapCreated; Op, Subject and Errno
	// type it (see internal/operr).
	Err     string
	Op      operr.Op
	Subject string
	Errno   int
	// TapName and VnetHdr, for OpenTap.
	TapName string
	VnetHdr bool
	// Setup, for Network.
	Setup *network.Setup
	// PID of the command, for Started.
	PID int
}

// Encode is the datagram of m (see internal/wire).
func Encode(m Msg) []byte {
	var e wire.Encoder
	e.Int(m.V)
	e.String(string(m.Kind))
	e.String(m.Err)
	e.String(string(m.Op))
	e.String(m.Subject)
	e.Int(m.Errno)
	e.String(m.TapName)
	e.Bool(m.VnetHdr)
	e.Setup(m.Setup)
	e.Int(m.PID)
	return e.Bytes()
}

// Decode parses and checks one datagram.
func Decode(b []byte) (Msg, error) {
	var m Msg
	d := wire.NewDecoder(b)
	m.V = d.Int()
	if d.Err() == nil && m.V != Version {
		return Msg{}, fmt.Errorf("decode handshake message: version %d, want %d (parent and child binaries differ; do not replace the binary while it runs)", m.V, Version)
	}
	m.Kind = Kind(d.String())
	m.Err = d.String()
	m.Op = operr.Op(d.String())
	m.Subject = d.String()
	m.Errno = d.Int()
	m.TapName = d.String()
	m.VnetHdr = d.Bool()
	m.Setup = d.Setup()
	m.PID = d.Int()
	if err := d.Finish(); err != nil {
		return Msg{}, fmt.Errorf("decode handshake message: %w", err)
	}
	switch m.Kind {
	case TapCreated, IDMapped, NSReady, OpenTap, Tap, Network, Started, Forwards, Error:
	default:
		return Msg{}, fmt.Errorf("decode handshake message: unknown kind %q", m.Kind)
	}
	if m.Kind == Network && m.Setup == nil {
		return Msg{}, errors.New("decode handshake message: network message without setup")
	}
	return m, nil
}

// Conn is one end of a SOCK_SEQPACKET socketpair. Writes are serialized;
// reads must come from one goroutine at a time.
type Conn struct {
	c  *net.UnixConn
	mu sync.Mutex
}

// Pair makes a connected SOCK_SEQPACKET pair: the local end as a Conn, and
// the remote end as a file to hand to the child (close it after the child
// has started, so that the child's death reads as EOF here).
func Pair() (*Conn, *os.File, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("create socketpair: %w", err)
	}
	local := os.NewFile(uintptr(fds[0]), "handshake")
	remote := os.NewFile(uintptr(fds[1]), "handshake-child")
	c, err := FromFile(local)
	local.Close()
	if err != nil {
		remote.Close()
		return nil, nil, err
	}
	return c, remote, nil
}

// FromFile wraps an inherited socketpair end. f may be closed afterwards.
func FromFile(f *os.File) (*Conn, error) {
	nc, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("use handshake socket fd %d: %w", f.Fd(), err)
	}
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		nc.Close()
		return nil, fmt.Errorf("use handshake socket fd %d: not a unix socket", f.Fd())
	}
	return &Conn{c: uc}, nil
}

// Close closes this end.
func (c *Conn) Close() error { return c.c.Close() }

// WriteRaw sends one datagram with optional files.
func (c *Conn) WriteRaw(b []byte, files ...*os.File) error {
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	return c.WriteRawFDs(b, fds...)
}

// WriteRawFDs sends one datagram with optional descriptors, which stay
// open and unchanged here (WriteRaw's f.Fd() would make them blocking).
func (c *Conn) WriteRawFDs(b []byte, fds ...int) error {
	var oob []byte
	if len(fds) > 0 {
		oob = syscall.UnixRights(fds...)
	}
	if len(b) > MaxMsg {
		return fmt.Errorf("handshake message of %d bytes is over the %d-byte limit", len(b), MaxMsg)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, _, err := c.c.WriteMsgUnix(b, oob, nil)
	return err
}

// ReadRaw receives one datagram and the files attached to it. It returns
// io.EOF when the peer has closed, and ctx's error when ctx ends first.
func (c *Conn) ReadRaw(ctx context.Context) ([]byte, []*os.File, error) {
	b, fds, err := c.ReadRawFDs(ctx)
	var files []*os.File
	for _, fd := range fds {
		files = append(files, os.NewFile(uintptr(fd), "scm-rights"))
	}
	return b, files, err
}

// ReadRawFDs is ReadRaw with the descriptors left raw (close-on-exec, owned
// by the caller): wrapping a socket in an *os.File registers it with the
// runtime poller, which a caller running its own epoll loop must avoid.
func (c *Conn) ReadRawFDs(ctx context.Context) ([]byte, []int, error) {
	if done := ctx.Done(); done != nil {
		stop := context.AfterFunc(ctx, func() { c.c.SetReadDeadline(time.Unix(1, 0)) })
		defer func() {
			if !stop() {
				c.c.SetReadDeadline(time.Time{})
			}
		}()
	}
	b := make([]byte, MaxMsg)
	oob := make([]byte, syscall.CmsgSpace(253*4))
	n, oobn, flags, _, err := c.c.ReadMsgUnix(b, oob)
	if err != nil {
		if ctx.Err() == nil {
			return nil, nil, err
		}
		// The deadline ctx set fails the read without looking at the
		// socket, but a message sent before ctx ended still comes first:
		// the init's last report, say, when its exit is what ended ctx.
		var queued bool
		if n, oobn, flags, queued = c.readQueued(b, oob); !queued {
			return nil, nil, ctx.Err()
		}
	}
	fds, ferr := parseRights(oob[:oobn])
	if ferr != nil {
		return nil, nil, ferr
	}
	if flags&(syscall.MSG_TRUNC|syscall.MSG_CTRUNC) != 0 {
		for _, fd := range fds {
			syscall.Close(fd)
		}
		return nil, nil, errors.New("read handshake message: truncated")
	}
	if n == 0 && len(fds) == 0 {
		// A zero-length read on SOCK_SEQPACKET is the peer's close.
		return nil, nil, io.EOF
	}
	return b[:n], fds, nil
}

// readQueued reads a message already queued on the socket, without
// waiting and whatever its deadline, and reports whether there was one.
func (c *Conn) readQueued(b, oob []byte) (n, oobn, flags int, ok bool) {
	rc, err := c.c.SyscallConn()
	if err != nil {
		return 0, 0, 0, false
	}
	rc.Control(func(fd uintptr) {
		var rerr error
		n, oobn, flags, _, rerr = syscall.Recvmsg(int(fd), b, oob, syscall.MSG_DONTWAIT|syscall.MSG_CMSG_CLOEXEC)
		ok = rerr == nil
	})
	return n, oobn, flags, ok
}

// parseRights returns the descriptors in oob. On Linux the net package
// reads with MSG_CMSG_CLOEXEC, so they arrive close-on-exec.
func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	scms, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("parse control message: %w", err)
	}
	var out []int
	for _, scm := range scms {
		fds, err := syscall.ParseUnixRights(&scm)
		if err != nil {
			continue
		}
		out = append(out, fds...)
	}
	return out, nil
}

// Send writes a message, stamping the version.
func (c *Conn) Send(m Msg, files ...*os.File) error {
	m.V = Version
	if err := c.WriteRaw(Encode(m), files...); err != nil {
		return fmt.Errorf("send handshake message %s: %w", m.Kind, err)
	}
	return nil
}

// Recv reads the next message. An Error message from the peer is returned
// as an error.
func (c *Conn) Recv(ctx context.Context) (Msg, []*os.File, error) {
	b, files, err := c.ReadRaw(ctx)
	if err != nil {
		return Msg{}, nil, err
	}
	m, err := Decode(b)
	if err != nil {
		for _, f := range files {
			f.Close()
		}
		return Msg{}, nil, err
	}
	if m.Kind == Error {
		for _, f := range files {
			f.Close()
		}
		return m, nil, operr.FromPeer(m.Err, m.Op, m.Subject, m.Errno)
	}
	return m, files, nil
}

// Expect reads the next message and checks its kind.
func (c *Conn) Expect(ctx context.Context, k Kind) (Msg, []*os.File, error) {
	m, files, err := c.Recv(ctx)
	if err != nil {
		return m, nil, err
	}
	if m.Kind != k {
		for _, f := range files {
			f.Close()
		}
		return m, nil, fmt.Errorf("read handshake: got %s, want %s", m.Kind, k)
	}
	return m, files, nil
}

// PeerError is a failure the other side reported.
type PeerError = operr.PeerError

// ErrorMsg is the Error message that reports err, typed as operr.Fields
// finds it.
func ErrorMsg(err error) Msg {
	op, subject, errno := operr.Fields(err)
	return Msg{Kind: Error, Err: err.Error(), Op: op, Subject: subject, Errno: errno}
}
