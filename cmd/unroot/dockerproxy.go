package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/unroot/unroot/api"
	"github.com/unroot/unroot/api/client"
	"github.com/unroot/unroot/port"
)

// The rootlesskit-docker-proxy personality: dockerd (20.10 to 27, with
// --userland-proxy-path) runs it inside the namespaces instead of
// docker-proxy. It publishes the host side through the API, runs the real
// docker-proxy on the child side, reports on fd 3 as docker-proxy does
// ("0\n" ok, "1\n<error>" failed), and unpublishes on SIGINT/SIGTERM.

// realDockerProxy is the program that does the in-namespace half.
const realDockerProxy = "docker-proxy"

type proxyArgs struct {
	containerIP, proto      string
	hostIP                  netip.Addr // the zero Addr: all addresses
	containerPort, hostPort int
	useListenFD             bool
}

// parseProxyArgs reads docker-proxy's Go-flag style arguments.
func parseProxyArgs(args []string) (proxyArgs, error) {
	a := proxyArgs{proto: "tcp", containerPort: -1, hostPort: -1}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		name := strings.TrimPrefix(strings.TrimPrefix(arg, "-"), "-")
		if name == arg || name == "" {
			return a, fmt.Errorf("unexpected argument %q: docker-proxy takes only flags", arg)
		}
		name, val, hasVal := strings.Cut(name, "=")
		if name == "use-listen-fd" {
			a.useListenFD = !hasVal || val == "true" || val == "1"
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return a, fmt.Errorf("flag needs an argument: -%s", name)
			}
			i++
			val = args[i]
		}
		var err error
		switch name {
		case "container-ip":
			a.containerIP = val
		case "host-ip":
			if val == "" {
				a.hostIP = netip.Addr{}
			} else if a.hostIP, err = netip.ParseAddr(val); err != nil {
				return a, fmt.Errorf("invalid value %q for -host-ip: want an IP address", val)
			}
		case "proto":
			a.proto = val
		case "container-port":
			a.containerPort, err = strconv.Atoi(val)
		case "host-port":
			a.hostPort, err = strconv.Atoi(val)
		default:
			// Newer docker-proxy flags pass through untouched.
		}
		if err != nil {
			return a, fmt.Errorf("invalid value %q for -%s: want a port number", val, name)
		}
	}
	return a, nil
}

func isIPv6(ip netip.Addr) bool { return ip.Is6() && !ip.Is4In6() }

func dockerProxy(args []string) int {
	status := statusPipe()
	err := dockerProxyRun(args, status)
	var ee exitError
	if errors.As(err, &ee) {
		return 1
	}
	if err != nil {
		if status != nil {
			fmt.Fprintf(status, "1\n%s", err)
		}
		fmt.Fprintf(os.Stderr, "rootlesskit-docker-proxy: %v\n", err)
		return 1
	}
	return 0
}

func dockerProxyRun(args []string, status *os.File) error {
	a, err := parseProxyArgs(args)
	if err != nil {
		return err
	}
	c, err := proxyAPIClient()
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	info, err := c.Info(ctx)
	if err != nil {
		return fmt.Errorf("call the info API: %w", err)
	}
	real, lookErr := exec.LookPath(realDockerProxy)
	if info.PortDriver == nil || info.PortDriver.Driver == "none" || info.PortDriver.Driver == "implicit" {
		// Nothing to publish on the host: be plain docker-proxy.
		if lookErr != nil {
			return fmt.Errorf("find %s: %w (install docker's docker-proxy)", realDockerProxy, lookErr)
		}
		return syscall.Exec(real, append([]string{realDockerProxy}, args...), os.Environ())
	}
	apiProto := proxyAPIProto(a)
	if !slices.Contains(info.PortDriver.Protos, apiProto) {
		return proxySkipUnsupported(ctx, a, apiProto, info.PortDriver.Driver, status)
	}
	childIP, err := proxyChildIP(a, info)
	if err != nil {
		return err
	}
	spec := port.Spec{Proto: apiProto, ParentIP: a.hostIP, ParentPort: a.hostPort, ChildIP: childIP, ChildPort: a.hostPort}
	st, err := c.AddPort(ctx, spec)
	if err != nil {
		return fmt.Errorf("publish %s %s: %w", apiProto, netip.AddrPortFrom(orUnspec(a.hostIP), uint16(a.hostPort)), err)
	}
	defer func() {
		// The request context may be done (a signal); removal must still run.
		if err := c.RemovePort(context.Background(), st.ID); err != nil {
			fmt.Fprintf(os.Stderr, "rootlesskit-docker-proxy: unpublish port %d: %v\n", st.ID, err)
		}
	}()
	// Checked only now: the port stays published (and is then removed)
	// exactly as before, whether or not docker-proxy is installed.
	if lookErr != nil {
		return fmt.Errorf("find %s: %w (install docker's docker-proxy)", realDockerProxy, lookErr)
	}
	return runRealProxy(ctx, real, replaceFlag(args, "host-ip", childIP.String()), a.useListenFD, status)
}

// proxyAPIClient connects to the API socket in $ROOTLESSKIT_STATE_DIR.
func proxyAPIClient() (*client.Client, error) {
	stateDir := os.Getenv("ROOTLESSKIT_STATE_DIR")
	if stateDir == "" {
		return nil, errors.New("$ROOTLESSKIT_STATE_DIR needs to be set: run dockerd under unroot or rootlesskit")
	}
	return client.New(filepath.Join(stateDir, "api.sock"))
}

// proxyAPIProto is the API's protocol name for a: docker-proxy says "tcp"
// or "udp", the port driver wants the family too ("tcp4", "udp6").
func proxyAPIProto(a proxyArgs) string {
	apiProto := a.proto
	if !strings.HasSuffix(apiProto, "4") && !strings.HasSuffix(apiProto, "6") {
		if isIPv6(a.hostIP) {
			apiProto += "6"
		} else {
			apiProto += "4"
		}
	}
	return apiProto
}

// proxySkipUnsupported reports success to dockerd without publishing a
// protocol the port driver lacks, so the container still starts, and
// waits for the signal that would have unpublished it.
func proxySkipUnsupported(ctx context.Context, a proxyArgs, apiProto, driver string, status *os.File) error {
	fmt.Fprintf(os.Stderr, "rootlesskit-docker-proxy: protocol %q is not supported by the port driver %q; not publishing %s on the host\n", apiProto, driver, netip.AddrPortFrom(orUnspec(a.hostIP), uint16(a.hostPort)))
	if status != nil {
		fmt.Fprint(status, "0\n")
		status.Close()
	}
	<-ctx.Done()
	return nil
}

// proxyChildIP is where the real docker-proxy listens in the namespace:
// loopback of the host IP's family, or the child's own IP where the port
// driver cannot forward to loopback.
func proxyChildIP(a proxyArgs, info *api.Info) (netip.Addr, error) {
	childIP := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	if isIPv6(a.hostIP) {
		childIP = netip.IPv6Loopback()
	}
	if info.PortDriver.DisallowLoopbackChildIP && info.NetworkDriver != nil && info.NetworkDriver.ChildIP != "" {
		ip, err := netip.ParseAddr(info.NetworkDriver.ChildIP)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("the info API's childIP %q: %w", info.NetworkDriver.ChildIP, err)
		}
		childIP = ip
	}
	return childIP, nil
}

// runRealProxy runs the real docker-proxy with realArgs, hands it the
// status pipe (and the listen fd), and waits for it to exit or for a
// signal, which it passes on as SIGINT.
func runRealProxy(ctx context.Context, real string, realArgs []string, useListenFD bool, status *os.File) error {
	cmd := exec.Command(real, realArgs...)
	cmd.Args[0] = realDockerProxy
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if status != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, status)
		if useListenFD {
			cmd.ExtraFiles = append(cmd.ExtraFiles, os.NewFile(4, "listen-fd"))
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", realDockerProxy, err)
	}
	if status != nil {
		status.Close() // the real proxy reports from now on
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case <-ctx.Done():
		cmd.Process.Signal(os.Interrupt)
		<-waitErr
		return nil
	case err := <-waitErr:
		if err != nil {
			// It already told dockerd on fd 3; just pass the status on.
			fmt.Fprintf(os.Stderr, "rootlesskit-docker-proxy: %s: %v\n", realDockerProxy, err)
			return exitError{err}
		}
		return nil
	}
}

// statusPipe returns fd 3 if dockerd passed its status pipe there. Any
// other fd 3 (nothing, or one of the runtime's own) is left alone.
func statusPipe() *os.File {
	var st syscall.Stat_t
	if err := syscall.Fstat(3, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
		return nil
	}
	return os.NewFile(3, "docker-proxy-status")
}

// exitError makes dockerProxy exit 1 without writing to fd 3 again.
type exitError struct{ error }

func orUnspec(ip netip.Addr) netip.Addr {
	if !ip.IsValid() {
		return netip.IPv4Unspecified()
	}
	return ip
}

// replaceFlag sets -name to value in Go-flag style args.
func replaceFlag(args []string, name, value string) []string {
	out := make([]string, 0, len(args)+2)
	found := false
	// The same grammar as parseProxyArgs: a flag without "=" takes the
	// next argument as its value (but -use-listen-fd), and a value is
	// never taken for a flag, even when it reads like the flag's name.
	for i := 0; i < len(args); i++ {
		n := strings.TrimPrefix(strings.TrimPrefix(args[i], "-"), "-")
		flag, _, hasVal := strings.Cut(n, "=")
		switch {
		case n == args[i] || n == "":
			out = append(out, args[i]) // not a flag: parseProxyArgs refuses it
		case flag == name:
			out = append(out, "-"+name, value)
			found = true
			if !hasVal {
				i++
			}
		default:
			out = append(out, args[i])
			if !hasVal && flag != "use-listen-fd" && i+1 < len(args) {
				i++
				out = append(out, args[i])
			}
		}
	}
	if !found {
		out = append(out, "-"+name, value)
	}
	return out
}
