// Package seccomp is seccomp user notification in pure Go: a classic-BPF
// filter that hands chosen socket system calls to a supervisor, the
// listener that receives them, and the answers (return a value, let the
// kernel continue the call, install one of the supervisor's descriptors in
// the target with SECCOMP_IOCTL_NOTIF_ADDFD).
//
// Like internal/relay, it is system calls and nothing else, so it imports
// golang.org/x/sys/unix itself. The filter is built by a pure function
// (Program) so that its logic is tested without a kernel; Install and the
// Listener need Linux 5.9 or later (ADDFD), and use
// SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV where the kernel has it (5.19) so
// that the signals Go programs send their own threads do not restart a
// trapped call before the supervisor has seen it.
//
// A filter cannot be removed and is inherited across fork and exec.
// Install puts it on the calling thread only (no TSYNC): a caller locks a
// goroutine to its OS thread, installs the filter, forks the program from
// that thread and never unlocks it.
package seccomp
