// Command unroot runs daemons and commands as an ordinary user inside user,
// mount, network and PID namespaces. The one binary answers, by the name it
// is invoked under, as unroot, rootlesskit (RootlessKit's exact flags),
// rootlessctl and rootlesskit-docker-proxy.
package main

import (
	"os"
	"path/filepath"

	"github.com/unroot/unroot"
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
		return ctlMain(args)
	case "rootlesskit-docker-proxy":
		return dockerProxy(args)
	}
	return unrootMain(args)
}
