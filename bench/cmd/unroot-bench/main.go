// Command unroot-bench measures unroot next to RootlessKit v3 and 1.1 and
// next to physical references (host loopback, a veth pair between two
// network namespaces) on the same machine in the same run, and writes
// bench/results/latest.{md,svg,json}.
//
// It runs as root only to switch to the unprivileged test user and to make
// the veth reference; every launcher, server and client of a peer runs as
// that user. bench/run.sh installs what it needs and calls it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/unroot/unroot/bench/internal/report"
)

func main() {
	os.Exit(run())
}

type options struct {
	quick    bool
	rounds   int
	duration time.Duration
	unroot   string // directory holding unroot and the rootlesskit link
	rk3, rk1 string
	b4n      string // bypass4netns
	runc     string // the OCI runtime that hands bypass4netns its listener
	ceiling  string // the udp-ceiling yardstick
	user     string
	out      string
	only     string
	render   bool
}

func run() int {
	var o options
	flag.BoolVar(&o.quick, "quick", false, "one short round of every benchmark (CI: checks that every benchmark runs, says nothing about speed)")
	flag.IntVar(&o.rounds, "rounds", 5, "rounds; each round runs every variant once, interleaved")
	flag.DurationVar(&o.duration, "duration", 4*time.Second, "length of each iperf3 and wrk run")
	flag.StringVar(&o.unroot, "unroot", "/opt/unroot-bench/unroot", "directory with the unroot binary and its rootlesskit link")
	flag.StringVar(&o.rk3, "rk3", "/opt/unroot-bench/rk3/rootlesskit", "RootlessKit v3.3.0 binary")
	flag.StringVar(&o.rk1, "rk1", "/usr/bin/rootlesskit", "RootlessKit 1.1.0 binary (Debian)")
	flag.StringVar(&o.b4n, "b4n", "/opt/unroot-bench/b4n/bypass4netns", "bypass4netns v0.4.2 binary")
	flag.StringVar(&o.runc, "runc", "/usr/sbin/runc", "OCI runtime (runc ≥ 1.1) that applies bypass4netns's seccomp profile")
	flag.StringVar(&o.ceiling, "udp-ceiling", "", "udp-ceiling binary (bench/cmd/udp-ceiling): adds its yardstick rows to the UDP benchmark; empty = none")
	flag.StringVar(&o.user, "user", "unroot-test", "unprivileged user with subordinate ids that runs every peer")
	flag.StringVar(&o.out, "out", "bench/results", "directory for latest.md, latest.svg and latest.json")
	flag.StringVar(&o.only, "only", "", "comma-separated benchmark groups to run (startup,tcp,udp,udpload,http,out,mem,pods); empty = all")
	flag.BoolVar(&o.render, "render", false, "redraw latest.md and latest.svg from latest.json without measuring")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	if o.render {
		if err := rerender(o.out); err != nil {
			fmt.Fprintln(os.Stderr, "unroot-bench:", err)
			return 1
		}
		return 0
	}
	if o.quick {
		o.rounds = 1
		o.duration = time.Second
	}
	if o.rounds < 1 || o.duration < time.Second {
		fmt.Fprintln(os.Stderr, "unroot-bench: --rounds must be at least 1 and --duration at least 1s")
		return 1
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "unroot-bench: run as root (sudo bench/run.sh): root switches to the test user and makes the veth reference; the peers run unprivileged")
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()

	h, err := newHarness(ctx, o, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "unroot-bench:", err)
		return 1
	}
	res, runErr := h.runAll(ctx)
	h.close()
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "unroot-bench: interrupted; every launcher, helper and namespace it started is gone")
		return 130
	}
	if runErr != nil {
		fmt.Fprintln(os.Stderr, "unroot-bench:", runErr)
		return 1
	}
	if err := write(o.out, res); err != nil {
		fmt.Fprintln(os.Stderr, "unroot-bench:", err)
		return 1
	}
	fmt.Printf("wrote %s\n", filepath.Join(o.out, "latest.md"))
	if f := res.Failures(); len(f) > 0 {
		fmt.Fprintf(os.Stderr, "unroot-bench: %d variant(s) could not run:\n  %s\n", len(f), strings.Join(f, "\n  "))
		return 1
	}
	return 0
}

func write(dir string, res *report.Results) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create results directory %s: %w", dir, err)
	}
	js, err := json.MarshalIndent(res, "", " ")
	if err != nil {
		return err
	}
	files := map[string]string{
		"latest.json": string(js) + "\n",
		"latest.md":   report.Markdown(res, "latest.svg"),
		"latest.svg":  report.SVG(res),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

func rerender(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "latest.json"))
	if err != nil {
		return fmt.Errorf("read results (run the suite first): %w", err)
	}
	var res report.Results
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("parse %s/latest.json: %w", dir, err)
	}
	return write(dir, &res)
}

// harness holds what every benchmark needs.
type harness struct {
	o        options
	log      *slog.Logger
	uid, gid int
	home     string
	work     string // scratch directory owned by the test user
	peers    []*peer
	b4n      *peer // bypass4netns: rows of its own, no launcher
	b4nLink  bool  // the address for its egress rows is on lo
	seq      int
	veth     *veth
	closers  []func()
}

func newHarness(ctx context.Context, o options, log *slog.Logger) (*harness, error) {
	if err := setSubreaper(); err != nil {
		return nil, err
	}
	u, err := user.Lookup(o.user)
	if err != nil {
		return nil, fmt.Errorf("look up test user %q: %w (bench/run.sh creates it)", o.user, err)
	}
	h := &harness{o: o, log: log, home: u.HomeDir}
	h.uid, _ = strconv.Atoi(u.Uid)
	h.gid, _ = strconv.Atoi(u.Gid)
	// Many connections at once (1,000 open, wrk's churn) need descriptors in
	// every process; children inherit this limit.
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		want := min(lim.Max, 65536)
		lim.Cur = want
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	// The pid in the name lets a later run remove what a killed run left.
	h.work, err = os.MkdirTemp("", fmt.Sprintf("unroot-bench-%d-", os.Getpid()))
	if err != nil {
		return nil, fmt.Errorf("create scratch directory: %w", err)
	}
	for _, d := range []string{h.work, filepath.Join(h.work, "run")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
		if err := os.Chown(d, h.uid, h.gid); err != nil {
			return nil, fmt.Errorf("chown %s to %s: %w", d, o.user, err)
		}
	}
	// The test user must reach its scratch directory through /tmp.
	_ = os.Chmod(h.work, 0o755)
	h.removeStale(ctx)
	h.peers = findPeers(ctx, h)
	h.b4n = findB4n(ctx, h)
	return h, nil
}

// close kills everything the harness started and removes its namespaces
// and scratch files. It is safe to call after an interrupt.
func (h *harness) close() {
	killTree(nil)
	for i := len(h.closers) - 1; i >= 0; i-- {
		h.closers[i]()
	}
	if h.veth != nil {
		h.veth.remove()
	}
	killTree(nil)
	_ = os.RemoveAll(h.work)
}

func (h *harness) next() int {
	h.seq++
	return h.seq
}

func setSubreaper() error {
	if err := prctlSubreaper(); err != nil {
		return fmt.Errorf("become child subreaper (needed to find helpers that daemonize): %w", err)
	}
	return nil
}

// tail returns the last non-empty lines of a command's output for an error message.
func tail(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}
