// Package statedir owns the launcher's state directory with RootlessKit's
// file names and life cycle: an exclusive lock held for the whole run, stale
// entries from a killed run wiped at start, child_pid written atomically as
// the readiness signal, and the whole directory removed at exit.
package statedir

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// File names inside the directory, as RootlessKit and its clients use them.
const (
	Lock       = "lock"
	ChildPID   = "child_pid"
	APISock    = "api.sock"
	NetNS      = "netns"
	ResolvConf = "resolv.conf"
	Hosts      = "hosts"
)

// Dir is a locked state directory.
type Dir struct {
	path string
	lock *os.File // exclusive flock on lock
	dir  *os.File // shared flock on the directory, so tmpfiles cleaners skip it
}

// Resolve names the state directory without locking it, so a caller can
// hand the path on while Open runs. An empty path makes a private
// $TMPDIR/rootlesskitNNN directory (mode 0700; created is true, and the
// caller removes it if Open fails); otherwise the path is made absolute and
// created with mode 0755 if needed.
func Resolve(path string) (resolved string, created bool, err error) {
	if path == "" {
		path, err = os.MkdirTemp("", "rootlesskit")
		if err != nil {
			return "", false, fmt.Errorf("create state directory: %w (set TMPDIR to a writable directory or pass --state-dir)", err)
		}
		return path, true, nil
	}
	path, err = filepath.Abs(path)
	if err != nil {
		return "", false, fmt.Errorf("resolve state directory %s: %w", path, err)
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return "", false, fmt.Errorf("create state directory %s: %w (choose a --state-dir you can write to)", path, err)
	}
	return path, false, nil
}

// Open resolves (see Resolve) and locks the state directory, then removes
// every entry but the lock, so a directory left behind by a killed run is
// reused.
func Open(path string) (*Dir, error) {
	path, created, err := Resolve(path)
	if err != nil {
		return nil, err
	}
	d, err := open(path)
	if err != nil && created {
		os.Remove(path)
	}
	return d, err
}

func open(path string) (*Dir, error) {
	var err error
	d := &Dir{path: path}
	d.dir, err = os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open state directory %s: %w", path, err)
	}
	if err := syscall.Flock(int(d.dir.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		d.dir.Close()
		return nil, fmt.Errorf("lock state directory %s: %w", path, err)
	}
	lockPath := filepath.Join(path, Lock)
	d.lock, err = os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		d.dir.Close()
		return nil, fmt.Errorf("create %s: %w", lockPath, err)
	}
	if err := syscall.Flock(int(d.lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		d.lock.Close()
		d.dir.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("failed to lock %s, another RootlessKit is running with the same state directory? (stop it, or pass a different --state-dir)", lockPath)
		}
		return nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	if err := d.wipe(); err != nil {
		d.release()
		return nil, err
	}
	return d, nil
}

func (d *Dir) wipe() error {
	ents, err := os.ReadDir(d.path)
	if err != nil {
		return fmt.Errorf("read state directory %s: %w", d.path, err)
	}
	for _, e := range ents {
		if e.Name() == Lock {
			continue
		}
		p := filepath.Join(d.path, e.Name())
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("remove stale %s: %w (remove it by hand)", p, err)
		}
	}
	return nil
}

// Path is the absolute directory path.
func (d *Dir) Path() string { return d.path }

// Join returns the path of a file in the directory.
func (d *Dir) Join(name string) string { return filepath.Join(d.path, name) }

// WriteChildPID publishes the namespace init's PID: written to a temporary
// name and renamed, so pollers never see a partial number. Mode 0444, no
// newline, as RootlessKit writes it.
func (d *Dir) WriteChildPID(pid int) error {
	tmp := d.Join("." + ChildPID + ".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o444)
	if err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	_, werr := f.WriteString(strconv.Itoa(pid))
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	// The umask may have narrowed the mode; readers need 0444.
	if err := os.Chmod(tmp, 0o444); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, d.Join(ChildPID)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("publish %s: %w", d.Join(ChildPID), err)
	}
	return nil
}

// WriteNetFiles writes resolv.conf (the namespace's DNS servers) and hosts
// (the host's /etc/hosts plus the host name on loopback), which the
// namespace init binds over /etc/resolv.conf and /etc/hosts, as RootlessKit
// does. The launcher writes them, not the init, so the init's start-up path
// does not wait on two file creations.
func (d *Dir) WriteNetFiles(dns []netip.Addr) error {
	hosts, _ := os.ReadFile("/etc/hosts")
	host, _ := os.Hostname()
	if err := os.WriteFile(d.Join(ResolvConf), ResolvConfContent(dns), 0o644); err != nil {
		return fmt.Errorf("write resolv.conf: %w", err)
	}
	if err := os.WriteFile(d.Join(Hosts), HostsContent(hosts, host), 0o644); err != nil {
		return fmt.Errorf("write hosts: %w", err)
	}
	return nil
}

// ResolvConfContent is a resolv.conf naming the servers.
func ResolvConfContent(dns []netip.Addr) []byte {
	var b []byte
	for _, a := range dns {
		b = fmt.Appendf(b, "nameserver %s\n", a)
	}
	return b
}

// HostsContent is the host's hosts file with the host name added for both
// loopback addresses.
func HostsContent(hosts []byte, hostname string) []byte {
	out := append([]byte{}, hosts...)
	if hostname != "" {
		out = fmt.Appendf(out, "\n127.0.0.1 %s\n::1 %s\n", hostname, hostname)
	}
	return out
}

// Close removes the whole directory, as RootlessKit does even for an
// explicit --state-dir, and releases the locks.
func (d *Dir) Close() error {
	err := os.RemoveAll(d.path)
	d.release()
	if err != nil {
		return fmt.Errorf("remove state directory %s: %w", d.path, err)
	}
	return nil
}

func (d *Dir) release() {
	d.lock.Close()
	d.dir.Close()
}
