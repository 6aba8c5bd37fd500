// Package operr types the start-up failures that doctor diagnoses: which
// operation the host refused (Op), what it was applied to (Subject) and
// the cause (an errno, an *exec.Error, exec.ErrNotFound…). Code that
// touches the host wraps its errors with Wrap or Errorf where they arise;
// doctor.Explain matches Op with errors.As and the cause with errors.Is,
// never the text, so rewording a message keeps its diagnosis.
//
// The namespace init's errors reach the launcher as text over a socket;
// Fields and FromPeer carry the operation, the subject and the errno
// across, so they arrive as the same types.
package operr

import (
	"errors"
	"fmt"
	"syscall"
)

// Op is an operation doctor knows how to diagnose.
type Op string

const (
	// UserNS is creating or entering the namespaces: the clone, the
	// init's re-exec, unshare of a detached netns, the host's userns
	// settings.
	UserNS Op = "userns"
	// IDMap is looking up subordinate ids and writing the id maps
	// (newuidmap, newgidmap, uid_map).
	IDMap Op = "idmap"
	// Tun is opening /dev/net/tun or creating a tap device.
	Tun Op = "tun"
	// Helper is finding a network helper (slirp4netns, pasta); Subject
	// names it.
	Helper Op = "helper"
	// IPTables is running iptables in the namespace.
	IPTables Op = "iptables"
	// Cgroup is cgroup2 evacuation and the cgroup mounts.
	Cgroup Op = "cgroup"
	// Listen is a published port's bind or listen on the host.
	Listen Op = "listen"
	// Mount is a mount inside the namespaces: propagation, /proc, /sys,
	// copy-up, the network files' binds.
	Mount Op = "mount"
	// Netlink is configuring the namespace's devices, addresses and
	// routes.
	Netlink Op = "netlink"
)

// Ops lists every Op, for tests that cover them all.
var Ops = []Op{UserNS, IDMap, Tun, Helper, IPTables, Cgroup, Listen, Mount, Netlink}

// Error is a failure of Op on Subject. Its message is Msg when set, else
// Err's; it unwraps to Err.
type Error struct {
	Op      Op
	Subject string
	Msg     string
	Err     error
}

func (e *Error) Error() string {
	if e.Msg != "" || e.Err == nil {
		return e.Msg
	}
	return e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Wrap tags err with op and subject, keeping its message; nil stays nil.
func Wrap(op Op, subject string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Op: op, Subject: subject, Err: err}
}

// Errorf is fmt.Errorf tagged with op and subject.
func Errorf(op Op, subject, format string, args ...any) error {
	return &Error{Op: op, Subject: subject, Err: fmt.Errorf(format, args...)}
}

// All lists every *Error in err's tree, outermost first.
func All(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		for err != nil {
			if e, ok := err.(*Error); ok {
				out = append(out, e)
			}
			switch u := err.(type) {
			case interface{ Unwrap() []error }:
				for _, inner := range u.Unwrap() {
					walk(inner)
				}
				return
			case interface{ Unwrap() error }:
				err = u.Unwrap()
			default:
				return
			}
		}
	}
	walk(err)
	return out
}

// Fields is what crosses a process boundary with an error's text: the
// innermost operation and subject, and the errno, if any.
func Fields(err error) (op Op, subject string, errno int) {
	if all := All(err); len(all) > 0 {
		e := all[len(all)-1]
		op, subject = e.Op, e.Subject
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		errno = int(en)
	}
	return op, subject, errno
}

// PeerError is a failure the other process reported: its text, and its
// errno as the cause.
type PeerError struct {
	Msg   string
	Errno syscall.Errno
}

func (e *PeerError) Error() string { return e.Msg }

// Unwrap returns the errno, nil for none.
func (e *PeerError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// FromPeer rebuilds what Fields took apart: a *PeerError, wrapped in an
// *Error when op is set.
func FromPeer(msg string, op Op, subject string, errno int) error {
	pe := &PeerError{Msg: msg, Errno: syscall.Errno(errno)}
	if op == "" {
		return pe
	}
	return &Error{Op: op, Subject: subject, Err: pe}
}
