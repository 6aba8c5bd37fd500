// Package notify relays sd_notify(3) messages from the command inside the
// namespaces to systemd, so that a Type=notify unit whose main process is
// unroot needs no NotifyAccess=all.
//
// systemd accepts a notification only from the unit's main PID unless told
// otherwise, and it learns the sender from the kernel (SCM_CREDENTIALS). The
// command is a grandchild of unroot and sees other pids in its namespace, so
// its own READY=1 would be dropped. The Relay owns a datagram socket in the
// state directory (a path reachable from inside the mount namespace), hands
// its path to the command as NOTIFY_SOCKET, and re-sends every message it
// receives from unroot itself. MAINPID= (meaningless across pid namespaces)
// and the fd-store messages (which carry descriptors) are not forwarded.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Mode says who decides that the service is ready.
type Mode string

const (
	// ModeNotify forwards READY=1 when the command sends it (the command
	// speaks sd_notify, as dockerd and containerd do).
	ModeNotify Mode = "notify"
	// ModePorts has unroot send READY=1 itself once namespaces, network and
	// published ports are up; READY=1 from the command is dropped.
	ModePorts Mode = "ports"
)

// ParseMode checks a --ready value; "" means ModeNotify.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", ModeNotify:
		return ModeNotify, nil
	case ModePorts:
		return ModePorts, nil
	}
	return "", fmt.Errorf("parse --ready %q: want notify (the command sends READY=1) or ports (unroot sends it once ports are published)", s)
}

// Upstream returns systemd's notify socket from the environment, or "" when
// unroot does not run under a Type=notify unit.
func Upstream() string { return os.Getenv("NOTIFY_SOCKET") }

// Config configures a Relay.
type Config struct {
	// Path is where the relay socket is created, normally STATE/notify.sock.
	// Required; must be shorter than 108 bytes (a unix socket address).
	Path string
	// Upstream is systemd's socket. Empty means $NOTIFY_SOCKET; a leading
	// '@' names an abstract socket.
	Upstream string
	// Mode is ModeNotify when zero.
	Mode Mode
	// Logger receives one debug line per relayed message. Nil discards.
	Logger *slog.Logger
}

// Relay forwards notifications. Start it before the command starts, give the
// command CommandEnv, and Close it after the command has exited.
type Relay struct {
	cfg       Config
	log       *slog.Logger
	conn      *net.UnixConn
	up        *net.UnixAddr
	wg        sync.WaitGroup
	closeOne  sync.Once
	done      chan struct{}
	mu        sync.Mutex
	readySent bool
}

// New validates cfg. It creates nothing until Start.
func New(cfg Config) (*Relay, error) {
	if cfg.Upstream == "" {
		cfg.Upstream = Upstream()
	}
	if cfg.Upstream == "" {
		return nil, errors.New("notify relay: NOTIFY_SOCKET is not set: start unroot from a Type=notify systemd unit, or don't create a relay")
	}
	if cfg.Path == "" {
		return nil, errors.New("notify relay: no socket path: pass STATE/notify.sock")
	}
	if len(cfg.Path) >= 108 {
		return nil, fmt.Errorf("notify relay %s: path is %d bytes, a unix socket allows 107: use a shorter --state-dir", cfg.Path, len(cfg.Path))
	}
	if cfg.Mode == "" {
		cfg.Mode = ModeNotify
	}
	if _, err := ParseMode(string(cfg.Mode)); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Relay{cfg: cfg, log: log.With("component", "notify"), done: make(chan struct{}),
		up: &net.UnixAddr{Name: cfg.Upstream, Net: "unixgram"}}, nil
}

// Path is the socket the command must send to.
func (r *Relay) Path() string { return r.cfg.Path }

// Start creates the relay socket (mode 0600: the command runs as this user's
// uid, mapped to root inside) and relays until ctx ends or Close.
func (r *Relay) Start(ctx context.Context) error {
	_ = os.Remove(r.cfg.Path) // a stale socket from a killed run
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: r.cfg.Path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify relay %s: %w", r.cfg.Path, err)
	}
	if err := os.Chmod(r.cfg.Path, 0o600); err != nil {
		conn.Close()
		return fmt.Errorf("notify relay %s: %w", r.cfg.Path, err)
	}
	r.conn = conn
	r.wg.Go(func() { r.loop() })
	r.wg.Go(func() {
		select {
		case <-ctx.Done():
			// Unblocks the reader; Close still removes the socket.
			r.conn.SetReadDeadline(time.Unix(1, 0))
		case <-r.done:
		}
	})
	return nil
}

func (r *Relay) loop() {
	buf := make([]byte, 64*1024)
	oob := make([]byte, syscall.CmsgSpace(253*4))
	for {
		n, oobn, _, _, err := r.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		closeRights(oob[:oobn])
		msg := r.filter(string(buf[:n]))
		if msg == "" {
			continue
		}
		if err := r.send(msg); err != nil {
			r.log.Warn("relay notification to systemd", "err", err)
		}
	}
}

// filter drops what must not cross the relay: MAINPID (the command's pid is
// not systemd's), fd-store messages (their fds are not passed on) and, in
// ModePorts, READY=1, which unroot sends itself.
func (r *Relay) filter(msg string) string {
	var keep []string
	for _, line := range strings.Split(msg, "\n") {
		key, _, _ := strings.Cut(line, "=")
		switch {
		case line == "":
			continue
		case key == "MAINPID", strings.HasPrefix(key, "FDSTORE"), key == "FDNAME", key == "FDPOLL", key == "BARRIER":
			r.log.Debug("notification not relayed", "line", line)
			continue
		case line == "READY=1" && r.cfg.Mode == ModePorts:
			r.log.Debug("READY=1 from the command ignored: --ready=ports")
			continue
		}
		keep = append(keep, line)
	}
	return strings.Join(keep, "\n")
}

// Notify sends state (newline-separated KEY=VALUE lines) to systemd as
// unroot's own notification.
func (r *Relay) Notify(state string) error { return r.send(state) }

// Ready tells systemd the service is up; with ModePorts the launcher calls it
// once ports are published. Later calls do nothing.
func (r *Relay) Ready(status string) error {
	r.mu.Lock()
	sent := r.readySent
	r.readySent = true
	r.mu.Unlock()
	if sent {
		return nil
	}
	msg := "READY=1"
	if status != "" {
		msg += "\nSTATUS=" + status
	}
	return r.send(msg)
}

func (r *Relay) send(msg string) error {
	if msg == "READY=1" || strings.HasPrefix(msg, "READY=1\n") || strings.Contains(msg, "\nREADY=1") {
		r.mu.Lock()
		r.readySent = true
		r.mu.Unlock()
	}
	c, err := net.DialUnix("unixgram", nil, r.up)
	if err != nil {
		return fmt.Errorf("notify systemd at %s: %w", r.cfg.Upstream, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		return fmt.Errorf("notify systemd at %s: %w", r.cfg.Upstream, err)
	}
	r.log.Debug("notified systemd", "msg", msg)
	return nil
}

// Close stops relaying, waits for the relay goroutines and removes the
// socket. It is safe to call more than once.
func (r *Relay) Close() error {
	var err error
	r.closeOne.Do(func() {
		close(r.done)
		if r.conn != nil {
			err = r.conn.Close()
			r.wg.Wait()
			if rmErr := os.Remove(r.cfg.Path); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) && err == nil {
				err = rmErr
			}
		}
	})
	return err
}

// CommandEnv returns env for the command: NOTIFY_SOCKET points at the relay
// and WATCHDOG_PID (unroot's pid, which would make sd_watchdog_enabled in the
// command say no) is dropped.
func (r *Relay) CommandEnv(env []string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if strings.HasPrefix(kv, "NOTIFY_SOCKET=") || strings.HasPrefix(kv, "WATCHDOG_PID=") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, "NOTIFY_SOCKET="+r.cfg.Path)
}

// Ready sends READY=1 to $NOTIFY_SOCKET directly, for a launcher that runs
// without a Relay. It reports false when NOTIFY_SOCKET is unset.
func Ready() (bool, error) {
	up := Upstream()
	if up == "" {
		return false, nil
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: up, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("notify systemd at %s: %w", up, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("READY=1")); err != nil {
		return false, fmt.Errorf("notify systemd at %s: %w", up, err)
	}
	return true, nil
}

// closeRights closes descriptors a sender attached (FDSTORE=1): they are not
// relayed and must not leak.
func closeRights(oob []byte) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	for _, m := range msgs {
		fds, err := syscall.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}
}
