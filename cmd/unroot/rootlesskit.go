package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/unroot/unroot"
)

// rootlesskitMain is the rootlesskit personality: RootlessKit's flags,
// defaults, grammar, messages and exit codes.
func rootlesskitMain(args []string) int {
	printErr := func(err error) { fmt.Fprintf(os.Stderr, "[rootlesskit:parent] error: %v\n", err) }
	var o opts
	fs := pflag.NewFlagSet("rootlesskit", pflag.ContinueOnError)
	fs.SetOutput(devNull{})
	register(fs, &o, asRootlesskit)
	help := fs.BoolP("help", "h", false, "show help")
	version := fs.BoolP("version", "v", false, "print the version")
	fs.SetAnnotation("help", categoryKey, []string{"Misc"})
	fs.SetAnnotation("version", categoryKey, []string{"Misc"})
	command, err := parse(fs, args)
	if err != nil {
		// Go's flag package, which RootlessKit's parser uses, names
		// flags with one dash.
		msg := strings.Replace(err.Error(), "not defined: --", "not defined: -", 1)
		fmt.Fprintf(os.Stderr, "%s (see rootlesskit --help)\n", msg)
		return 1
	}
	switch {
	case *help:
		fmt.Print(rootlesskitHelp(fs))
		return 0
	case *version:
		fmt.Printf("rootlesskit version %s\n", unroot.Version)
		return 0
	case o.printSemver != "":
		v, err := semverPart(unroot.Version, o.printSemver)
		if err != nil {
			printErr(err)
			return 1
		}
		fmt.Println(v)
		return 0
	}
	return launch(&o, command, asRootlesskit, printErr)
}

func rootlesskitHelp(fs *pflag.FlagSet) string {
	return `NAME:
   rootlesskit - Linux-native fakeroot using user namespaces

USAGE:
   rootlesskit [global options] [arguments...]

VERSION:
   ` + unroot.Version + `

DESCRIPTION:
   RootlessKit is a Linux-native implementation of "fake root" using user_namespaces(7).
   This rootlesskit is unroot (https://github.com/unroot/unroot), a drop-in replacement.

   Web site: https://github.com/unroot/unroot

   Note: RootlessKit requires /etc/subuid and /etc/subgid to be configured by the real root user.

GLOBAL OPTIONS:
` + formatHelp(fs)
}

// semverPart prints major, minor or patch of v.
func semverPart(v, part string) (string, error) {
	core, _, _ := strings.Cut(v, "+")
	core, _, _ = strings.Cut(core, "-")
	f := strings.Split(core, ".")
	idx := map[string]int{"major": 0, "minor": 1, "patch": 2}
	i, ok := idx[part]
	if !ok || len(f) != 3 {
		return "", fmt.Errorf("--print-semver %q: must be major, minor or patch", part)
	}
	return f[i], nil
}

type devNull struct{}

func (devNull) Write(b []byte) (int, error) { return len(b), nil }
