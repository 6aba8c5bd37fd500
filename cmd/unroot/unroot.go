package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/unroot/unroot"
)

// unrootMain is the native personality: `unroot run`, `version`, `doctor`,
// `ports`, `info` and `systemd`.
func unrootMain(args []string) int {
	root := &cobra.Command{
		Use:           "unroot",
		Short:         "Run daemons and commands as an ordinary user in user, mount, network and PID namespaces",
		SilenceUsage:  true,
		SilenceErrors: true,
		// `unroot --version` as `unroot version`.
		Version: unroot.Version,
	}
	root.SetVersionTemplate("unroot version {{.Version}}\n")
	root.AddCommand(newRunCommand(), newVersionCommand(), newDoctorCommand(), newPortsCommand(), newInfoCommand(), newSystemdCommand())
	root.SetArgs(args)
	err := root.Execute()
	var ex exitCode
	if errors.As(err, &ex) {
		return int(ex)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "unroot: %v\n", err)
		return 1
	}
	return 0
}

// exitCode lets a command finish with a status without another message.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func newRunCommand() *cobra.Command {
	var o opts
	cmd := &cobra.Command{
		Use:   "run [flags] [--] COMMAND [ARG...]",
		Short: "Run COMMAND in new namespaces (RootlessKit's flags, friendlier defaults)",
		Long: `Run COMMAND as uid 0 in new user, mount, PID and network namespaces.

Your uid and gid become 0 inside, followed by your ranges from /etc/subuid and
/etc/subgid. By default the network is user-mode (--net=auto: pasta, then
slirp4netns, then the embedded netstack), /etc is copied up so it is writable
inside, and ports given with -p are forwarded from the host by the builtin
driver. The state directory ($ROOTLESSKIT_STATE_DIR inside) holds child_pid,
api.sock (the RootlessKit REST API) and, with --detach-netns, netns.

Flags must come before COMMAND; everything after it is passed unchanged.`,
		DisableFlagParsing: true,
		SilenceUsage:       true,
		RunE: func(cmd *cobra.Command, args []string) error {
			fs := cmd.Flags()
			command, err := parse(fs, args)
			if err != nil {
				return fmt.Errorf("%v (see unroot run --help)", err)
			}
			if h, _ := fs.GetBool("help"); h {
				return cmd.Help()
			}
			code := launch(&o, command, asUnroot, func(err error) { fmt.Fprintf(os.Stderr, "unroot: %v\n", err) })
			if code != 0 {
				return exitCode(code)
			}
			return nil
		},
	}
	register(cmd.Flags(), &o, asUnroot)
	cmd.Flags().BoolP("help", "h", false, "help for run")
	return cmd
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, args []string) {
			fmt.Printf("unroot version %s\n", unroot.Version)
		},
	}
}
