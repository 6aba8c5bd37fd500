// Package systemdunit renders the systemd user unit that runs a command under
// unroot the way systemd expects: Type=notify with readiness relayed by
// unroot, Delegate=yes so cgroup controllers reach the namespace, and
// KillMode=mixed so SIGTERM goes to unroot alone (it forwards the signal and
// exits with the command's status) while stragglers are still killed.
package systemdunit

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
)

// Unit describes one service.
type Unit struct {
	// Name is the unit name without ".service".
	Name string
	// Unroot is the absolute path of the unroot binary.
	Unroot string
	// Args follow "unroot run" in ExecStart: run flags, then the command.
	Args []string
	// Description defaults to "NAME (unroot)".
	Description string
	// Restart is systemd's Restart=; "" means on-failure.
	Restart string
	// Env is written as Environment= lines (KEY=VALUE), e.g. the PATH the
	// unit needs to find newuidmap, slirp4netns and iptables.
	Env []string
}

// Compiled on first use, not at every start of the binary.
var nameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9:_.\\@-]+$`) })

// ValidName checks a unit name as systemd would accept it for a service.
func ValidName(name string) error {
	switch {
	case name == "":
		return errors.New("unit name is empty: give a NAME such as myapp")
	case len(name) > 240:
		return fmt.Errorf("unit name %.20q… is %d bytes: systemd allows 255 with the suffix", name, len(name))
	case !nameRE().MatchString(name):
		return fmt.Errorf("unit name %q: use only letters, digits and : _ . - @ \\", name)
	case strings.HasPrefix(name, "-") || strings.HasPrefix(name, "."):
		return fmt.Errorf("unit name %q must not start with '-' or '.': pick a name that starts with a letter or digit", name)
	}
	return nil
}

var restarts = []string{"no", "on-success", "on-failure", "on-abnormal", "on-watchdog", "on-abort", "always"}

// Render returns the unit file text.
func (u Unit) Render() (string, error) {
	if err := ValidName(u.Name); err != nil {
		return "", err
	}
	if !strings.HasPrefix(u.Unroot, "/") {
		return "", fmt.Errorf("render unit %s: unroot path %q is not absolute: systemd needs an absolute ExecStart", u.Name, u.Unroot)
	}
	if len(u.Args) == 0 {
		return "", fmt.Errorf("render unit %s: no command: put it after --", u.Name)
	}
	restart := u.Restart
	if restart == "" {
		restart = "on-failure"
	}
	ok := false
	for _, r := range restarts {
		ok = ok || r == restart
	}
	if !ok {
		return "", fmt.Errorf("render unit %s: --restart=%q: want one of %s", u.Name, restart, strings.Join(restarts, ", "))
	}
	desc := u.Description
	if desc == "" {
		desc = u.Name + " (unroot)"
	}
	var b strings.Builder
	b.WriteString("# Written by `unroot systemd install`. Install again to regenerate it, or edit it\n")
	b.WriteString("# and run `systemctl --user daemon-reload`.\n")
	b.WriteString("[Unit]\n")
	fmt.Fprintf(&b, "Description=%s\n", escapeSpecifiers(oneLine(desc)))
	b.WriteString("StartLimitIntervalSec=60\nStartLimitBurst=3\n\n")
	b.WriteString("[Service]\n")
	b.WriteString("# unroot sends READY=1: relayed from the command, or its own with --ready=ports.\n")
	b.WriteString("Type=notify\n")
	words := append([]string{u.Unroot, "run"}, u.Args...)
	for i, w := range words {
		// ExecStart prefixes (@ - : + !) would change how it runs, and the
		// path is absolute, so the first word never starts with one.
		// %t is the user's runtime directory; keep it live in the state dir.
		if strings.HasPrefix(w, "--state-dir=%t/") {
			words[i] = "--state-dir=%t/" + Quote(strings.TrimPrefix(w, "--state-dir=%t/"))
			continue
		}
		words[i] = Quote(w)
	}
	fmt.Fprintf(&b, "ExecStart=%s\n", strings.Join(words, " "))
	for _, kv := range u.Env {
		if !strings.Contains(kv, "=") {
			return "", fmt.Errorf("render unit %s: environment entry %q is not KEY=VALUE", u.Name, kv)
		}
		fmt.Fprintf(&b, "Environment=%s\n", quoteEnv(kv))
	}
	b.WriteString("# cgroup controllers reach the namespaces only through delegation.\n")
	b.WriteString("Delegate=yes\n")
	b.WriteString("# SIGTERM to unroot alone: it forwards it and exits with the command's status.\n")
	b.WriteString("KillMode=mixed\n")
	fmt.Fprintf(&b, "Restart=%s\nRestartSec=2\n", restart)
	b.WriteString("\n[Install]\nWantedBy=default.target\n")
	return b.String(), nil
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func escapeSpecifiers(s string) string { return strings.ReplaceAll(s, "%", "%%") }

// Quote makes one ExecStart/Environment word that systemd reads back
// unchanged: specifiers (%) and variable references ($) are doubled, and
// anything with spaces, quotes, backslashes or control characters goes in
// double quotes with C escapes.
func Quote(w string) string {
	w = strings.ReplaceAll(w, "%", "%%")
	w = strings.ReplaceAll(w, "$", "$$")
	plain := w != ""
	for _, r := range w {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("%$_-+=:,./@^~", r)) {
			plain = false
			break
		}
	}
	if plain {
		return w
	}
	return cQuote(w)
}

// quoteEnv is Quote for Environment=, where $ is not special.
func quoteEnv(kv string) string {
	kv = strings.ReplaceAll(kv, "%", "%%")
	for _, r := range kv {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("%$_-+=:,./@^~", r)) {
			return cQuote(kv)
		}
	}
	return kv
}

func cQuote(w string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range w {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}
