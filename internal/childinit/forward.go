package childinit

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/unroot/unroot/internal/handshake"
	"github.com/unroot/unroot/internal/sys"
)

// listenForwards makes the listening sockets of the reverse forwards
// (cfg.Forwards) in the network namespace and sends them to the parent,
// in order, in one Forwards message. It runs before the command starts,
// so the command never finds a forward's port closed: a connection made
// before the parent relays waits in the socket's backlog.
func listenForwards(cfg Config, ctl *handshake.Conn, worker *netnsWorker) error {
	if len(cfg.Forwards) == 0 {
		return nil
	}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, f := range cfg.Forwards {
		proto, portText, _ := strings.Cut(f, "/")
		port, err := strconv.ParseUint(portText, 10, 16)
		if err != nil || (proto != "tcp" && proto != "udp") {
			return fmt.Errorf("forward %q: want tcp/PORT or udp/PORT", f)
		}
		sotype := sys.SOCK_STREAM
		if proto == "udp" {
			sotype = sys.SOCK_DGRAM
		}
		var fd int
		if err := worker.Do(func() (err error) { fd, err = sys.ListenAny(sotype, uint16(port)); return }); err != nil {
			return fmt.Errorf("listen on port %d/%s inside for --forward: %w", port, proto, err)
		}
		files = append(files, os.NewFile(uintptr(fd), "forward-"+f))
	}
	return ctl.Send(handshake.Msg{Kind: handshake.Forwards}, files...)
}
