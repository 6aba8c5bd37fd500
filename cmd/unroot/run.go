package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/unroot/unroot"
	"github.com/unroot/unroot/internal/idmap"
)

// errPrinter prints one error line in the personality's format.
type errPrinter func(error)

// launch turns parsed flags into a Launcher, runs the command and returns
// the exit status.
func launch(o *opts, command []string, p personality, printErr errPrinter) int {
	log := newLogger(os.Stderr, o.debug, p)
	log.Debug("cli: flags parsed", "sinceStart", sinceExec())
	if len(command) == 0 {
		printErr(errors.New("no command specified"))
		return 1
	}
	l, err := buildLauncher(o, command, p, log)
	if err != nil {
		printErr(err)
		return 1
	}
	log.Debug("cli: drivers built", "sinceStart", sinceExec())
	ctx := context.Background()
	if err := l.Start(ctx); err != nil {
		printErr(err) // Start has already asked doctor for the cause
		return 1
	}
	code, werr := l.Wait()
	log.Debug("cli: command exited", "sinceStart", sinceExec())
	if cerr := l.Close(); cerr != nil {
		log.Warn(cerr.Error())
	}
	log.Debug("cli: closed", "sinceStart", sinceExec())
	// rootlesskit reports every non-zero exit; unroot run lets the status
	// speak for itself unless a signal ended the command.
	if werr != nil && (p == asRootlesskit || code == 255 || errors.Is(werr, unroot.ErrNetworkDown)) {
		printErr(werr)
	}
	return code
}

func buildLauncher(o *opts, command []string, p personality, log *slog.Logger) (*unroot.Launcher, error) {
	if o.copyUpMode != "tmpfs+symlink" {
		return nil, fmt.Errorf("copy-up mode %q is not supported: use tmpfs+symlink", o.copyUpMode)
	}
	reaper, err := unroot.ParseReaperMode(o.reaper)
	if err != nil {
		return nil, err
	}
	src, err := idmap.ParseSource(o.subidSource)
	if err != nil {
		return nil, err
	}
	bypass, err := bypassConfig(o)
	if err != nil {
		return nil, err
	}
	fwds, err := parseForwards(o.forward)
	if err != nil {
		return nil, err
	}
	nd, err := buildNetwork(o, p, log)
	if err != nil {
		return nil, err
	}
	factory, specs, err := buildPorts(o, netNameOf(nd), p, log)
	if err != nil {
		nd.Close()
		return nil, err
	}
	l := &unroot.Launcher{
		Command:         command,
		StateDir:        o.stateDir,
		Network:         nd,
		Ports:           factory,
		Publish:         specs,
		Forward:         fwds,
		CopyUp:          o.copyUp,
		Propagation:     o.propagation,
		PIDNS:           o.pidns,
		CgroupNS:        o.cgroupns,
		UTSNS:           o.utsns,
		IPCNS:           o.ipcns,
		Reaper:          reaper,
		EvacuateCgroup2: o.evacuateCgroup2,
		DetachNetNS:     o.detachNetNS,
		SubIDSource:     unroot.SubIDSource(src),
		Ready:           o.ready,
		Logger:          log,
		Bypass:          bypass,
	}
	if l.OnNetworkFailure, err = unroot.ParseNetworkFailure(o.onNetworkFailure); err != nil {
		nd.Close()
		return nil, err
	}
	if p == asRootlesskit {
		l.ChildErrorPrefix = "[rootlesskit:child ] error: "
		l.ChildReportsExit = true
	}
	l.ListenFDs, l.ActivationPID = listenFDs()
	if err := l.Validate(); err != nil {
		nd.Close()
		return nil, flagError(err)
	}
	return l, nil
}

// listenFDs returns the systemd socket-activation fds (LISTEN_FDS at 3..),
// and whether LISTEN_PID names this process, so the command must get its
// own PID there.
func listenFDs() ([]*os.File, bool) {
	pid, err1 := strconv.Atoi(os.Getenv("LISTEN_PID"))
	n, err2 := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err1 != nil || err2 != nil || n <= 0 {
		return nil, false
	}
	files := make([]*os.File, n)
	for i := range files {
		files[i] = os.NewFile(uintptr(3+i), "LISTEN_FD_"+strconv.Itoa(3+i))
	}
	return files, pid == os.Getpid()
}

// newLogger prints warnings (and with --debug, debug lines) as one line
// each, prefixed like the error lines.
func newLogger(w io.Writer, debug bool, p personality) *slog.Logger {
	level := slog.LevelWarn
	if debug {
		level = slog.LevelDebug
	}
	return slog.New(&lineHandler{w: w, level: level, p: p})
}

type lineHandler struct {
	w     io.Writer
	level slog.Level
	p     personality
	attrs []slog.Attr
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	prefix := "unroot: "
	if h.p == asRootlesskit {
		prefix = "[rootlesskit:parent] "
	}
	lvl := "warning: "
	switch {
	case r.Level < slog.LevelInfo:
		lvl = "debug: "
	case r.Level < slog.LevelWarn:
		lvl = ""
	case r.Level >= slog.LevelError:
		lvl = "error: "
	}
	line := prefix + lvl + r.Message
	add := func(a slog.Attr) bool {
		if a.Key != "component" {
			line += " " + a.Key + "=" + a.Value.String()
		}
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	_, err := io.WriteString(h.w, line+"\n")
	return err
}

func (h *lineHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append(append([]slog.Attr{}, h.attrs...), as...)
	return &n
}

func (h *lineHandler) WithGroup(string) slog.Handler { return h }

// processStart is set as the package initializes, just after Go's own
// start-up, so --debug timings cover flag parsing and driver set-up too.
var processStart = time.Now()

func sinceExec() time.Duration { return time.Since(processStart) }
