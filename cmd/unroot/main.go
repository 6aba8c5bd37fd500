// Command unroot runs daemons and commands as an ordinary user inside user,
// mount, network and PID namespaces. The one binary answers, by the name it
// is invoked under, as unroot, rootlesskit (RootlessKit's exact flags),
// rootlessctl and rootlesskit-docker-proxy.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/unroot/unroot"
)

// Registration points for commands other packages of this binary add from
// their own files (ports, info, doctor, systemd...), so this file needs no
// edit when they land:
//
//	func init() { extraCommands = append(extraCommands, newDoctorCommand) }
var extraCommands []func() *cobra.Command

// rootlessctlMain and dockerProxyMain are the rootlessctl and
// rootlesskit-docker-proxy personalities; set from the files that implement
// them (cmd/unroot/ctl*.go, cmd/unroot/dockerproxy*.go). They return the
// exit status.
var (
	rootlessctlMain func(args []string) int
	dockerProxyMain func(args []string) int
)

func main() {
	if unroot.Init() {
		return
	}
	os.Exit(dispatch(filepath.Base(os.Args[0]), os.Args[1:]))
}

func dispatch(name string, args []string) int {
	switch name {
	case "rootlesskit":
		return rootlesskitMain(args)
	case "rootlessctl":
		if rootlessctlMain == nil {
			fmt.Fprintln(os.Stderr, "error: rootlessctl is not built into this binary")
			return 1
		}
		return rootlessctlMain(args)
	case "rootlesskit-docker-proxy":
		if dockerProxyMain == nil {
			fmt.Fprintln(os.Stderr, "error: rootlesskit-docker-proxy is not built into this binary")
			return 1
		}
		return dockerProxyMain(args)
	}
	return unrootMain(args)
}
