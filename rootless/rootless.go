package rootless

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/unroot/unroot"
	"github.com/unroot/unroot/api/client"
	"github.com/unroot/unroot/internal/childinit"
	"github.com/unroot/unroot/network"
	"github.com/unroot/unroot/network/slirp4netns"
	"github.com/unroot/unroot/port/builtin"
	portslirp "github.com/unroot/unroot/port/slirp4netns"
)

// Sock is the API socket's path (STATE/api.sock) once Run has returned in
// the daemon phase, and "" in any other process. It is set for code that,
// like k3s's service-port controller, reads a package variable.
var Sock string

// current is the daemon phase's Daemon once Run has returned it.
var current *Daemon

// Profile describes how one daemon makes itself rootless. The zero value
// of every field but Prefix is usable; K3s returns k3s's profile.
type Profile struct {
	// Prefix names the environment variables: knobs are read from
	// <Prefix>_ROOTLESS_* and the daemon phase is marked with
	// _<Prefix>_ROOTLESS_SOCK. Required, e.g. "K3S".
	Prefix string
	// Name is the daemon's name in messages; "" means Prefix in lower case.
	Name string
	// Defaults are the settings before the knobs apply. A zero CIDR means
	// 10.0.2.0/24; an empty PortDriver means builtin.
	Defaults Settings
	// Sysctls must have these values where the kernel has them.
	Sysctls []Sysctl
	// EvacuateCgroup2 names the cgroup v2 group the launcher moves its
	// processes into when the caller's own group is writable, so that
	// controllers can be delegated to the namespace; "" never evacuates.
	EvacuateCgroup2 string
	// Mount runs in the daemon phase, inside the namespaces as their root,
	// before Run returns: the place for the daemon's own bind mounts.
	Mount func(Daemon) error
	// Logger receives the parent phase's warnings and the launcher's
	// progress; nil discards them.
	Logger *slog.Logger
}

// K3s returns k3s's profile: K3S_ROOTLESS_* knobs, network 10.41.0.0/16
// with the host's loopback cut off, builtin port driver, copy-up of /etc,
// /var/run, /run and /var/lib, the sysctl checks of k3s (including
// net.ipv4.ip_forward, which k3s checks only because of a k3s bug; drop it
// from Sysctls when that does not apply) and evacuation into k3s_evac.
func K3s() Profile {
	return Profile{
		Prefix: "K3S",
		Name:   "k3s",
		Defaults: Settings{
			CIDR:                netip.MustParsePrefix("10.41.0.0/16"),
			PortDriver:          PortDriverBuiltin,
			DisableHostLoopback: true,
			CopyUp:              []string{"/etc", "/var/run", "/run", "/var/lib"},
		},
		Sysctls: []Sysctl{
			{Key: "kernel.unprivileged_userns_clone", Value: "1"},
			{Key: "net.ipv4.ip_forward", Value: "1"},
		},
		EvacuateCgroup2: "k3s_evac",
	}
}

// Daemon is what the daemon phase learns.
type Daemon struct {
	// Sock is STATE/api.sock, where ports are published (also in Sock).
	Sock string
	// StateDir is the launcher's state directory (ROOTLESSKIT_STATE_DIR).
	StateDir string
}

// Client returns an API client for Sock.
func (d Daemon) Client() (*client.Client, error) { return client.New(d.Sock) }

// DaemonMarker is the variable that marks the daemon phase and carries the
// API socket's path, e.g. "_K3S_ROOTLESS_SOCK".
func (p Profile) DaemonMarker() string { return "_" + p.Prefix + "_ROOTLESS_SOCK" }

// markers are every variable that tells phases apart: ours, the names k3s
// itself uses (a daemon switching from k3s's package must not see them
// either), and the launcher's own.
func (p Profile) markers() []string {
	return []string{
		p.DaemonMarker(),
		"_" + p.Prefix + "_ROOTLESS_FD",
		"_" + p.Prefix + "_ROOTLESS_EVACUATE_CGROUP2",
		childinit.EnvConfig,
		childinit.EnvActivation,
	}
}

func (p Profile) name() string {
	if p.Name != "" {
		return p.Name
	}
	return strings.ToLower(p.Prefix)
}

func (p Profile) log() *slog.Logger {
	if p.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Logger
}

// Run makes the calling program rootless. Call it at the top of main,
// before goroutines start: the program runs three times, as three phases.
//
// In the parent phase (the user starts the program) Run checks the host,
// builds a Launcher from the profile and its knobs, and runs this same
// executable with the same arguments inside new namespaces; it then
// exits the process with the daemon's exit status and does not return,
// unless the start fails, which it returns as an error with nothing left
// behind. In the child phase (the launcher's namespace init) Run does not
// return either. In the daemon phase Run removes the phase markers from
// the environment, runs Mount and returns; the daemon then carries on as
// root of its namespaces, with ROOTLESSKIT_STATE_DIR and the other
// RootlessKit variables set so rootlessctl and nerdctl find it.
//
// stateDir is locked, wiped of stale entries and removed at exit; ""
// makes a private temporary one. A second call in the daemon phase (k3s's
// server and agent both call in) returns the same Daemon again instead of
// nesting another set of namespaces.
func (p Profile) Run(stateDir string) (Daemon, error) {
	unroot.Init()
	if current != nil {
		return *current, nil
	}
	if sock, ok := os.LookupEnv(p.DaemonMarker()); ok && p.Prefix != "" {
		return p.daemon(sock)
	}
	l, err := p.Launcher(stateDir)
	if err != nil {
		return Daemon{}, err
	}
	code, err := p.runParent(l)
	if err != nil {
		return Daemon{}, err
	}
	os.Exit(code)
	return Daemon{}, nil // not reached
}

func (p Profile) daemon(sock string) (Daemon, error) {
	for _, m := range p.markers() {
		os.Unsetenv(m)
	}
	d := Daemon{Sock: sock, StateDir: os.Getenv("ROOTLESSKIT_STATE_DIR")}
	// The launcher starts the daemon as soon as the network is up and
	// serves the API only after the port driver is ready, so a daemon
	// publishing ports at once would race it; Run returns when it answers.
	if err := waitSocket(sock, apiWait); err != nil {
		return d, fmt.Errorf("rootless %s: %w", p.name(), err)
	}
	if p.Mount != nil {
		if err := p.Mount(d); err != nil {
			return d, fmt.Errorf("rootless %s: mount: %w", p.name(), err)
		}
	}
	Sock = sock
	current = &d
	return d, nil
}

// apiWait bounds the wait for the API socket; the launcher's slowest step
// before it (a port driver talking to slirp4netns) takes milliseconds.
const apiWait = 30 * time.Second

func waitSocket(path string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("API socket %s did not answer within %v: %w (did the launcher fail? see its messages above)", path, limit, err)
		}
		time.Sleep(delay)
	}
}

func (p Profile) runParent(l *unroot.Launcher) (int, error) {
	ctx := context.Background()
	if err := l.Start(ctx); err != nil {
		return 1, fmt.Errorf("start rootless %s: %w", p.name(), err)
	}
	code, werr := l.Wait()
	if werr != nil {
		p.log().Debug(werr.Error())
	}
	if err := l.Close(); err != nil {
		p.log().Warn(err.Error())
	}
	return code, nil
}

// Launcher returns the launcher the parent phase runs, configured from the
// profile and its knobs, after checking the host: sysctls, cgroup v2 and
// the slirp4netns helper. Warnings go to Logger. Most callers use Run;
// this is for those that start, wait and close it themselves.
func (p Profile) Launcher(stateDir string) (*unroot.Launcher, error) {
	if p.Prefix == "" {
		return nil, errors.New("rootless profile: Prefix is empty: set it, e.g. to \"K3S\" for K3S_ROOTLESS_* knobs")
	}
	log := p.log()
	if err := CheckSysctls(p.Sysctls, ReadSysctl); err != nil {
		return nil, err
	}
	s, warnings, err := ParseKnobs(p.Prefix, os.Getenv, p.Defaults)
	for _, w := range warnings {
		log.Warn(w)
	}
	if err != nil {
		return nil, err
	}
	if s.PortDriver == "" {
		s.PortDriver = PortDriverBuiltin
	}
	if _, err := exec.LookPath("slirp4netns"); err != nil {
		return nil, fmt.Errorf("rootless %s: slirp4netns not found in PATH: install it (apt-get install slirp4netns) or add its directory to PATH", p.name())
	}
	l := &unroot.Launcher{
		PIDNS:    true,
		CgroupNS: true,
		UTSNS:    true,
		IPCNS:    true,
		Reaper:   unroot.ReaperOn,
		CopyUp:   s.CopyUp,
		Logger:   log,
	}
	if s.Bypass != "" && s.Bypass != "false" {
		mode, err := unroot.ParseBypassMode(s.Bypass)
		if err != nil {
			return nil, err
		}
		l.Bypass = unroot.Bypass{Mode: mode, HostLoopback: !s.DisableHostLoopback}
	}
	if p.EvacuateCgroup2 != "" {
		evac, warn := planCgroup(hostCgroup(), p.EvacuateCgroup2, p.name())
		if warn != "" {
			log.Warn(warn)
		}
		l.EvacuateCgroup2 = evac
	}
	cfg := network.Config{
		MTU:                 s.MTU,
		CIDR:                s.CIDR,
		IfName:              "tap0",
		DisableHostLoopback: s.DisableHostLoopback,
		IPv6:                s.IPv6,
		Logger:              log.With("component", "network"),
	}
	var so slirp4netns.Options
	if s.PortDriver == PortDriverSlirp4netns {
		so.APISocket = true
		l.Ports = portslirp.New
	} else {
		l.Ports = builtin.NewFactory(builtin.DefaultOptions)
	}
	if l.Network, err = slirp4netns.New(cfg, so); err != nil {
		return nil, fmt.Errorf("rootless %s: %w", p.name(), err)
	}
	if stateDir == "" {
		if stateDir, err = os.MkdirTemp("", p.name()+"-rootless"); err != nil {
			l.Network.Close()
			return nil, fmt.Errorf("create state directory: %w (set TMPDIR to a writable directory, or pass a state directory)", err)
		}
	}
	if stateDir, err = filepath.Abs(stateDir); err != nil {
		l.Network.Close()
		return nil, fmt.Errorf("resolve state directory: %w", err)
	}
	l.StateDir = stateDir
	l.Command = append([]string{selfPath()}, os.Args[1:]...)
	l.Env = []string{p.DaemonMarker() + "=" + filepath.Join(stateDir, "api.sock")}
	l.ChildErrorPrefix = p.name() + ": "
	if err := l.Validate(); err != nil {
		l.Network.Close()
		return nil, fmt.Errorf("rootless %s: %w", p.name(), err)
	}
	return l, nil
}

// selfPath is how the namespace init finds this executable again: by the
// name it was started as when that resolves to the same file (so programs
// that look at argv[0] see it unchanged), otherwise through /proc.
func selfPath() string {
	if len(os.Args) == 0 || os.Args[0] == "" {
		return "/proc/self/exe"
	}
	p, err := exec.LookPath(os.Args[0])
	if err != nil {
		return "/proc/self/exe"
	}
	a, err1 := os.Stat(p)
	b, err2 := os.Stat("/proc/self/exe")
	if err1 != nil || err2 != nil || !os.SameFile(a, b) {
		return "/proc/self/exe"
	}
	if !strings.Contains(os.Args[0], "/") {
		return os.Args[0] // found in PATH, inside as well
	}
	// A relative path would depend on the working directory inside.
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return "/proc/self/exe"
}

// Rootless is k3s's one call with k3s's signature, for a daemon switching
// from k3s's pkg/rootless: it runs K3s() with the state in
// dataDir/rootless and warnings on slog.Default().
func Rootless(dataDir string, enableIPv6 bool) error {
	p := K3s()
	p.Defaults.IPv6 = enableIPv6
	p.Logger = slog.Default()
	_, err := p.Run(filepath.Join(dataDir, "rootless"))
	return err
}
