package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/unroot/unroot/api"
	"github.com/unroot/unroot/api/client"
	"github.com/unroot/unroot/port"
)

// apiClient finds api.sock from --state-dir or $ROOTLESSKIT_STATE_DIR.
func apiClient(stateDir string) (*client.Client, error) {
	if stateDir == "" {
		stateDir = os.Getenv("ROOTLESSKIT_STATE_DIR")
	}
	if stateDir == "" {
		return nil, errors.New("no state directory: pass --state-dir DIR (the one given to unroot run or rootlesskit) or set ROOTLESSKIT_STATE_DIR (set for commands inside)")
	}
	return client.New(filepath.Join(stateDir, "api.sock"))
}

// portsHint adds what to do to the API's bare "no PortDriver is available".
func portsHint(err error) error {
	var ae *client.Error
	if errors.As(err, &ae) && ae.Message == port.ErrNoDriver.Error() {
		return fmt.Errorf("%w: the launcher runs with --port-driver=none (or implicit, where pasta forwards by itself); restart it with --port-driver=builtin to publish ports", err)
	}
	return err
}

func cmdContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func newPortsCommand() *cobra.Command {
	var stateDir string
	cmd := &cobra.Command{
		Use:   "ports",
		Short: "List, publish and unpublish ports of a running unroot or rootlesskit",
		Long: `List, publish and unpublish ports of a running unroot (or RootlessKit) through
its REST API, STATE/api.sock. The state directory comes from --state-dir or
$ROOTLESSKIT_STATE_DIR, which commands inside the namespaces have set.`,
	}
	cmd.PersistentFlags().StringVar(&stateDir, "state-dir", "", "state directory of the running launcher (default $ROOTLESSKIT_STATE_DIR)")

	list := newListCommand(&stateDir, "List published ports", (*client.Client).ListPorts, portsHint, printPorts)

	var addJSON bool
	add := &cobra.Command{
		Use:   "add [--json] [PARENTIP:]PARENTPORT[:CHILDIP]:CHILDPORT[/PROTO]...",
		Short: "Publish ports (several per argument with commas); prints each new ID",
		Long: `Publish ports. The parent IP may be left out (all addresses), the child IP
defaults to 127.0.0.1 (::1 for tcp6/udp6) inside, and the proto to tcp:
  unroot ports add 8080:80  127.0.0.1:5353:53/udp  [::1]:8443:443/tcp6`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var specs []port.Spec
			for _, a := range args {
				s, err := port.ParseSpecs(a, port.ParseOptions{Lenient: true})
				if err != nil {
					return err
				}
				specs = append(specs, s...)
			}
			return addEach(stateDir, specs, addJSON, func(ctx context.Context, c *client.Client, s port.Spec) (any, int, error) {
				st, err := c.AddPort(ctx, s)
				if err != nil {
					return nil, 0, fmt.Errorf("add %s: %w", specString(s), portsHint(err))
				}
				return st, st.ID, nil
			})
		},
	}
	add.Flags().BoolVar(&addJSON, "json", false, "print each new port as JSON {id, spec}")

	remove := &cobra.Command{
		Use:     "remove ID...",
		Aliases: []string{"rm"},
		Short:   "Unpublish ports by ID; prints each ID removed",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return removeEach(stateDir, args, func(ctx context.Context, c *client.Client, id int) error {
				if err := c.RemovePort(ctx, id); err != nil {
					if err = portsHint(err); strings.HasPrefix(err.Error(), "unknown id") {
						err = fmt.Errorf("%w (unroot ports list shows the IDs)", err)
					}
					return fmt.Errorf("remove port %d: %w", id, err)
				}
				return nil
			})
		},
	}
	cmd.AddCommand(list, add, remove, newForwardCommand(&stateDir))
	return cmd
}

func parseIDs(args []string) ([]int, error) {
	var ids []int
	for _, a := range args {
		id, err := strconv.Atoi(a)
		if err != nil || id < 1 {
			return nil, fmt.Errorf("bad port ID %q: want a number from the ID column of the port list", a)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// specString shows a spec as `unroot ports` does: "tcp *:8080 -> 127.0.0.1:80".
func specString(s port.Spec) string {
	return fmt.Sprintf("%s %s -> %s", s.Proto, s.ParentString(), s.ChildTarget())
}

func printPorts(w io.Writer, ports []port.Status) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPROTO\tPARENT\tCHILD")
	for _, p := range ports {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", p.ID, p.Spec.Proto, p.Spec.ParentString(), p.Spec.ChildTarget())
	}
	return tw.Flush()
}

func printJSON(w io.Writer, v any, indent string) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", indent)
	return enc.Encode(v)
}

func newInfoCommand() *cobra.Command {
	var (
		stateDir string
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "info [--json]",
		Short: "Show what a running unroot (or rootlesskit) reports about itself",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAPI(stateDir, func(ctx context.Context, c *client.Client) error {
				info, err := c.Info(ctx)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(os.Stdout, info, "  ")
				}
				return printInfo(os.Stdout, info)
			})
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", "", "state directory of the running launcher (default $ROOTLESSKIT_STATE_DIR)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	return cmd
}

func printInfo(w io.Writer, info *api.Info) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "API version\t%s\n", info.APIVersion)
	fmt.Fprintf(tw, "Version\t%s\n", info.Version)
	fmt.Fprintf(tw, "State directory\t%s\n", info.StateDir)
	fmt.Fprintf(tw, "Child PID\t%d\n", info.ChildPID)
	if nd := info.NetworkDriver; nd != nil {
		fmt.Fprintf(tw, "Network driver\t%s\n", nd.Driver)
		if nd.ChildIP != "" {
			fmt.Fprintf(tw, "Child IP\t%s\n", nd.ChildIP)
		}
		if len(nd.DNS) > 0 {
			fmt.Fprintf(tw, "DNS\t%s\n", strings.Join(nd.DNS, ", "))
		}
	} else {
		fmt.Fprintf(tw, "Network driver\thost\n")
	}
	if h := info.Health; h != nil && h.Network != nil {
		line := fmt.Sprintf("%s, %d restarts", h.Network.State, h.Network.Restarts)
		if h.Network.Restarts == 1 {
			line = strings.TrimSuffix(line, "s")
		}
		if h.Network.LastError != "" {
			line += "; last error: " + h.Network.LastError
		}
		fmt.Fprintf(tw, "Network health\t%s\n", line)
	}
	if pd := info.PortDriver; pd != nil {
		fmt.Fprintf(tw, "Port driver\t%s\n", pd.Driver)
		fmt.Fprintf(tw, "Protocols\t%s\n", strings.Join(pd.Protos, ", "))
		if pd.DisallowLoopbackChildIP {
			fmt.Fprintf(tw, "Loopback child IPs\tnot allowed\n")
		}
	} else {
		fmt.Fprintf(tw, "Port driver\tnone\n")
	}
	fmt.Fprintf(tw, "Bypass\t%s\n", bypassLine(info.Bypass))
	return tw.Flush()
}
