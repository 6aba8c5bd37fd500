package childinit

// The detached network namespace (--detach-netns): made and entered on a
// thread of its own, which runs every function that needs it.

import (
	"fmt"
	"os"
	"runtime"

	"github.com/unroot/unroot/internal/operr"
	"github.com/unroot/unroot/internal/sys"
)

// netnsWorker runs functions in the namespace init's network namespace. For
// a detached netns that is a dedicated OS thread moved into it; otherwise
// the whole process is already there and functions run in place.
type netnsWorker struct {
	ch chan func()
}

// Do runs fn in the netns and returns its error.
func (w *netnsWorker) Do(fn func() error) error {
	if w.ch == nil {
		return fn()
	}
	errc := make(chan error, 1)
	w.ch <- func() { errc <- fn() }
	return <-errc
}

// startDetachedNetNS creates a network namespace on a locked thread and
// bind-mounts it on path, where drivers and `nsenter -n` find it. The
// thread stays in that netns and is never unlocked, so Go never schedules
// other goroutines on it.
func startDetachedNetNS(path string) (*netnsWorker, error) {
	w := &netnsWorker{ch: make(chan func())}
	ready := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := sys.Unshare(sys.CLONE_NEWNET); err != nil {
			ready <- operr.Errorf(operr.UserNS, "netns", "create detached network namespace: %w", err)
			return // the locked thread exits with the goroutine
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o400)
		if err != nil {
			ready <- fmt.Errorf("create %s: %w", path, err)
			return
		}
		f.Close()
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", sys.Gettid())
		if err := sys.Mount(src, path, "", sys.MS_BIND, ""); err != nil {
			ready <- fmt.Errorf("bind network namespace on %s: %w", path, err)
			return
		}
		ready <- nil
		for fn := range w.ch {
			fn()
		}
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return w, nil
}
