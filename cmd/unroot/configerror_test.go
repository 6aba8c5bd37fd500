package main

import (
	"testing"

	"github.com/unroot/unroot"
)

// Every field a validation error can name has a flag to say instead.
func TestFlagNamesCoverConfigRefs(t *testing.T) {
	for _, r := range unroot.ConfigRefs() {
		if flagNames[r] == "" {
			t.Errorf("unroot.ConfigError reference %q has no flag in flagNames", r)
		}
	}
	err := flagError((&unroot.Launcher{Command: []string{"true"}, Reaper: unroot.ReaperOn}).Validate())
	if err == nil || err.Error() != "--reaper=true requires --pidns: only PID 1 of a PID namespace can reap its orphans" {
		t.Errorf("flagError = %v", err)
	}
}
