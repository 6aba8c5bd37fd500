package unroot

import (
	"context"
	"fmt"
	"os"
	"strconv"

	"github.com/unroot/unroot/forward"
)

// portExposer is a network driver that publishes on the host every port
// bound inside (pasta's implicit port forwarding).
type portExposer interface{ ExposesNamespacePorts() bool }

// exposesPorts reports a network driver that would publish a forward's
// port on the host.
func (l *Launcher) exposesPorts() bool {
	pe, ok := l.Network.(portExposer)
	return ok && pe.ExposesNamespacePorts()
}

// errForwardExposed is why forwards and implicit port forwarding do not mix.
const errForwardExposed = "{Forward} cannot be used with pasta's implicit port forwarding: pasta would publish each forward's port on all the host's addresses, exposing the host service to the network; use {Ports=builtin} instead"

// validateForwards checks Forward without touching the system.
func (l *Launcher) validateForwards() error {
	if len(l.Forward) == 0 {
		return nil
	}
	if l.exposesPorts() {
		return configErrorf("Forward", errForwardExposed)
	}
	if !l.privateNet() {
		return configErrorf("Forward", "{Forward} needs a network namespace: use {Network=private} (with the host's network its services are reachable as they are)")
	}
	seen := map[string]bool{}
	for _, sp := range l.Forward {
		if err := forward.Validate(sp); err != nil {
			return configErrorf("Forward", "{Forward} %s: %v", sp, err)
		}
		p := sp.Proto + "/" + strconv.Itoa(sp.NSPort)
		if seen[p] {
			return configErrorf("Forward", "{Forward} %s: port %s inside is forwarded twice: give each forward a port of its own", sp, p)
		}
		seen[p] = true
	}
	return nil
}

// forwardPorts are the ports the init listens on for Forward ("tcp/5000").
func (l *Launcher) forwardPorts() []string {
	var out []string
	for _, sp := range l.Forward {
		out = append(out, sp.Proto+"/"+strconv.Itoa(sp.NSPort))
	}
	return out
}

// startForwards relays the reverse forwards (Forward) on the listening
// sockets the init made for them before the command started (files, in
// Forward's order); the API can add more later. Without a network
// namespace there is nothing to forward into.
func (l *Launcher) startForwards(ctx context.Context, files []*os.File) error {
	if !l.privateNet() {
		return nil
	}
	l.fwd = forward.New(l.sockets, l.log)
	if l.exposesPorts() {
		l.fwd.Disable("reverse forwarding is off: pasta's implicit port forwarding (--port-driver=implicit) would publish each forward's port on all the host's addresses, exposing the host service to the network; restart with --port-driver=builtin")
	}
	if len(files) != len(l.Forward) {
		return fmt.Errorf("start forwards: the namespace sent %d sockets for %d forwards", len(files), len(l.Forward))
	}
	for i, sp := range l.Forward {
		if _, err := l.fwd.AddListener(sp, files[i]); err != nil {
			return err
		}
	}
	return nil
}
