// Package rootless lets a daemon make itself rootless with one call at the
// top of main, the way k3s does: no separate launcher process to install or
// wrap around it. It is built on unroot.Launcher.
//
// The program runs three times, as three phases told apart by environment
// variables that the package sets and removes again before the daemon's
// code sees them:
//
//  1. parent (the user runs the program): Run checks the host (sysctls,
//     cgroup v2, slirp4netns), reads the <PREFIX>_ROOTLESS_* knobs, and
//     starts the same executable with the same arguments in new user,
//     mount, network, PID, cgroup, UTS and IPC namespaces; it waits and
//     exits with the daemon's exit status. A failed start is returned as
//     an error, with nothing left running or mounted.
//  2. child: the launcher's namespace init (unroot.Init) sets up mounts,
//     copy-up, the network and the reaper, and starts the daemon phase.
//  3. daemon: Run removes the markers, runs Profile.Mount and returns a
//     Daemon; its Sock (also in the package variable Sock) is the API
//     socket through which the daemon publishes ports. ROOTLESSKIT_STATE_DIR,
//     ROOTLESSKIT_PARENT_EUID and ROOTLESSKIT_PARENT_EGID are set, so
//     rootlessctl and nerdctl find the instance without extra set-up.
//
// K3s returns k3s's profile: K3S_ROOTLESS_MTU, K3S_ROOTLESS_CIDR (default
// 10.41.0.0/16), K3S_ROOTLESS_ENABLE_IPV6, K3S_ROOTLESS_PORT_DRIVER (builtin
// or slirp4netns), K3S_ROOTLESS_DISABLE_HOST_LOOPBACK (default true) and
// K3S_ROOTLESS_COPYUPDIRS (added to /etc, /var/run, /run and /var/lib), and
// unroot's own K3S_ROOTLESS_BYPASS (true, false or auto: docs/bypass.md). A
// value that does not parse is a warning and keeps the default; a CIDR that
// is not a network address, or a directory that cannot be copied up, is an
// error. Other daemons fill a Profile with their own prefix, defaults,
// sysctl list and mount hook.
//
// Unlike k3s's own package, Run returns errors instead of exiting through a
// logger, the parent exits with the daemon's real status (k3s always exits
// 0), and the state directory is the one passed in, locked for the run and
// removed at exit.
package rootless
