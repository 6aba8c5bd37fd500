package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
)

// RootlessKit 3.3 added the pesto port driver (pasta's own port
// forwarding, driven by the pesto tool) and a choice of firewall for
// source-IP transparency. unroot accepts both flags and answers as
// RootlessKit does where a requirement is missing.

// pestoDriver checks --port-driver=pesto the way RootlessKit 3.3 does and
// then refuses it: unroot has no pesto driver.
func pestoDriver(o *opts, netName string) error {
	if netName != "pasta" {
		return errors.New(`port driver "pesto" requires --net=pasta`)
	}
	// RootlessKit's pasta driver checks this first: pesto configures pasta
	// through its --conf-path socket.
	if out, _ := exec.Command(o.pastaBinary, "--help").CombinedOutput(); !strings.Contains(string(out), "--conf-path") {
		return errors.New(`port driver "pesto" requires pasta with --conf-path support (passt >= 2026_05_07.1afd4ed)`)
	}
	if _, err := exec.LookPath(o.pestoBinary); err != nil {
		// RootlessKit returns exec's error unchanged.
		return err
	}
	return errors.New(`port driver "pesto" is not supported by unroot: use --port-driver=implicit (pasta forwards every port the command binds) or, with unroot run, --port-driver=builtin`)
}

// transparentBackend checks --source-ip-transparent-backend and returns
// the builtin driver's Firewall. The connmark rules (for child IPs that
// are not loopback) are made with the firewall named; "auto" takes
// iptables, else nft. As in RootlessKit, "nft" where nft is missing turns
// transparency off with a warning.
func transparentBackend(o *opts, log *slog.Logger) (string, error) {
	switch b := o.sourceIPTransparentBackend; b {
	case "", "auto", "iptables":
		return b, nil
	case "nft":
		if !o.sourceIPTransparent {
			return b, nil
		}
		if _, err := exec.LookPath("nft"); err != nil {
			log.Warn(fmt.Sprintf("source IP transparent (nft): nft not found, disabling: %v", err))
			o.sourceIPTransparent = false
		}
		return b, nil
	}
	return "", fmt.Errorf("unknown source-ip-transparent-backend: %s", o.sourceIPTransparentBackend)
}
