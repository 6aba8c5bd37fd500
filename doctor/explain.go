package doctor

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/unroot/unroot/internal/operr"
)

// Error is a start failure together with the host problem that caused it.
// Its message leads with the cause and the fix; the original error stays
// reachable through errors.Is/As.
type Error struct {
	// Err is the error the start failed with.
	Err error
	// Result is the failing check that explains it.
	Result Result
}

func (e *Error) Error() string {
	var b strings.Builder
	inner := e.Err.Error()
	if e.Result.Fix != "" {
		// The check's fix is printed below; one the error carried (a
		// driver's own "; fix: …") would say it a second time.
		inner = withoutFixes(inner)
	}
	fmt.Fprintf(&b, "%s (%s)", e.Result.Detail, inner)
	if e.Result.Fix != "" {
		for i, l := range strings.Split(strings.TrimRight(e.Result.Fix, "\n"), "\n") {
			if i == 0 {
				b.WriteString("\nfix: " + l)
			} else {
				b.WriteString("\n     " + l)
			}
		}
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// fixMark starts a fix inside an error message ("open /dev/net/tun:
// permission denied; fix: sudo chmod 0666 /dev/net/tun").
const fixMark = "; fix: "

// withoutFixes removes every "; fix: …" from msg: each runs to the end of
// the message or to the parenthesis that closes the part it sits in.
func withoutFixes(msg string) string {
	for {
		i := strings.Index(msg, fixMark)
		if i < 0 {
			return msg
		}
		end, depth := len(msg), 0
	scan:
		for j := i + len(fixMark); j < len(msg); j++ {
			switch msg[j] {
			case '(':
				depth++
			case ')':
				if depth == 0 {
					end = j
					break scan
				}
				depth--
			case '\n':
				end = j
				break scan
			}
		}
		msg = msg[:i] + msg[end:]
	}
}

// Explain runs the checks that bear on a failed start and, when one of them
// fails, returns an *Error whose message is that check's cause and fix,
// wrapping err. When no check finds anything (or err is nil, or already
// explained) it returns err unchanged, so callers can always write
//
//	if err := l.Start(ctx); err != nil {
//		return doctor.Explain(ctx, err, doctor.Options{Net: netName})
//	}
func Explain(ctx context.Context, err error, opts Options) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		// A cancelled start is no host problem, and probes would fail too.
		return err
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	names, specific, net := relevant(err)
	if net != "" && opts.Net == "" {
		opts.Net = net
	}
	results := Run(ctx, Select(opts, names...)...)
	for _, r := range results {
		if r.Status == Fail {
			return &Error{Err: err, Result: r}
		}
	}
	if specific {
		for _, r := range results {
			if r.Status == Warn {
				return &Error{Err: err, Result: r}
			}
		}
	}
	return err
}

// relevant maps a start error to the checks that can explain it, most
// likely cause first. specific is false when nothing in the error points
// anywhere and the start-up essentials are checked instead; net names a
// network helper the error says is missing. It reads only the error's
// types (internal/operr's operations, errnos, *exec.Error), never its
// text, so a reworded message keeps its diagnosis.
func relevant(err error) (names []string, specific bool, net string) {
	seen := map[string]bool{}
	add := func(n ...string) {
		for _, x := range n {
			if !seen[x] {
				seen[x] = true
				names = append(names, x)
			}
		}
	}
	en, hasErrno := errnoOf(err)
	var ee *exec.Error
	if errors.As(err, &ee) {
		switch base := filepath.Base(ee.Name); base {
		case "slirp4netns", "pasta":
			add(CheckNetDrivers)
			net = base
		case "newuidmap", "newgidmap":
			add(CheckIDMap)
		case "iptables", "ip6tables":
			add(CheckIPTables)
		}
	}
	for _, oe := range operr.All(err) {
		switch oe.Op {
		case operr.Helper:
			add(CheckNetDrivers)
			if net == "" && errors.Is(oe, exec.ErrNotFound) {
				net = oe.Subject
			}
		case operr.IDMap:
			add(CheckSubID, CheckIDMap)
		case operr.Tun:
			add(CheckTun)
		case operr.IPTables:
			add(CheckIPTables)
		case operr.Cgroup:
			add(CheckCgroup)
		case operr.Listen:
			if hasErrno && (en == syscall.EACCES || en == syscall.EPERM) {
				add(CheckPorts)
			}
		case operr.UserNS:
			add(CheckUserNS, CheckAppArmor)
		case operr.Mount:
			// A mount refused by a security module or a seccomp filter
			// inside the namespace the init owns.
			if hasErrno && (en == syscall.EPERM || en == syscall.EACCES) {
				add(CheckUserNS, CheckAppArmor)
			}
		case operr.Netlink:
			// No host setting explains it: the start-up essentials only.
		}
	}
	if hasErrno && (en == syscall.EPERM || en == syscall.EACCES || en == syscall.ENOSPC || en == syscall.EINVAL) && len(names) == 0 {
		add(CheckUserNS, CheckAppArmor)
	}
	if len(names) > 0 {
		return names, true, net
	}
	// Nothing points anywhere: check only what blocks every start, so a
	// generic error is never blamed on, say, a short subuid range.
	add(CheckUserNS, CheckAppArmor, CheckIDMap)
	return names, false, net
}
