// Package sockpool hands sockets created inside the namespace init's network
// namespace to the parent over a SOCK_SEQPACKET socketpair, in batches, and
// prepares that namespace for source-address-preserving (IP_TRANSPARENT)
// connections on request. The parent (the owner of the user namespace)
// holds every capability over those sockets, so it can bind, set options
// and connect them itself: no per-connection round trip to the child.
package sockpool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"

	"github.com/unroot/unroot/internal/handshake"
	"github.com/unroot/unroot/internal/operr"
	"github.com/unroot/unroot/port"
)

// Batch is how many sockets one request fetches. A larger batch saves
// round trips but must fit in the descriptors left to the launcher: one
// reply's sockets arrive together, and a launcher at a low RLIMIT_NOFILE
// (64 in the flood test) gets none of a 64-socket reply.
const Batch = 16

// maxBatch bounds what one request may ask for (SCM_RIGHTS carries at most 253 fds).
const maxBatch = 64

type request struct {
	Op     string `json:"op"` // "socket" or "transparent"
	Family int    `json:"family,omitempty"`
	Type   int    `json:"type,omitempty"`
	N      int    `json:"n,omitempty"`
	// Connmark asks "transparent" for the connmark rules too, made with
	// Firewall ("" is iptables; see SetupTransparent).
	Connmark bool   `json:"connmark,omitempty"`
	Firewall string `json:"firewall,omitempty"`
}

type reply struct {
	Err string `json:"err,omitempty"`
	// Op, Subject and Errno type Err (see internal/operr).
	Op      operr.Op `json:"op,omitempty"`
	Subject string   `json:"subject,omitempty"`
	Errno   int      `json:"errno,omitempty"`
}

// DecodeRequest parses and checks a request datagram.
func DecodeRequest(b []byte) (request, error) {
	var r request
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("decode socket request: %w", err)
	}
	switch r.Op {
	case "socket":
		if r.Family != syscall.AF_INET && r.Family != syscall.AF_INET6 {
			return r, fmt.Errorf("decode socket request: family %d, want AF_INET or AF_INET6", r.Family)
		}
		if r.Type != syscall.SOCK_STREAM && r.Type != syscall.SOCK_DGRAM {
			return r, fmt.Errorf("decode socket request: type %d, want SOCK_STREAM or SOCK_DGRAM", r.Type)
		}
		if r.N < 1 || r.N > maxBatch {
			return r, fmt.Errorf("decode socket request: count %d, want 1..%d", r.N, maxBatch)
		}
	case "transparent":
	default:
		return r, fmt.Errorf("decode socket request: unknown op %q", r.Op)
	}
	return r, nil
}

// Server answers requests in the child.
type Server struct {
	// InNetNS runs fn on a thread in the target network namespace.
	InNetNS func(fn func() error) error
	// NewSocket creates one socket in the current thread's netns and
	// returns its descriptor.
	NewSocket func(family, sotype int) (int, error)
	// Transparent sets up policy routing, and connmark rules with the
	// firewall named if asked.
	Transparent func(connmark bool, firewall string) error
}

// Serve answers requests until the parent closes its end or ctx ends.
func (s *Server) Serve(ctx context.Context, c *handshake.Conn) error {
	for {
		b, fds, err := c.ReadRawFDs(ctx)
		closeAll(fds)
		if err != nil {
			return err
		}
		req, err := DecodeRequest(b)
		if err != nil {
			if werr := send(c, reply{Err: err.Error()}); werr != nil {
				return werr
			}
			continue
		}
		var out []int
		switch req.Op {
		case "socket":
			err = s.InNetNS(func() error {
				for range req.N {
					fd, err := s.NewSocket(req.Family, req.Type)
					if err != nil {
						return err
					}
					out = append(out, fd)
				}
				return nil
			})
		case "transparent":
			err = s.InNetNS(func() error { return s.Transparent(req.Connmark, req.Firewall) })
		}
		rep := reply{}
		if err != nil {
			rep.Err = err.Error()
			rep.Op, rep.Subject, rep.Errno = operr.Fields(err)
		}
		werr := send(c, rep, out...)
		closeAll(out)
		if werr != nil {
			return werr
		}
	}
}

func send(c *handshake.Conn, r reply, fds ...int) error {
	b, _ := json.Marshal(r)
	return c.WriteRawFDs(b, fds...)
}

func closeAll(fds []int) {
	for _, fd := range fds {
		syscall.Close(fd)
	}
}

// Client is the parent's port.SocketSource.
type Client struct {
	c           *handshake.Conn
	mu          sync.Mutex
	pool        map[[2]int][]int
	transparent bool   // policy routing is set up
	connmark    bool   // and the connmark rules
	firewall    string // they are made with (SetFirewall)
}

var _ port.FirewallChooser = (*Client)(nil)

// SetFirewall names the firewall of the connmark rules (see
// SetupTransparent); call it before EnableTransparent.
func (cl *Client) SetFirewall(name string) {
	cl.mu.Lock()
	cl.firewall = name
	cl.mu.Unlock()
}

var _ port.SocketSource = (*Client)(nil)

// NewClient uses c; Close closes it.
func NewClient(c *handshake.Conn) *Client {
	return &Client{c: c, pool: map[[2]int][]int{}}
}

func (cl *Client) roundTrip(ctx context.Context, req request) ([]int, error) {
	b, _ := json.Marshal(req)
	if err := cl.c.WriteRaw(b); err != nil {
		return nil, fmt.Errorf("request %s from the namespace: %w", req.Op, closed(err))
	}
	rb, fds, err := cl.c.ReadRawFDs(ctx)
	if err != nil {
		return nil, fmt.Errorf("request %s from the namespace: %w", req.Op, closed(err))
	}
	var rep reply
	if err := json.Unmarshal(rb, &rep); err != nil {
		closeAll(fds)
		return nil, fmt.Errorf("request %s from the namespace: %w", req.Op, err)
	}
	if rep.Err != "" {
		closeAll(fds)
		return nil, operr.FromPeer(rep.Err, rep.Op, rep.Subject, rep.Errno)
	}
	return fds, nil
}

// closed marks the errors of a connection whose other end, the namespace
// init, has gone with port.ErrSourceClosed.
func closed(err error) error {
	for _, e := range []error{io.EOF, io.ErrUnexpectedEOF, net.ErrClosed, syscall.ECONNRESET, syscall.EPIPE} {
		if errors.Is(err, e) {
			return fmt.Errorf("%w: %w", port.ErrSourceClosed, err)
		}
	}
	return err
}

// Socket returns a socket made in the namespace, from the pool.
func (cl *Client) Socket(ctx context.Context, family, sotype int) (int, error) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	k := [2]int{family, sotype}
	if len(cl.pool[k]) == 0 {
		fds, err := cl.roundTrip(ctx, request{Op: "socket", Family: family, Type: sotype, N: Batch})
		if err != nil {
			return -1, err
		}
		if len(fds) == 0 {
			return -1, errors.New("request socket from the namespace: reply carried no sockets")
		}
		cl.pool[k] = fds
	}
	p := cl.pool[k]
	fd := p[len(p)-1]
	cl.pool[k] = p[:len(p)-1]
	return fd, nil
}

// EnableTransparent asks the child to set up policy routing, and the
// connmark rules if connmark is set, once each.
func (cl *Client) EnableTransparent(ctx context.Context, connmark bool) error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.connmark || (cl.transparent && !connmark) {
		return nil
	}
	if _, err := cl.roundTrip(ctx, request{Op: "transparent", Connmark: connmark, Firewall: cl.firewall}); err != nil {
		return fmt.Errorf("enable transparent sockets in the namespace: %w", err)
	}
	cl.transparent = true
	cl.connmark = connmark
	return nil
}

// Close drops pooled sockets and the connection.
func (cl *Client) Close() error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for k, p := range cl.pool {
		closeAll(p)
		delete(cl.pool, k)
	}
	return cl.c.Close()
}
