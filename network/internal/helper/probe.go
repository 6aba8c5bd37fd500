package helper

import (
	"context"
	"os/exec"
	"regexp"
	"sync"
	"time"
)

// Probe runs "path --help" once per path and process, in the background, and
// hands the long options it lists to every caller. Drivers start it in New so
// that by Start (after the namespaces exist) the answer is usually there.
type Probe struct {
	done  chan struct{}
	flags map[string]bool
	out   string
}

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
	// Owned by the cache entry; ends when the helper's --help returns or in 5 s.
	go func() {
		defer close(p.done)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// pasta prints --help on stderr and exits 1; the text is what counts.
		out, _ := exec.CommandContext(ctx, path, "--help").CombinedOutput()
		p.out = string(out)
		p.flags = HelpFlags(p.out)
	}()
	return p
}

// Flags waits for the probe and returns the long options --help listed.
func (p *Probe) Flags(ctx context.Context) (map[string]bool, error) {
	select {
	case <-p.done:
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
