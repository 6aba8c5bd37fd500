package helper

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"sync"
	"syscall"
	"time"
)

// Probe runs "path --help" once per path and process, in the background, and
// hands the long options it lists to every caller. Drivers start it in New so
// that by Start (after the namespaces exist) the answer is usually there.
type Probe struct {
	done  chan struct{}
	flags map[string]bool
	out   string
	err   error // set when --help did not answer within ProbeTimeout
}

// ProbeTimeout bounds "helper --help": a real helper answers in
// milliseconds, so one that has not answered by then is stuck (a wrapper
// waiting on something, a broken install).
var ProbeTimeout = 5 * time.Second

var probes sync.Map // path → *Probe

// ProbeHelp returns the cached probe of path, starting it if needed.
func ProbeHelp(path string) *Probe {
	if p, ok := probes.Load(path); ok {
		return p.(*Probe)
	}
	p := &Probe{done: make(chan struct{})}
	if actual, loaded := probes.LoadOrStore(path, p); loaded {
		return actual.(*Probe)
	}
	// Owned by the cache entry; ends when the helper's --help returns or
	// after ProbeTimeout (and WaitDelay, if a grandchild holds its output).
	go func() {
		defer close(p.done)
		timeout := ProbeTimeout
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, path, "--help")
		// Its own process group, killed whole: a wrapper script's children
		// go too, and none keeps the output pipe (and this probe) open.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 500 * time.Millisecond
		// pasta prints --help on stderr and exits 1; the text is what counts.
		out, _ := cmd.CombinedOutput()
		if ctx.Err() != nil {
			p.err = fmt.Errorf("probe %s --help: it did not answer within %v: check that %s runs (try it by hand), or reinstall it", path, timeout, path)
		}
		p.out = string(out)
		p.flags = HelpFlags(p.out)
	}()
	return p
}

// Flags waits for the probe and returns the long options --help listed, or
// an error that says the helper did not answer.
func (p *Probe) Flags(ctx context.Context) (map[string]bool, error) {
	select {
	case <-p.done:
		if p.err != nil {
			return nil, p.err
		}
		return p.flags, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Compiled on first use: every process runs this package's init, the
// namespace init included, and few ever read a --help.
var longOpt = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?:^|[\s,\[|])(--[a-z0-9][a-z0-9-]*)`)
})

// HelpFlags returns the set of long options ("--netns-type") in a --help text.
func HelpFlags(help string) map[string]bool {
	m := map[string]bool{}
	for _, s := range longOpt().FindAllStringSubmatch(help, -1) {
		m[s[1]] = true
	}
	return m
}
