// Package unroot runs a command as an ordinary user inside new user, mount,
// network and PID namespaces, with a user-mode network and host→namespace
// port forwarding, keeping RootlessKit's contract: the same state directory
// files, environment, REST API and process model, so dockerd, containerd,
// nerdctl and k3s work under it unchanged.
//
// An embedder fills a Launcher and calls Start, Wait and Close; the binary
// must call Init first thing in main, because the namespace init is the same
// executable re-executed:
//
//	func main() {
//		if unroot.Init() {
//			return // not reached: in the re-executed child Init runs the namespace init and exits
//		}
//		nd, err := slirp4netns.New(network.Config{}, slirp4netns.Options{})
//		if err != nil { ... }
//		l := &unroot.Launcher{Command: []string{"dockerd"}, Network: nd, Ports: builtin.New}
//		if err := l.Start(ctx); err != nil { ... }
//		defer l.Close()
//		code, err := l.Wait()
//	}
//
// Start validates the Launcher first (Validate, whose *ConfigError names the
// field at fault) and, when the host is the problem, returns a
// *doctor.Error that names the cause and the fix.
//
// The package imports no concrete network or port driver; the caller picks
// them, so an embedder links only what it uses.
package unroot
