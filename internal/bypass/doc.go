// Package bypass serves the seccomp notifications of a command started
// with --bypass: it hands the namespace's TCP and UDP sockets to the host
// kernel where that is what the user asked for, so that no relay sits on
// their data path.
//
//   - A bind inside the namespace to a published port becomes a socket
//     bound on the host to the published address and port (the relay's
//     listener for that port steps aside first, and comes back once that
//     socket is gone).
//   - A connect (or an unconnected UDP sendto, or sendmsg with msg_name)
//     to an address outside the namespace's own networks gets a host
//     socket, and the kernel then runs the call on it.
//   - A connect to loopback or the namespace's own address on a port bound
//     that way is connected on the host to the program's host socket; one
//     to the driver's gateway goes to the host's loopback when the driver
//     lets the gateway reach it (--disable-host-loopback=false). An
//     unconnected UDP datagram to such a port is sent by the supervisor to
//     the program's host socket, from the sender's socket made a host one.
//   - A call that should have been bypassed but could not be runs inside,
//     with a rate-limited warning that says which and why.
//
// Everything else, and every call of a process in another network
// namespace (containers of a dockerd inside), runs as if nothing were
// trapped. The supervisor runs in the launcher, in the host's network
// namespace, so the sockets it makes are host sockets; it reaches the
// program's socket with pidfd_getfd, copies the options set on it, and
// swaps its own in with SECCOMP_IOCTL_NOTIF_ADDFD at the same number.
package bypass
