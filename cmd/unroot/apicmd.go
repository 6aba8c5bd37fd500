package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/unroot/unroot/api/client"
)

// The list, add and remove subcommands of `unroot ports` and `unroot ports
// forward` differ only in the API call, the hint on failure and the table;
// the helpers below are the rest, written once.

// withAPI runs fn with a client for the launcher's api.sock and a context
// that ends on SIGINT or SIGTERM.
func withAPI(stateDir string, fn func(context.Context, *client.Client) error) error {
	c, err := apiClient(stateDir)
	if err != nil {
		return err
	}
	ctx, cancel := cmdContext()
	defer cancel()
	return fn(ctx, c)
}

// newListCommand is "list [--json]": what list returns, as a table or as a
// JSON array ([] when empty, never null); hint explains a failed call.
func newListCommand[T any](stateDir *string, short string,
	list func(*client.Client, context.Context) ([]T, error),
	hint func(error) error, table func(io.Writer, []T) error) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--json]",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAPI(*stateDir, func(ctx context.Context, c *client.Client) error {
				l, err := list(c, ctx)
				if err != nil {
					return hint(err)
				}
				if asJSON {
					if l == nil {
						l = []T{}
					}
					return printJSON(os.Stdout, l, "  ")
				}
				return table(os.Stdout, l)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of {id, spec}")
	return cmd
}

// addEach adds the specs in turn through add, which returns the new status
// and its ID, and prints each ID (with asJSON, each status as one JSON line);
// it stops at the first error, which add has worded.
func addEach[S any](stateDir string, specs []S, asJSON bool,
	add func(context.Context, *client.Client, S) (status any, id int, err error)) error {
	return withAPI(stateDir, func(ctx context.Context, c *client.Client) error {
		for _, s := range specs {
			st, id, err := add(ctx, c, s)
			if err != nil {
				return err
			}
			if asJSON {
				if err := printJSON(os.Stdout, st, ""); err != nil {
					return err
				}
				continue
			}
			fmt.Println(id)
		}
		return nil
	})
}

// removeEach parses args as IDs and removes them in turn through remove,
// printing each ID removed; it stops at the first error, which remove has
// worded.
func removeEach(stateDir string, args []string, remove func(context.Context, *client.Client, int) error) error {
	ids, err := parseIDs(args)
	if err != nil {
		return err
	}
	return withAPI(stateDir, func(ctx context.Context, c *client.Client) error {
		for _, id := range ids {
			if err := remove(ctx, c, id); err != nil {
				return err
			}
			fmt.Println(id)
		}
		return nil
	})
}
