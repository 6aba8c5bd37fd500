// Package sys is the launcher's thin layer over golang.org/x/sys/unix: the
// few system calls and constants the other packages need, as package
// variables so tests can inject failures (EPERM, ENOSPC) without a
// privileged host. It holds no logic beyond argument plumbing.
package sys

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Mount flags and namespace flags the launcher uses.
const (
	MS_BIND    = unix.MS_BIND
	MS_REC     = unix.MS_REC
	MS_MOVE    = unix.MS_MOVE
	MS_PRIVATE = unix.MS_PRIVATE
	MS_SHARED  = unix.MS_SHARED
	MS_SLAVE   = unix.MS_SLAVE
	MS_RDONLY  = unix.MS_RDONLY
	MS_NOSUID  = unix.MS_NOSUID
	MS_NODEV   = unix.MS_NODEV
	MS_NOEXEC  = unix.MS_NOEXEC

	CLONE_NEWUSER   = unix.CLONE_NEWUSER
	CLONE_NEWNS     = unix.CLONE_NEWNS
	CLONE_NEWNET    = unix.CLONE_NEWNET
	CLONE_NEWPID    = unix.CLONE_NEWPID
	CLONE_NEWCGROUP = unix.CLONE_NEWCGROUP
	CLONE_NEWUTS    = unix.CLONE_NEWUTS
	CLONE_NEWIPC    = unix.CLONE_NEWIPC
)

// Swappable system calls.
var (
	Mount   = unix.Mount
	Unmount = unix.Unmount
	Unshare = unix.Unshare
	Setns   = unix.Setns
	Kill    = unix.Kill
	Getppid = unix.Getppid
	Gettid  = unix.Gettid
	Wait4   = unix.Wait4
)

// Tree is a detached copy of a mount tree (open_tree(2), Linux 5.2). It is
// unmounted when closed unless Attach put it somewhere first.
type Tree struct{ fd int }

// CloneTree copies the mount tree at path, submounts included, without
// attaching it anywhere: what "mount --rbind" to a scratch directory and
// a later MS_MOVE did, with no scratch directory.
var CloneTree = func(path string) (*Tree, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, path, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return nil, fmt.Errorf("open_tree %s: %w", path, err)
	}
	return &Tree{fd: fd}, nil
}

// Attach mounts the tree on target.
func (t *Tree) Attach(target string) error {
	if err := unix.MoveMount(t.fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount to %s: %w", target, err)
	}
	return nil
}

// Close releases the tree (and unmounts it, if it was never attached).
func (t *Tree) Close() error { return unix.Close(t.fd) }

// SetPdeathsig makes the calling thread's process get sig when its parent
// thread dies.
func SetPdeathsig(sig unix.Signal) error {
	return unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(sig), 0, 0, 0)
}

// SetChildSubreaper makes orphaned descendants reparent to the caller
// instead of the host's init, so the caller can still find and kill them.
func SetChildSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// HasChildren reports whether the caller has any child, running or not yet
// reaped, without reaping it. A subreaper with none has no descendants at
// all: every orphan below it would have become its child.
func HasChildren() bool {
	var info unix.Siginfo
	err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	return !errors.Is(err, unix.ECHILD)
}

// WatchExit returns a channel closed when process pid has exited (all its
// threads, unlike PR_SET_PDEATHSIG, which fires when the creating thread
// exits). It uses a pidfd, so a recycled PID cannot fool it; callers must
// check afterwards that pid is still the process they meant. One goroutine
// blocks in poll(2) until then.
func WatchExit(pid int) (<-chan struct{}, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	ch := make(chan struct{})
	go func() {
		defer unix.Close(fd)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(fds, -1)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n > 0 {
				close(ch)
				return
			}
		}
	}()
	return ch, nil
}

// SIGKILL for SetPdeathsig callers that do not import syscall.
const SIGKILL = unix.SIGKILL

// TunFix is the fix for a failed open of /dev/net/tun: load the module
// when it is missing, open up its mode when it is not ours to use. Errors
// that carry it end with "; fix: <it>" (doctor prints it once).
func TunFix(err error) string {
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		return "sudo chmod 0666 /dev/net/tun (in a container: pass --device /dev/net/tun)"
	}
	return "sudo modprobe tun (in a container: pass --device /dev/net/tun)"
}

// OpenTap creates (or attaches to) the TAP device name in the calling
// thread's network namespace and returns its fd, non-blocking and
// close-on-exec. vnetHdr asks for IFF_VNET_HDR (virtio-net header per frame).
func OpenTap(name string, vnetHdr bool) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w; fix: %s", err, TunFix(err))
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap name %q: %w", name, err)
	}
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if vnetHdr {
		flags |= unix.IFF_VNET_HDR
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create tap %s (TUNSETIFF): %w", name, err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}

// CreatePersistentTap creates the TAP device name in the calling thread's
// network namespace, marks it persistent and closes it, so that a helper
// process can attach to it later and the device outlives that helper.
func CreatePersistentTap(name string) error {
	f, err := OpenTap(name, false)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := SetTapPersist(f, true); err != nil {
		return fmt.Errorf("make tap %s persistent (TUNSETPERSIST): %w", name, err)
	}
	return nil
}

// SetTapPersist sets or clears the persistent flag of the tap open on f;
// a tap without it is removed when its last fd closes.
func SetTapPersist(f *os.File, on bool) error {
	v := 0
	if on {
		v = 1
	}
	return unix.IoctlSetInt(int(f.Fd()), unix.TUNSETPERSIST, v)
}

// IfIndex returns the index of the network device name in the calling
// thread's network namespace. It asks with SIOCGIFINDEX on a throwaway
// socket: a netlink lookup by name has the kernel describe the whole device
// and the library parse it, several times the cost, on the init's start-up
// path.
func IfIndex(name string) (int, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, fmt.Errorf("device name %q: %w", name, err)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("find %s: socket: %w", name, err)
	}
	defer unix.Close(fd)
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, fmt.Errorf("find %s: %w", name, err)
	}
	return int(ifr.Uint32()), nil
}

// Socket makes a non-blocking, close-on-exec socket in the calling
// thread's network namespace and returns its descriptor, which the caller
// owns. Stream sockets get TCP_NODELAY.
func Socket(family, sotype int) (int, error) {
	fd, err := unix.Socket(family, sotype|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("create socket family %d type %d: %w", family, sotype, err)
	}
	if sotype == unix.SOCK_STREAM {
		// As on every TCP socket Go makes (the accepted client's among
		// them): a relayed short write must not wait, under Nagle, for the
		// ack of the previous one.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("set TCP_NODELAY: %w", err)
		}
	}
	return fd, nil
}

// PeerUID returns the uid of the process at the other end of a unix socket.
func PeerUID(fd uintptr) (uint32, error) {
	cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return 0, err
	}
	return cred.Uid, nil
}

// AllCaps lists every capability this kernel knows (0..cap_last_cap), for
// raising them as ambient capabilities across an exec.
func AllCaps() []uintptr {
	last := 40 // CAP_CHECKPOINT_RESTORE, Linux 5.9
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 && n < 64 {
			last = n
		}
	}
	caps := make([]uintptr, last+1)
	for i := range caps {
		caps[i] = uintptr(i)
	}
	return caps
}

// HasSysAdmin reports whether the calling thread holds CAP_SYS_ADMIN in
// its user namespace.
func HasSysAdmin() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[0].Effective&(1<<unix.CAP_SYS_ADMIN) != 0
}

// DropInheritable clears the calling thread's inheritable and ambient
// capability sets (effective and permitted stay), so programs it starts get
// capabilities only by the usual rules.
func DropInheritable() error {
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clear inheritable capabilities: %w", err)
	}
	return nil
}

// WaitStatus decodes a wait4 status.
type WaitStatus = unix.WaitStatus

// Rusage is wait4's resource usage (unused by callers, required by the call).
type Rusage = unix.Rusage

// WNOHANG for Wait4.
const WNOHANG = unix.WNOHANG

// ECHILD means no children are left to wait for.
const ECHILD = unix.ECHILD

// MemFile returns an anonymous file in memory (memfd_create), close-on-exec
// in this process; a child gets it through exec.Cmd.ExtraFiles.
func MemFile(name string) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}
