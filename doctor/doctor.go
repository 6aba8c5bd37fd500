package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
)

// Status is the verdict of one check.
type Status int

const (
	// OK means the feature works.
	OK Status = iota
	// Warn means unroot runs, but something users commonly need is missing
	// (cgroup delegation, lingering, privileged ports).
	Warn
	// Fail means unroot cannot run (or cannot run with the requested options)
	// until the Fix is applied.
	Fail
)

func (s Status) String() string {
	switch s {
	case OK:
		return "ok"
	case Warn:
		return "warn"
	case Fail:
		return "fail"
	}
	return fmt.Sprintf("status(%d)", int(s))
}

// MarshalText writes "ok", "warn" or "fail", so JSON output is stable.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads what MarshalText writes.
func (s *Status) UnmarshalText(b []byte) error {
	switch string(b) {
	case "ok":
		*s = OK
	case "warn":
		*s = Warn
	case "fail":
		*s = Fail
	default:
		return fmt.Errorf("parse status %q: want ok, warn or fail", b)
	}
	return nil
}

// Result is what one check found.
type Result struct {
	// Name is the check's lower-kebab-case name, e.g. "userns".
	Name   string `json:"name"`
	Status Status `json:"status"`
	// Detail says what was found, in one line.
	Detail string `json:"detail"`
	// Fix is the exact command or file content that repairs a Warn or Fail;
	// empty when there is nothing to do. It may span several lines.
	Fix string `json:"fix,omitempty"`
}

// Check is one host probe. Run must not change the host, must return when ctx
// ends, and must leave no process behind.
type Check interface {
	Name() string
	Run(ctx context.Context) Result
}

// Run runs checks in parallel and returns their results in the order given.
func Run(ctx context.Context, checks ...Check) []Result {
	res := make([]Result, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() {
			r := c.Run(ctx)
			if r.Name == "" {
				r.Name = c.Name()
			}
			res[i] = r
		})
	}
	wg.Wait()
	return res
}

// Blocking reports whether any result is a Fail, i.e. whether unroot cannot
// run on this host as things stand.
func Blocking(results []Result) bool {
	for _, r := range results {
		if r.Status == Fail {
			return true
		}
	}
	return false
}

// Options says whose set-up to check and for what. The zero value checks the
// current user for any network driver.
type Options struct {
	// User is the account whose subordinate ids and lingering are checked.
	// Nil means the current user. Probes that create namespaces always run as
	// the calling process.
	User *user.User
	// Executable is the unroot binary named in the AppArmor profile and in
	// setcap hints. Empty means this process's executable, symlinks resolved
	// (AppArmor attaches profiles to the real path).
	Executable string
	// Net is the network driver the caller means to use: "slirp4netns",
	// "pasta", "netstack", "host", "none", or "" / "auto" for any. A missing
	// helper is a Fail only when it is the one asked for.
	Net string
	// Logger receives debug lines about each probe. Nil discards them.
	Logger *slog.Logger
}

// env is Options resolved once for a set of checks, plus the probes several
// checks share (creating a user namespace answers both "userns" and
// "apparmor"), each run at most once.
type env struct {
	user   *user.User
	uid    int
	gid    int
	exe    string
	net    string
	log    *slog.Logger
	userns func(context.Context) error
	subids func(context.Context) (subIDs, error)
}

func newEnv(opts Options) *env {
	e := &env{net: strings.ToLower(opts.Net), log: opts.Logger}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.user = opts.User
	if e.user == nil {
		if u, err := user.Current(); err == nil {
			e.user = u
		} else {
			uid := os.Getuid()
			e.user = &user.User{Uid: fmt.Sprint(uid), Gid: fmt.Sprint(os.Getgid()), Username: fmt.Sprint(uid)}
		}
	}
	fmt.Sscan(e.user.Uid, &e.uid)
	fmt.Sscan(e.user.Gid, &e.gid)
	e.exe = opts.Executable
	if e.exe == "" {
		if p, err := os.Executable(); err == nil {
			e.exe = p
		}
	}
	if p, err := filepath.EvalSymlinks(e.exe); err == nil {
		e.exe = p
	}
	if e.net == "auto" {
		e.net = ""
	}
	var (
		usernsOnce sync.Once
		usernsErr  error
		subOnce    sync.Once
		subVal     subIDs
		subErr     error
	)
	e.userns = func(ctx context.Context) error {
		usernsOnce.Do(func() { usernsErr = tryUserNS(ctx) })
		return usernsErr
	}
	e.subids = func(ctx context.Context) (subIDs, error) {
		subOnce.Do(func() { subVal, subErr = lookupSubIDs(ctx, e.user.Username, uint32(e.uid)) })
		return subVal, subErr
	}
	return e
}

// Default returns every check, in the order `unroot doctor` prints them.
func Default(opts Options) []Check {
	e := newEnv(opts)
	return e.checks(allChecks...)
}

// Names of the checks Default returns.
const (
	CheckUserNS     = "userns"
	CheckAppArmor   = "apparmor"
	CheckSubID      = "subid"
	CheckIDMap      = "newuidmap"
	CheckTun        = "tun"
	CheckNetDrivers = "net-drivers"
	CheckIPTables   = "iptables"
	CheckCgroup     = "cgroup"
	CheckRuntimeDir = "xdg-runtime-dir"
	CheckLinger     = "linger"
	CheckPorts      = "privileged-ports"
	CheckPing       = "ping"
)

var allChecks = []string{
	CheckUserNS, CheckAppArmor, CheckSubID, CheckIDMap, CheckTun, CheckNetDrivers,
	CheckIPTables, CheckCgroup, CheckRuntimeDir, CheckLinger, CheckPorts, CheckPing,
	CheckBypass,
}

// Select returns the named checks from Default, in the order given; unknown
// names are skipped.
func Select(opts Options, names ...string) []Check {
	return newEnv(opts).checks(names...)
}

func (e *env) checks(names ...string) []Check {
	var out []Check
	for _, n := range names {
		if f, ok := checkFuncs[n]; ok {
			out = append(out, &check{name: n, env: e, run: f})
		}
	}
	return out
}

var checkFuncs = map[string]func(context.Context, *env) Result{
	CheckBypass:     checkBypass,
	CheckUserNS:     checkUserNS,
	CheckAppArmor:   checkAppArmor,
	CheckSubID:      checkSubID,
	CheckIDMap:      checkIDMap,
	CheckTun:        checkTun,
	CheckNetDrivers: checkNetDrivers,
	CheckIPTables:   checkIPTables,
	CheckCgroup:     checkCgroup,
	CheckRuntimeDir: checkRuntimeDir,
	CheckLinger:     checkLinger,
	CheckPorts:      checkPorts,
	CheckPing:       checkPing,
}

type check struct {
	name string
	env  *env
	run  func(context.Context, *env) Result
}

func (c *check) Name() string { return c.name }

func (c *check) Run(ctx context.Context) Result {
	r := c.run(ctx, c.env)
	r.Name = c.name
	c.env.log.Debug("doctor check", "name", r.Name, "status", r.Status.String(), "detail", r.Detail)
	return r
}

// WriteText prints one line per result: status, name, detail, then the fix
// indented under it.
func WriteText(w interface{ Write([]byte) (int, error) }, results []Result) error {
	var b strings.Builder
	width := 0
	for _, r := range results {
		width = max(width, len(r.Name))
	}
	for _, r := range results {
		st := r.Status.String()
		if r.Status == Fail {
			st = "FAIL"
		}
		fmt.Fprintf(&b, "%-4s  %-*s  %s\n", st, width, r.Name, r.Detail)
		if r.Fix != "" && r.Status != OK {
			lines := strings.Split(strings.TrimRight(r.Fix, "\n"), "\n")
			for i, l := range lines {
				prefix := "      fix: "
				if i > 0 {
					prefix = "           "
				}
				b.WriteString(prefix + l + "\n")
			}
		}
	}
	_, err := w.Write([]byte(b.String()))
	return err
}

// WriteJSON prints the results as one indented JSON array.
func WriteJSON(w interface{ Write([]byte) (int, error) }, results []Result) error {
	b, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
