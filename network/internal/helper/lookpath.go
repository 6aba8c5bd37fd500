package helper

import (
	"errors"
	"fmt"
	"os/exec"

	"github.com/unroot/unroot/internal/operr"
)

// Binary names a helper program and how a user gets it or does without it.
type Binary struct {
	Name    string // program name looked up in PATH, e.g. "slirp4netns"
	Flag    string // flag that overrides the path, e.g. "--slirp4netns-binary"
	Package string // Debian package that ships it
	// Other is the other helper-based driver (its program, package and --net
	// value), offered as a way out together with the built-in netstack.
	Other, OtherPackage, OtherNet string
}

// LookPath finds the helper: override when set, else b.Name in PATH. When it
// is missing the error says which package to install and which drivers would
// work instead, since that is what the user has to decide.
func LookPath(b Binary, override string) (string, error) {
	name := override
	if name == "" {
		name = b.Name
	}
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	if override != "" {
		return "", operr.Errorf(operr.Helper, b.Name, "%s binary %s: %w: fix %s", b.Name, override, rootCause(err), b.Flag)
	}
	// netstack is the CLI's embedded network: it needs no package.
	alt := fmt.Sprintf("--net=%s (apt-get install %s) or --net=netstack (built in)", b.OtherNet, b.OtherPackage)
	if _, err := exec.LookPath(b.Other); err == nil {
		alt = fmt.Sprintf("--net=%s (installed) or --net=netstack (built in)", b.OtherNet)
	}
	return "", &operr.Error{Op: operr.Helper, Subject: b.Name, Err: exec.ErrNotFound,
		Msg: fmt.Sprintf("%s not found in PATH: install it (apt-get install %s), or use %s", b.Name, b.Package, alt)}
}

// rootCause strips exec's and stat's wrapping ("exec: \"x\": stat x: ...")
// so the message names the cause once.
func rootCause(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}
