package unroot_test

import (
	"context"
	"fmt"
	"os"

	"github.com/unroot/unroot"
	"github.com/unroot/unroot/network/host"
)

// A program that runs `id` as root in new namespaces. Init must come first
// in main: the namespace init is the same binary, re-executed.
func Example() {
	if unroot.Init() {
		return
	}
	l := &unroot.Launcher{
		Command: []string{"id"},
		Network: host.None(), // a private network namespace with only lo
		PIDNS:   true,
		CopyUp:  []string{"/etc"},
	}
	if err := l.Start(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code, _ := l.Wait()
	l.Close()
	os.Exit(code)
}
