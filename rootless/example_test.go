package rootless_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"

	"github.com/unroot/unroot/port"
	"github.com/unroot/unroot/rootless"
)

// A daemon makes itself rootless with k3s's profile, then publishes its own
// port through the API socket. It cannot run under go test (it re-executes
// the test binary in new namespaces), so it has no Output line; see
// examples/httpd-rootless for the whole program.
func Example() {
	p := rootless.K3s()
	p.Logger = slog.Default()
	d, err := p.Run(os.Getenv("XDG_RUNTIME_DIR") + "/mydaemon")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Only the daemon phase gets here, as root of its namespaces.
	c, err := d.Client()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if _, err := c.AddPort(context.Background(), port.Spec{Proto: "tcp", ParentIP: netip.MustParseAddr("127.0.0.1"), ParentPort: 8080, ChildPort: 80}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	http.ListenAndServe(":80", nil)
}

// Another daemon brings its own prefix (MYD_ROOTLESS_* knobs), defaults
// and mounts.
func ExampleProfile() {
	p := rootless.K3s()
	p.Prefix, p.Name = "MYD", "myd"
	p.Defaults.CopyUp = []string{"/etc", "/run", "/var/lib/myd"}
	p.Sysctls = p.Sysctls[:1] // only kernel.unprivileged_userns_clone
	p.EvacuateCgroup2 = "myd_evac"
	p.Mount = func(d rootless.Daemon) error {
		return os.MkdirAll("/var/lib/myd/data", 0o700)
	}
	if _, err := p.Run(""); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// The knobs are parsed by a pure function: a program can show what a
// unit file's environment will do without starting anything.
func ExampleParseKnobs() {
	env := map[string]string{"K3S_ROOTLESS_MTU": "1500", "K3S_ROOTLESS_PORT_DRIVER": "vpnkit"}
	s, warnings, err := rootless.ParseKnobs("K3S", func(k string) string { return env[k] }, rootless.K3s().Defaults)
	fmt.Println(s.MTU, s.CIDR, s.PortDriver, err)
	for _, w := range warnings {
		fmt.Println(w)
	}
	// Output:
	// 1500 10.41.0.0/16 builtin <nil>
	// K3S_ROOTLESS_PORT_DRIVER="vpnkit": unknown port driver (use builtin or slirp4netns); using builtin
}
