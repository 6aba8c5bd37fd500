package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/unroot/unroot"
	"github.com/unroot/unroot/api"
	"github.com/unroot/unroot/api/client"
	"github.com/unroot/unroot/port"
)

// The rootlessctl personality: RootlessKit's rootlessctl commands, flags,
// output and exit codes, so scripts written for it work unchanged.

const ctlUsage = `NAME:
   rootlessctl - RootlessKit API client

USAGE:
   rootlessctl [global options] command [command options] [arguments...]

COMMANDS:
   list-ports    List ports
   add-ports     Add ports
   remove-ports  Remove ports
   info          Show info
   help, h       Shows a list of commands or help for one command

GLOBAL OPTIONS:
   --debug          debug mode (default: false)
   --socket value   Path to api.sock (under the "rootlesskit --state-dir" directory), defaults to $ROOTLESSKIT_STATE_DIR/api.sock
   --help, -h       show help
   --version, -v    print the version
`

func ctlMain(args []string) int {
	err := ctlRun(args, os.Stdout)
	var ex exitCode
	if errors.As(err, &ex) {
		return int(ex)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return 1
	}
	return 0
}

// ctlFlag matches --name, -name, --name=value and -name=value.
func ctlFlag(arg, name string) (value string, hasValue, ok bool) {
	a := strings.TrimPrefix(strings.TrimPrefix(arg, "-"), "-")
	if a == arg {
		return "", false, false
	}
	if a == name {
		return "", false, true
	}
	if v, found := strings.CutPrefix(a, name+"="); found {
		return v, true, true
	}
	return "", false, false
}

func ctlRun(args []string, out io.Writer) error {
	socket, args, done, err := ctlParseGlobalFlags(args, out)
	if done || err != nil {
		return err
	}
	if len(args) == 0 {
		fmt.Fprint(out, ctlUsage)
		return nil
	}
	cmd := args[0]
	asJSON, rest, done, err := ctlParseCommandFlags(cmd, args[1:], out)
	if done || err != nil {
		return err
	}
	newClient := ctlClientFactory(socket)
	ctx, cancel := cmdContext()
	defer cancel()
	switch cmd {
	case "list-ports":
		return ctlListPorts(ctx, newClient, out, asJSON)
	case "add-ports":
		return ctlAddPorts(ctx, newClient, out, rest, asJSON)
	case "remove-ports":
		return ctlRemovePorts(ctx, newClient, out, rest)
	case "info":
		return ctlInfo(ctx, newClient, out, asJSON)
	case "help", "h":
		fmt.Fprint(out, ctlUsage)
		return nil
	}
	fmt.Fprintf(os.Stderr, "No help topic for '%s'\n", cmd)
	return exitCode(3)
}

// ctlParseGlobalFlags reads the flags before the command and returns the
// socket and the arguments from the command on. done is true when a flag
// (help, version) was already answered or err is set: ctlRun stops there.
func ctlParseGlobalFlags(args []string, out io.Writer) (socket string, rest []string, done bool, err error) {
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if !strings.HasPrefix(a, "-") {
			break
		}
		if v, has, ok := ctlFlag(a, "socket"); ok {
			if !has {
				if i+1 >= len(args) {
					return "", nil, true, errors.New("flag needs an argument: -socket")
				}
				i++
				v = args[i]
			}
			socket = v
			continue
		}
		if _, _, ok := ctlFlag(a, "debug"); ok {
			continue
		}
		if a == "-h" || a == "--help" || a == "-help" {
			fmt.Fprint(out, ctlUsage)
			return "", nil, true, nil
		}
		if a == "-v" || a == "--version" || a == "-version" {
			fmt.Fprintf(out, "rootlessctl version %s\n", unroot.Version)
			return "", nil, true, nil
		}
		fmt.Fprintf(os.Stderr, "Incorrect Usage: flag provided but not defined: %s\n\n%s", a, ctlUsage)
		return "", nil, true, exitCode(1)
	}
	return socket, args[i:], false, nil
}

// ctlParseCommandFlags reads cmd's flags, which come before its arguments
// as urfave/cli parses them, and returns the arguments after them. done is
// as for ctlParseGlobalFlags.
func ctlParseCommandFlags(cmd string, rest []string, out io.Writer) (asJSON bool, args []string, done bool, err error) {
	j := 0
	for ; j < len(rest); j++ {
		a := rest[j]
		if a == "--" {
			j++
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			break
		}
		if v, has, ok := ctlFlag(a, "json"); ok && (cmd == "list-ports" || cmd == "add-ports" || cmd == "info") {
			asJSON = !has || v == "true" || v == "1"
			continue
		}
		if a == "-h" || a == "--help" {
			fmt.Fprintf(out, "NAME:\n   rootlessctl %s\n", cmd)
			return false, nil, true, nil
		}
		fmt.Fprintf(os.Stderr, "Incorrect Usage: flag provided but not defined: %s\n", a)
		return false, nil, true, exitCode(1)
	}
	return asJSON, rest[j:], false, nil
}

// ctlClientFunc connects to the API. Commands call it only after checking
// their arguments, so a usage error wins over a missing socket.
type ctlClientFunc func() (*client.Client, error)

// ctlClientFactory returns a ctlClientFunc for --socket, or for
// $ROOTLESSKIT_STATE_DIR/api.sock when socket is "".
func ctlClientFactory(socket string) ctlClientFunc {
	return func() (*client.Client, error) {
		if socket == "" {
			sd := os.Getenv("ROOTLESSKIT_STATE_DIR")
			if sd == "" {
				return nil, errors.New("please specify --socket or set $ROOTLESSKIT_STATE_DIR")
			}
			socket = filepath.Join(sd, "api.sock")
		}
		return client.New(socket)
	}
}

// ctlListPorts prints the published ports as a table, or one JSON object a line.
func ctlListPorts(ctx context.Context, newClient ctlClientFunc, out io.Writer, asJSON bool) error {
	c, err := newClient()
	if err != nil {
		return err
	}
	ports, err := c.ListPorts(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		for _, p := range ports {
			b, _ := json.Marshal(p)
			fmt.Fprintln(out, string(b))
		}
		return nil
	}
	w := tabwriter.NewWriter(out, 4, 8, 4, ' ', 0)
	fmt.Fprintln(w, "ID\tPROTO\tPARENTIP\tPARENTPORT\tCHILDIP\tCHILDPORT\t")
	for _, p := range ports {
		fmt.Fprintf(w, "%d\t%s\t%s\t%d\t%s\t%d\t\n", p.ID, p.Spec.Proto, addrOrEmpty(p.Spec.ParentIP), p.Spec.ParentPort, addrOrEmpty(p.Spec.ChildIP), p.Spec.ChildPort)
	}
	return w.Flush()
}

// ctlAddPorts publishes each spec and prints its ID (or its status as
// JSON). All specs are parsed first, so a bad one publishes nothing.
func ctlAddPorts(ctx context.Context, newClient ctlClientFunc, out io.Writer, rest []string, asJSON bool) error {
	if len(rest) < 1 {
		return errors.New("no port specified")
	}
	var specs []port.Spec
	for _, a := range rest {
		s, err := port.ParseSpec(a, port.ParseOptions{})
		if err != nil {
			return err
		}
		specs = append(specs, s)
	}
	c, err := newClient()
	if err != nil {
		return err
	}
	for _, s := range specs {
		st, err := c.AddPort(ctx, s)
		if err != nil {
			return err
		}
		if asJSON {
			b, _ := json.Marshal(st)
			fmt.Fprintln(out, string(b))
		} else {
			fmt.Fprintf(out, "%d\n", st.ID)
		}
	}
	return nil
}

// ctlRemovePorts unpublishes each ID and prints it. All IDs are parsed
// first, so a bad one removes nothing.
func ctlRemovePorts(ctx context.Context, newClient ctlClientFunc, out io.Writer, rest []string) error {
	if len(rest) < 1 {
		return errors.New("no ID specified")
	}
	var ids []int
	for _, a := range rest {
		id, err := strconv.Atoi(a)
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	c, err := newClient()
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := c.RemovePort(ctx, id); err != nil {
			return err
		}
		fmt.Fprintf(out, "%d\n", id)
	}
	return nil
}

// ctlInfo prints the API's info, as rootlessctl's list or as indented JSON.
func ctlInfo(ctx context.Context, newClient ctlClientFunc, out io.Writer, asJSON bool) error {
	c, err := newClient()
	if err != nil {
		return err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		b, _ := json.MarshalIndent(info, "", "    ")
		fmt.Fprintln(out, string(b))
		return nil
	}
	ctlPrintInfo(out, info)
	return nil
}

func ctlPrintInfo(w io.Writer, info *api.Info) {
	fmt.Fprintf(w, "- REST API version: %s\n", info.APIVersion)
	fmt.Fprintf(w, "- Implementation version: %s\n", info.Version)
	fmt.Fprintf(w, "- State Directory: %s\n", info.StateDir)
	fmt.Fprintf(w, "- Child PID: %d\n", info.ChildPID)
	if nd := info.NetworkDriver; nd != nil {
		fmt.Fprintf(w, "- Network Driver: %s\n", nd.Driver)
		fmt.Fprintf(w, "  - DNS: %v\n", nd.DNS)
		if ip := net.ParseIP(nd.ChildIP); ip != nil {
			fmt.Fprintf(w, "  - IP: %v\n", ip)
		}
	}
	if pd := info.PortDriver; pd != nil {
		fmt.Fprintf(w, "- Port Driver: %s\n", pd.Driver)
		fmt.Fprintf(w, "  - Supported protocols: %v\n", pd.Protos)
	}
}

// addrOrEmpty prints an address as rootlessctl does: "" for none.
func addrOrEmpty(ip netip.Addr) string {
	if !ip.IsValid() {
		return ""
	}
	return ip.String()
}
