package main

import (
	"github.com/spf13/pflag"

	"github.com/unroot/unroot"
	"github.com/unroot/unroot/api"
)

// bypassOpts are the --bypass flags (both personalities: RootlessKit has
// none of its own, and scripts that do not pass them see no change).
type bypassOpts struct {
	mode   string
	ignore []string
}

// unrootExtensions are flags the rootlesskit personality accepts beyond
// RootlessKit's own, hidden from its --help so that scripts parsing it see
// RootlessKit's list.
var unrootExtensions = []string{"bypass", "bypass-ignore", "on-network-failure"}

func registerBypass(fs *pflag.FlagSet, o *bypassOpts, p personality) {
	fs.StringVar(&o.mode, "bypass", "false", "hand the namespace's sockets to the host kernel: published ports and outbound connections skip the relay (see docs/bypass.md) [true, false, auto (warn and relay where the kernel refuses)]")
	fs.Lookup("bypass").NoOptDefVal = "true"
	fs.StringSliceVar(&o.ignore, "bypass-ignore", nil, "destinations (CIDR,...) that --bypass never hands to the host, besides the namespace's own networks and loopback")
	for _, n := range unrootExtensions {
		fs.SetAnnotation(n, categoryKey, []string{"Network"})
		if p == asRootlesskit {
			fs.MarkHidden(n)
		}
	}
}

// bypassConfig turns the flags into the launcher's Bypass.
func bypassConfig(o *opts) (unroot.Bypass, error) {
	mode, err := unroot.ParseBypassMode(o.bypass.mode)
	if err != nil {
		return unroot.Bypass{}, err
	}
	ignore, err := unroot.ParseBypassIgnore(o.bypass.ignore)
	if err != nil {
		return unroot.Bypass{}, err
	}
	return unroot.Bypass{Mode: mode, Ignore: ignore, HostLoopback: !o.disableHostLoopback}, nil
}

// bypassLine is `unroot info`'s line for --bypass.
func bypassLine(b *api.BypassInfo) string {
	switch {
	case b == nil:
		return "off"
	case b.Enabled:
		return "on (sockets are handed to the host kernel)"
	case b.Reason != "":
		return "off (--bypass=" + b.Mode + ": " + b.Reason + ")"
	}
	return "off (--bypass=" + b.Mode + ")"
}
