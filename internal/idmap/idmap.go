// Package idmap turns the user's subordinate id ranges into the user
// namespace's uid_map and gid_map, written by newuidmap/newgidmap (setuid
// helpers from the uidmap package) or, where no helper is needed, directly.
//
// Layout, as RootlessKit writes it: the caller's own id becomes 0 inside,
// then the subordinate ranges follow from 1 upward. Real root maps every id
// straight through.
package idmap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/unroot/unroot/internal/operr"
	"github.com/unroot/unroot/internal/procfs"
)

// Source selects where subordinate ranges come from.
type Source string

const (
	// SourceAuto tries getsubids (NSS, e.g. sssd or LDAP) and falls back to the files.
	SourceAuto Source = "auto"
	// SourceDynamic runs getsubids only.
	SourceDynamic Source = "dynamic"
	// SourceStatic reads /etc/subuid and /etc/subgid only.
	SourceStatic Source = "static"
)

// ParseSource validates a --subid-source value; "" means auto.
func ParseSource(s string) (Source, error) {
	switch Source(s) {
	case "", SourceAuto:
		return SourceAuto, nil
	case SourceDynamic, SourceStatic:
		return Source(s), nil
	}
	return "", fmt.Errorf("parse subid source %q: must be auto, dynamic or static", s)
}

// Identity is whose ids are mapped.
type Identity struct {
	Name string // user name, may be empty when passwd has no entry
	UID  uint32
	GID  uint32
}

// Plan is the complete mapping for one user namespace.
type Plan struct {
	Self      Identity
	UIDRanges []procfs.Range
	GIDRanges []procfs.Range
	// Warning is set when the plan is degraded (no subordinate ranges) and
	// says what will not work and how to fix it.
	Warning string
}

// Files that hold the static ranges; variables so tests can point elsewhere.
var (
	SubUIDFile = "/etc/subuid"
	SubGIDFile = "/etc/subgid"
)

// Lookup builds the plan for self from the chosen source. Its errors are
// operr.IDMap.
func Lookup(ctx context.Context, src Source, self Identity) (Plan, error) {
	p, err := lookup(ctx, src, self)
	return p, operr.Wrap(operr.IDMap, "subordinate ids", err)
}

func lookup(ctx context.Context, src Source, self Identity) (Plan, error) {
	p := Plan{Self: self}
	if self.UID == 0 {
		return p, nil
	}
	var err error
	switch src {
	case SourceDynamic:
		p.UIDRanges, p.GIDRanges, err = dynamic(ctx, self)
		if err != nil {
			return p, err
		}
	case SourceStatic:
		p.UIDRanges, p.GIDRanges, err = static(self)
		if err != nil {
			return p, err
		}
	default:
		// getsubids asks NSS only when nsswitch.conf names a subid
		// service; otherwise it reads the same files we do, at the cost
		// of two processes on every start.
		if !nssHasSubid() {
			p.UIDRanges, p.GIDRanges, err = static(self)
			if err != nil {
				return p, err
			}
			break
		}
		p.UIDRanges, p.GIDRanges, err = dynamic(ctx, self)
		if err != nil || len(p.UIDRanges) == 0 || len(p.GIDRanges) == 0 {
			p.UIDRanges, p.GIDRanges, err = static(self)
			if err != nil {
				return p, err
			}
		}
	}
	if len(p.UIDRanges) == 0 || len(p.GIDRanges) == 0 {
		who := self.Name
		if who == "" {
			who = strconv.FormatUint(uint64(self.UID), 10)
		}
		p.UIDRanges, p.GIDRanges = nil, nil
		start := freeStart()
		r := fmt.Sprintf("%d-%d", start, start+65535)
		p.Warning = fmt.Sprintf("no subordinate ids for %s in %s and %s: only uid/gid 0 is mapped inside, so chown to other ids, apt and most images will fail; add ranges with `sudo usermod --add-subuids %s --add-subgids %s %s`",
			who, SubUIDFile, SubGIDFile, r, r, who)
	}
	return p, nil
}

// NSSwitchFile is read to decide whether auto needs getsubids.
var NSSwitchFile = "/etc/nsswitch.conf"

func nssHasSubid() bool {
	b, err := os.ReadFile(NSSwitchFile)
	if err != nil {
		return false
	}
	return HasSubidService(string(b))
}

// HasSubidService reports whether nsswitch.conf content routes subordinate
// ids to a service other than the files.
func HasSubidService(conf string) bool {
	for _, line := range strings.Split(conf, "\n") {
		line, _, _ = strings.Cut(line, "#")
		key, val, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(key) != "subid" {
			continue
		}
		for _, svc := range strings.Fields(val) {
			if svc != "files" && !strings.HasPrefix(svc, "[") {
				return true
			}
		}
	}
	return false
}

func static(self Identity) (uids, gids []procfs.Range, err error) {
	uids, err = readSubID(SubUIDFile, self.Name, self.UID)
	if err != nil {
		return nil, nil, err
	}
	gids, err = readSubID(SubGIDFile, self.Name, self.UID)
	return uids, gids, err
}

// freeStart is the start of a 65536-id range that no entry of SubUIDFile or
// SubGIDFile holds, for the usermod hint (what `unroot doctor` suggests).
func freeStart() uint64 {
	var used [][]procfs.Range
	for _, path := range []string{SubUIDFile, SubGIDFile} {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		entries, _ := procfs.ParseSubIDFile(f)
		f.Close()
		var rs []procfs.Range
		for _, e := range entries {
			rs = append(rs, e.Range)
		}
		used = append(used, rs)
	}
	return procfs.FreeSubIDStart(used...)
}

func readSubID(path, name string, id uint32) ([]procfs.Range, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	return procfs.ParseSubID(f, name, id)
}

func dynamic(ctx context.Context, self Identity) (uids, gids []procfs.Range, err error) {
	bin := os.Getenv("GETSUBIDS")
	if bin == "" {
		bin = "getsubids"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, nil, fmt.Errorf("find getsubids for --subid-source=dynamic: %w (install the uidmap package, or use --subid-source=static)", err)
	}
	who := self.Name
	if who == "" {
		who = strconv.FormatUint(uint64(self.UID), 10)
	}
	run := func(args ...string) ([]procfs.Range, error) {
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, path, args...)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("run getsubids %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return procfs.ParseGetsubids(string(out))
	}
	var g errgroup.Group
	g.Go(func() (e error) { uids, e = run(who); return })
	g.Go(func() (e error) { gids, e = run("-g", who); return })
	return uids, gids, g.Wait()
}

// Args returns the mapping triples for newuidmap/newgidmap (after the PID):
// self→0, then each range from 1 upward.
func Args(self uint32, ranges []procfs.Range) []string {
	args := []string{"0", strconv.FormatUint(uint64(self), 10), "1"}
	next := uint64(1)
	for _, r := range ranges {
		args = append(args, strconv.FormatUint(next, 10), strconv.FormatUint(uint64(r.Start), 10), strconv.FormatUint(uint64(r.Count), 10))
		next += uint64(r.Count)
	}
	return args
}

// NeedsHelpers reports whether Apply will run newuidmap/newgidmap.
func (p Plan) NeedsHelpers() bool {
	return p.Self.UID != 0 && len(p.UIDRanges) > 0
}

// Apply writes the maps of the user namespace of process pid. Its errors
// are operr.IDMap.
func (p Plan) Apply(ctx context.Context, pid int) error {
	return operr.Wrap(operr.IDMap, "id maps", p.apply(ctx, pid))
}

func (p Plan) apply(ctx context.Context, pid int) error {
	procDir := "/proc/" + strconv.Itoa(pid)
	switch {
	case p.Self.UID == 0:
		// Real root may write any map; all ids straight through keeps
		// root-owned files root-owned inside.
		if err := os.WriteFile(procDir+"/uid_map", []byte("0 0 4294967295\n"), 0); err != nil {
			return fmt.Errorf("write uid_map of pid %d: %w", pid, err)
		}
		if err := os.WriteFile(procDir+"/gid_map", []byte("0 0 4294967295\n"), 0); err != nil {
			return fmt.Errorf("write gid_map of pid %d: %w", pid, err)
		}
		return nil
	case !p.NeedsHelpers():
		// An unprivileged process may map only itself, and only after
		// giving up setgroups for the namespace.
		if err := os.WriteFile(procDir+"/uid_map", fmt.Appendf(nil, "0 %d 1\n", p.Self.UID), 0); err != nil {
			return fmt.Errorf("write uid_map of pid %d: %w", pid, err)
		}
		if err := os.WriteFile(procDir+"/setgroups", []byte("deny"), 0); err != nil {
			return fmt.Errorf("write setgroups of pid %d: %w", pid, err)
		}
		if err := os.WriteFile(procDir+"/gid_map", fmt.Appendf(nil, "0 %d 1\n", p.Self.GID), 0); err != nil {
			return fmt.Errorf("write gid_map of pid %d: %w", pid, err)
		}
		return nil
	}
	var g errgroup.Group
	g.Go(func() error { return runHelper(ctx, "newuidmap", pid, Args(p.Self.UID, p.UIDRanges)) })
	g.Go(func() error { return runHelper(ctx, "newgidmap", pid, Args(p.Self.GID, p.GIDRanges)) })
	return g.Wait()
}

// CheckHelpers reports a missing or unusable newuidmap/newgidmap before
// anything is started.
func (p Plan) CheckHelpers() error {
	return operr.Wrap(operr.IDMap, "newuidmap", p.checkHelpers())
}

func (p Plan) checkHelpers() error {
	if !p.NeedsHelpers() {
		return nil
	}
	for _, name := range []string{"newuidmap", "newgidmap"} {
		if _, err := exec.LookPath(name); err != nil {
			return fmt.Errorf("find %s: not in PATH; install it (Debian/Ubuntu: apt-get install uidmap, Fedora: dnf install shadow-utils)", name)
		}
	}
	return nil
}

func runHelper(ctx context.Context, name string, pid int, triples []string) error {
	args := append([]string{strconv.Itoa(pid)}, triples...)
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		hint := "check that " + name + " is setuid root or has cap_setuid/cap_setgid (ls -l $(command -v " + name + ")) and that the ranges in /etc/subuid and /etc/subgid do not overlap other users'"
		if strings.Contains(msg, "not allowed") {
			hint = "the range is not assigned to you where " + name + " looks (/etc/subuid, /etc/subgid, or NSS with a subid: line in /etc/nsswitch.conf); list yours with `getsubids $USER` and `getsubids -g $USER`, and pass --subid-source=static if getsubids and the files disagree"
		}
		if msg != "" {
			return fmt.Errorf("run %s %s: %w: %s; %s", name, strings.Join(args, " "), err, msg, hint)
		}
		return fmt.Errorf("run %s %s: %w; %s", name, strings.Join(args, " "), err, hint)
	}
	return nil
}
