// Command listenfds is a socket-activated service for tests: it checks what
// sd_listen_fds(3) checks, then accepts one connection on each socket and
// answers with what it saw.
package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
)

func main() {
	pid, _ := strconv.Atoi(os.Getenv("LISTEN_PID"))
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if pid != os.Getpid() || err != nil || n < 1 {
		fmt.Fprintf(os.Stderr, "listenfds: LISTEN_PID=%q (own pid %d) LISTEN_FDS=%q: not for this process\n", os.Getenv("LISTEN_PID"), os.Getpid(), os.Getenv("LISTEN_FDS"))
		os.Exit(1)
	}
	for i := range n {
		fd := 3 + i
		l, err := net.FileListener(os.NewFile(uintptr(fd), "listen"))
		if err != nil {
			fmt.Fprintf(os.Stderr, "listenfds: fd %d: %v\n", fd, err)
			os.Exit(1)
		}
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintf(os.Stderr, "listenfds: accept on fd %d: %v\n", fd, err)
			os.Exit(1)
		}
		fmt.Fprintf(c, "fd=%d pid=%d listen_pid=%s fds=%d names=%s uid=%d\n", fd, os.Getpid(), os.Getenv("LISTEN_PID"), n, os.Getenv("LISTEN_FDNAMES"), os.Getuid())
		c.Close()
	}
}
