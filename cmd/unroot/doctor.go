package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/unroot/unroot/doctor"
)

func newDoctorCommand() *cobra.Command {
	var (
		asJSON bool
		net    string
	)
	cmd := &cobra.Command{
		Use:   "doctor [--json] [--net=DRIVER]",
		Short: "Check this host for what unroot needs, and print how to fix what is missing",
		Long: `Check this host for what unroot needs, as the user running it: user
namespaces (sysctls, AppArmor), subordinate ids, newuidmap/newgidmap,
/dev/net/tun, slirp4netns and pasta, iptables in a namespace, cgroup v2
delegation, XDG_RUNTIME_DIR and lingering, and the port and ping sysctls.
Each check tries the real operation where it can.

One line per check: ok, warn or FAIL, what was found, and the exact command
that fixes it. Exits 1 when something keeps unroot from running.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res := doctor.Run(ctx, doctor.Default(doctor.Options{Net: net})...)
			write := doctor.WriteText
			if asJSON {
				write = doctor.WriteJSON
			}
			if err := write(os.Stdout, res); err != nil {
				return err
			}
			if doctor.Blocking(res) {
				return exitCode(1)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the results as a JSON array of {name, status, detail, fix}")
	cmd.Flags().StringVar(&net, "net", "", "the network driver you mean to use (slirp4netns, pasta, netstack, host, none); a missing helper fails only when it is the one asked for")
	return cmd
}
