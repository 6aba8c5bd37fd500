package apiserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"

	"github.com/unroot/unroot/internal/lograte"
	"github.com/unroot/unroot/internal/sys"
)

// Listen creates the API socket at path, replacing a stale one, with mode
// 0600 from its creation, so no other user ever gets to connect. Peers
// whose uid (SO_PEERCRED) is this process's euid or root are served, as
// RootlessKit serves them; processes inside the child's user namespace
// appear as the owner. Any other peer (one that got past the mode) is
// answered 403 with a message that says why. Close removes the socket.
func Listen(path string) (net.Listener, error) {
	return ListenLogged(path, nil)
}

// ListenLogged is Listen with a logger for refused peers (nil discards).
func ListenLogged(path string, log *slog.Logger) (net.Listener, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("create api socket %s: %w", path, err)
	}
	f, err := sys.ListenUnix(path, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create api socket %s: %w", path, err)
	}
	fl, err := net.FileListener(f)
	f.Close()
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("create api socket %s: %w", path, err)
	}
	ln := fl.(*net.UnixListener)
	ln.SetUnlinkOnClose(false)
	return &ownerListener{UnixListener: ln, path: path, uid: os.Geteuid(), log: log}, nil
}

// refusedConn is a connection from a peer that may not use the API; the
// server answers its requests 403 (see NewHTTPServer).
type refusedConn struct {
	net.Conn
	reason string
}

type ownerListener struct {
	*net.UnixListener
	path      string
	uid       int
	log       *slog.Logger
	closeOnce sync.Once
	refused   lograte.Limiter // a client retrying in a loop must not flood the log
}

func (l *ownerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.UnixListener.AcceptUnix()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err == nil && (uid == l.uid || uid == 0) {
			return c, nil
		}
		var reason string
		if err != nil {
			l.refused.Log(context.Background(), l.log, slog.LevelWarn, "refused an api.sock client whose uid could not be read", "err", err)
			reason = fmt.Sprintf("api.sock serves only uid %d (its owner) and root, and could not read this client's uid: %v", l.uid, err)
		} else {
			l.refused.Log(context.Background(), l.log, slog.LevelWarn, "refused an api.sock client that is neither the owner nor root", "peer_uid", uid, "owner_uid", l.uid)
			reason = fmt.Sprintf("api.sock serves only uid %d (its owner) and root, not uid %d: run the client as uid %d or as root", l.uid, uid, l.uid)
		}
		return &refusedConn{Conn: c, reason: reason}, nil
	}
}

func (l *ownerListener) Close() error {
	err := l.UnixListener.Close()
	l.closeOnce.Do(func() { os.Remove(l.path) })
	return err
}

func peerUID(c *net.UnixConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	var (
		uid  uint32
		serr error
	)
	if err := rc.Control(func(fd uintptr) { uid, serr = sys.PeerUID(fd) }); err != nil {
		return -1, err
	}
	if serr != nil {
		return -1, serr
	}
	return int(uid), nil
}
