package unroot

import (
	"fmt"
	"slices"
	"strings"
)

// ConfigError is a Launcher configuration that Validate refuses. Its
// message speaks to a Go caller, naming the Launcher's fields ("Reaper is
// ReaperOn but PIDNS is false"); a front end with other names for them (the
// CLI's flags) renders it with Text.
type ConfigError struct {
	// Field is the field at fault.
	Field string
	// msg holds {Ref} placeholders: a field ("{PIDNS}") or a field with a
	// value ("{Reaper=ReaperOn}").
	msg string
}

// configErrorf makes a ConfigError for field; format's arguments are
// substituted first, so values cannot be mistaken for placeholders only if
// they hold no braces (paths and names here do not).
func configErrorf(field, format string, args ...any) *ConfigError {
	return &ConfigError{Field: field, msg: fmt.Sprintf(format, args...)}
}

// goNames renders the references whose Go spelling is not the reference
// itself.
var goNames = map[string]string{
	"Reaper=ReaperOn":     "Reaper is ReaperOn",
	"Network=private":     "a Network driver with a namespace of its own (not nil, not host)",
	"Propagation=rslave":  `Propagation "rslave"`,
	"Ports=builtin":       "Ports (e.g. builtin.NewFactory)",
	"Bypass.Mode=on":      `Bypass.Mode "on"`,
	"Bypass.Mode=private": "a Network driver with a namespace of its own and DetachNetNS false",
}

func (e *ConfigError) Error() string {
	return e.Text(func(ref string) string {
		if s, ok := goNames[ref]; ok {
			return s
		}
		return ref
	})
}

// Text renders the message with name giving each reference's spelling.
func (e *ConfigError) Text(name func(ref string) string) string {
	var b strings.Builder
	s := e.msg
	for {
		i := strings.IndexByte(s, '{')
		j := strings.IndexByte(s[max(i, 0):], '}')
		if i < 0 || j < 0 {
			b.WriteString(s)
			return b.String()
		}
		j += i
		b.WriteString(s[:i])
		b.WriteString(name(s[i+1 : j]))
		s = s[j+1:]
	}
}

// Refs lists the references in the message, for front ends that check
// they can render every one.
func (e *ConfigError) Refs() []string {
	var refs []string
	s := e.msg
	for {
		i := strings.IndexByte(s, '{')
		if i < 0 {
			return refs
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return refs
		}
		refs = append(refs, s[i+1:i+j])
		s = s[i+j+1:]
	}
}

// configRefs are the references Validate's messages use.
var configRefs = []string{
	"Bypass.Mode", "Bypass.Mode=on", "Bypass.Mode=private", "CgroupNS", "Command", "CopyUp",
	"DetachNetNS", "EvacuateCgroup2", "Forward", "Network=private", "OnNetworkFailure", "PIDNS",
	"Ports=builtin", "Propagation", "Propagation=rslave", "Publish", "Ready", "Reaper=ReaperOn",
	"StateDir",
}

// ConfigRefs lists every reference a ConfigError from Validate may hold,
// so that a front end can test that it renders them all.
func ConfigRefs() []string { return slices.Clone(configRefs) }
