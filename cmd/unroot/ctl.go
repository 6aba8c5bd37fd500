package main

import (
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
	var socket string
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
					return errors.New("flag needs an argument: -socket")
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
			return nil
		}
		if a == "-v" || a == "--version" || a == "-version" {
			fmt.Fprintf(out, "rootlessctl version %s\n", unroot.Version)
			return nil
		}
		fmt.Fprintf(os.Stderr, "Incorrect Usage: flag provided but not defined: %s\n\n%s", a, ctlUsage)
		return exitCode(1)
	}
	if i >= len(args) {
		fmt.Fprint(out, ctlUsage)
		return nil
	}
	cmd, rest := args[i], args[i+1:]
	// Command flags come before the arguments, as urfave/cli parses them.
	asJSON := false
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
			return nil
		}
		fmt.Fprintf(os.Stderr, "Incorrect Usage: flag provided but not defined: %s\n", a)
		return exitCode(1)
	}
	rest = rest[j:]
	newClient := func() (*client.Client, error) {
		if socket == "" {
			sd := os.Getenv("ROOTLESSKIT_STATE_DIR")
			if sd == "" {
				return nil, errors.New("please specify --socket or set $ROOTLESSKIT_STATE_DIR")
			}
			socket = filepath.Join(sd, "api.sock")
		}
		return client.New(socket)
	}
	ctx, cancel := cmdContext()
	defer cancel()
	switch cmd {
	case "list-ports":
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
	case "add-ports":
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
	case "remove-ports":
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
	case "info":
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
	case "help", "h":
		fmt.Fprint(out, ctlUsage)
		return nil
	}
	fmt.Fprintf(os.Stderr, "No help topic for '%s'\n", cmd)
	return exitCode(3)
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
