package helper

import (
	"context"
	"os/exec"
	"syscall"
	"time"
)

// Output runs "path args..." in a process group of its own and returns what
// it printed (stdout and stderr), for a question a helper answers at once
// ("pasta --version"). After timeout the whole group is killed and what
// came so far is returned; its exit status does not matter.
func Output(path string, timeout time.Duration, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 500 * time.Millisecond
	out, _ := cmd.CombinedOutput()
	return string(out)
}
