// Package doctor finds what on the host keeps unroot from running and says
// how to fix it.
//
// Most rootless failures come from the host, not from the launcher: user
// namespaces blocked by a sysctl or by AppArmor, no subordinate ids, a
// newuidmap without its setuid bit, an unusable /dev/net/tun, missing network
// helpers, no cgroup delegation, no lingering. The kernel reports all of them
// as a bare errno ("fork/exec /proc/self/exe: permission denied"). Each Check
// here tries the operation itself where it can, unprivileged, as the invoking
// user (create a namespace, map ids, open the tap device, run iptables in a
// namespace) instead of only reading settings, and returns a Result that names
// the cause and the exact command or file that fixes it.
//
// Two callers use it: `unroot doctor`, which runs Default and prints every
// Result, and a failed start, which hands its error to Explain so that the
// user sees the host problem in place of the errno. Explain needs nothing but
// the error and Options, so the launcher imports only this package.
//
// Checks never change the host. They create short-lived child processes in
// fresh namespaces and wait for them; nothing is left running when Run
// returns.
package doctor
