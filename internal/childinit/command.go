package childinit

import (
	"fmt"
	"os"
	"syscall"

	"github.com/unroot/unroot/internal/sys"
	"github.com/unroot/unroot/internal/wire"
)

// The command travels to the init in a file of its own (a memfd on fd
// Config.CmdFD), not in EnvConfig: Linux limits one environment string to
// 128 KiB, and a command line the kernel accepts for a direct exec (one
// argument of 100 KB, hundreds of long ones) must start under unroot too.
// The init reads it with pread from offset 0, so a re-exec reads it again.

// CommandFile returns a file holding command for Config.CmdFD.
func CommandFile(command []string) (*os.File, error) {
	f, err := sys.MemFile("unroot-command")
	if err != nil {
		return nil, fmt.Errorf("pass the command to the namespace init: %w", err)
	}
	var e wire.Encoder
	e.Strings(command)
	if _, err := f.Write(e.Bytes()); err != nil {
		f.Close()
		return nil, fmt.Errorf("pass the command to the namespace init: %w", err)
	}
	return f, nil
}

// readCommand reads the command from fd without moving its offset or
// closing it.
func readCommand(fd int) ([]string, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("read the command from fd %d: %w", fd, err)
	}
	b := make([]byte, st.Size)
	for off := 0; off < len(b); {
		n, err := syscall.Pread(fd, b[off:], int64(off))
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n == 0 {
			return nil, fmt.Errorf("read the command from fd %d: %v at %d of %d bytes", fd, err, off, len(b))
		}
		off += n
	}
	d := wire.NewDecoder(b)
	cmd := d.Strings()
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("read the command from fd %d: %w", fd, err)
	}
	if len(cmd) == 0 {
		return nil, fmt.Errorf("read the command from fd %d: empty", fd)
	}
	return cmd, nil
}
