package childinit

// The network as the command sees it: devices configured from the
// driver's Setup and the state directory's resolv.conf and hosts bound
// over /etc's.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/unroot/unroot/internal/netconf"
	"github.com/unroot/unroot/internal/operr"
	"github.com/unroot/unroot/internal/statedir"
	"github.com/unroot/unroot/internal/sys"
	"github.com/unroot/unroot/network"
)

// configureNet brings the devices up as the driver's Setup says (unless
// stage 1 addressed them already); the launcher writes resolv.conf and
// hosts in STATE.
func configureNet(cfg Config, s network.Setup, w *netnsWorker, addressed bool) error {
	if cfg.PrivateNet && !addressed {
		if err := w.Do(func() error {
			_, err := netconf.Up(s)
			return err
		}); err != nil {
			return operr.Wrap(operr.Netlink, s.IfName, err)
		}
	}
	return nil
}

// publishNetFiles binds STATE's resolv.conf and hosts over /etc's. It runs
// after prepareMounts: the binds land on the copied-up /etc.
func publishNetFiles(cfg Config, s network.Setup) error {
	if !cfg.PrivateNet || len(s.DNS) == 0 || cfg.DetachNetNS {
		// No DNS to publish, or the command is not in the detached netns
		// (the files are for nsenter users).
		return nil
	}
	etcCopied := slices.ContainsFunc(cfg.CopyUp, func(d string) bool { return filepath.Clean(d) == "/etc" })
	for _, name := range []string{statedir.ResolvConf, statedir.Hosts} {
		if err := bindNetFile(filepath.Join(cfg.StateDir, name), "/etc/"+name, etcCopied); err != nil {
			return err
		}
	}
	return nil
}

// sameLink reports whether the device name still has index idx.
func sameLink(w *netnsWorker, name string, idx int) bool {
	var now int
	err := w.Do(func() (err error) { now, err = sys.IfIndex(name); return })
	return err == nil && now == idx
}

// sameSetup reports whether two set-ups configure the devices alike.
func sameSetup(a, b network.Setup) bool {
	return a.IfName == b.IfName && a.Addr == b.Addr && a.Gateway == b.Gateway &&
		slices.Equal(a.DNS, b.DNS) && a.MTU == b.MTU && a.Addr6 == b.Addr6 &&
		a.Gateway6 == b.Gateway6 && a.ConfiguredByDriver == b.ConfiguredByDriver
}

// bindNetFile mounts the state-dir copy over /etc/NAME. In a copied-up /etc
// the entry is a symlink to the host's file; it is replaced by an empty file
// first so the bind mount lands on our tmpfs, not on the host file.
func bindNetFile(src, dst string, etcCopied bool) error {
	if etcCopied {
		os.Remove(dst)
		if err := os.WriteFile(dst, nil, 0o644); err != nil {
			return fmt.Errorf("create %s in the copied-up /etc: %w", dst, err)
		}
	} else if _, err := os.Stat(dst); err != nil {
		return nil // nothing to cover; the host has no such file
	}
	if err := sys.Mount(src, dst, "", sys.MS_BIND, ""); err != nil {
		return operr.Errorf(operr.Mount, dst, "bind %s on %s: %w", src, dst, err)
	}
	return nil
}
