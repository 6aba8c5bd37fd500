package doctor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/unroot/unroot/internal/sys"
)

// The only file that talks to the kernel directly. The package variables are
// seams: tests swap them to force an errno the host cannot be made to return
// (AppArmor's EACCES on a kernel without AppArmor).

// probeTimeout bounds every helper process a probe starts.
const probeTimeout = 10 * time.Second

// tryUserNS creates a user namespace the way the launcher does (clone with
// CLONE_NEWUSER from this process) and returns the clone errno, if any.
var tryUserNS = func(ctx context.Context) error {
	_, err := runInNS(ctx, syscall.CLONE_NEWUSER, false, trueBinary())
	return err
}

func trueBinary() string {
	if p, err := exec.LookPath("true"); err == nil {
		return p
	}
	return "/bin/true"
}

// runInNS runs argv in new namespaces (flags) and returns its combined
// output. With mapSelf the caller's uid and gid become root inside, which an
// unprivileged process may do without newuidmap.
func runInNS(ctx context.Context, flags uintptr, mapSelf bool, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	attr := &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: syscall.SIGKILL}
	if mapSelf {
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
		attr.GidMappingsEnableSetgroups = false
	}
	cmd.SysProcAttr = attr
	// The output goes to a memory file, not a pipe: the checks run in
	// parallel, and the child of a sibling probe holds a copy of a pipe's
	// write end from its fork to its exec (longer when it waits for its id
	// maps on a loaded machine), which kept the pipe from its end of file
	// after this command had exited: "WaitDelay expired before I/O
	// complete" failed a healthy probe.
	out, err := sys.MemFile("unroot-doctor-probe")
	if err != nil {
		return "", fmt.Errorf("probe %s: %w", argv[0], err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	b, rerr := readFrom(out)
	if err == nil && rerr != nil {
		err = fmt.Errorf("read the output of %s: %w", argv[0], rerr)
	}
	return strings.TrimSpace(string(b)), err
}

// readFrom reads f from its start.
func readFrom(f *os.File) ([]byte, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(f)
}

// errnoOf digs the errno out of an exec or syscall error.
func errnoOf(err error) (syscall.Errno, bool) {
	var en syscall.Errno
	if errors.As(err, &en) {
		return en, true
	}
	return 0, false
}

// readFile returns a file's contents, trimmed, or "" and the error.
func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

// fileCapsOf reads the security.capability xattr of path; ok is false when
// the file has none.
func fileCapsOf(path string) (fileCaps, bool, error) {
	buf := make([]byte, 64)
	n, err := syscall.Getxattr(path, "security.capability", buf)
	if err != nil {
		if errors.Is(err, syscall.ENODATA) || errors.Is(err, syscall.ENOTSUP) {
			return fileCaps{}, false, nil
		}
		return fileCaps{}, false, err
	}
	c, err := parseVFSCap(buf[:n])
	return c, err == nil, err
}

const cgroup2Magic = 0x63677270

func isCgroup2(path string) bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == cgroup2Magic
}

// ownerOf returns the uid owning path.
func ownerOf(path string) (int, os.FileMode, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return -1, 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return -1, fi.Mode(), errors.New("stat " + path + ": no owner")
	}
	return int(st.Uid), fi.Mode(), nil
}

// openTun opens /dev/net/tun for reading and writing and closes it again.
func openTun(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	return f.Close()
}
