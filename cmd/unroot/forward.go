package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/unroot/unroot/api/client"
	"github.com/unroot/unroot/forward"
)

// registerForward adds unroot run's --forward (RootlessKit has none).
func registerForward(fs *pflag.FlagSet, dst *[]string, p personality) {
	if p != asUnroot {
		return
	}
	fs.Var((*specList)(dst), "forward", `make a host service reachable inside on a port of the namespace: HOSTADDR:HOSTPORT:NSPORT[/tcp|udp] (e.g. "127.0.0.1:5000:5000/tcp") or /HOST/UNIX.sock:NSPORT; the command connects to 127.0.0.1:NSPORT (or the tap address) and reaches that service only`)
	fs.SetAnnotation("forward", categoryKey, []string{"Port"})
}

func parseForwards(args []string) ([]forward.Spec, error) {
	var out []forward.Spec
	for _, a := range args {
		sp, err := forward.ParseSpec(a)
		if err != nil {
			return nil, fmt.Errorf("--forward: %w", err)
		}
		out = append(out, sp)
	}
	return out, nil
}

// forwardsHint explains a 404 on /v1/forwards: a launcher without them.
func forwardsHint(err error) error {
	var ae *client.Error
	if errors.As(err, &ae) && strings.Contains(ae.Message, "404") {
		return fmt.Errorf("%w: this launcher has no reverse forwarding (RootlessKit, or unroot with --net=host, where the host's services are reachable as they are)", err)
	}
	return err
}

func newForwardCommand(stateDir *string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "forward",
		Short: "List, add and remove reverse forwards: host services reachable inside",
		Long: `A reverse forward makes one host service reachable inside the namespace on a
port of its own, with the host's loopback otherwise cut off:
  unroot ports forward add 127.0.0.1:5000:5000/tcp   (a registry on the host)
  unroot ports forward add /run/user/1000/db.sock:5432
Inside, connect to 127.0.0.1:NSPORT (or the tap address).`,
	}
	list := newListCommand(stateDir, "List reverse forwards", (*client.Client).ListForwards, forwardsHint, printForwards)
	var addJSON bool
	add := &cobra.Command{
		Use:   "add [--json] HOSTADDR:HOSTPORT:NSPORT[/PROTO]|/HOST/SOCKET:NSPORT...",
		Short: "Forward host services to ports inside; prints each new ID",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			specs, err := parseForwards(args)
			if err != nil {
				return err
			}
			return addEach(*stateDir, specs, addJSON, func(ctx context.Context, c *client.Client, sp forward.Spec) (any, int, error) {
				st, err := c.AddForward(ctx, sp)
				if err != nil {
					return nil, 0, fmt.Errorf("forward %s: %w", sp, forwardsHint(err))
				}
				if st.Warning != "" {
					fmt.Fprintln(os.Stderr, "unroot: warning: "+st.Warning)
				}
				return st, st.ID, nil
			})
		},
	}
	add.Flags().BoolVar(&addJSON, "json", false, "print each new forward as JSON {id, spec}")
	remove := &cobra.Command{
		Use:     "remove ID...",
		Aliases: []string{"rm"},
		Short:   "Stop reverse forwards by ID; prints each ID removed",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return removeEach(*stateDir, args, func(ctx context.Context, c *client.Client, id int) error {
				if err := c.RemoveForward(ctx, id); err != nil {
					return fmt.Errorf("remove forward %d: %w", id, forwardsHint(err))
				}
				return nil
			})
		},
	}
	cmd.AddCommand(list, add, remove)
	return cmd
}

func printForwards(w io.Writer, list []forward.Status) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPROTO\tHOST\tINSIDE")
	for _, f := range list {
		fmt.Fprintf(tw, "%d\t%s\t%s\t*:%d\n", f.ID, f.Spec.Proto, f.Spec.Host(), f.Spec.NSPort)
	}
	return tw.Flush()
}
