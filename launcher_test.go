package unroot

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/unroot/unroot/api"
	"github.com/unroot/unroot/forward"
	"github.com/unroot/unroot/network"
	"github.com/unroot/unroot/port"
)

type fakeNet struct{ host bool }

func (f fakeNet) Name() string { return "fake" }
func (f fakeNet) Start(context.Context, network.Child) (network.Setup, error) {
	return network.Setup{}, nil
}
func (f fakeNet) Info() *api.NetworkDriverInfo { return &api.NetworkDriverInfo{Driver: "fake"} }
func (f fakeNet) Close() error                 { return nil }
func (f fakeNet) SharesHostNetwork() bool      { return f.host }

func TestValidate(t *testing.T) {
	noPorts := func(context.Context, port.Env) (port.Driver, error) { return nil, nil }
	tests := []struct {
		name string
		l    *Launcher
		want string // "" = valid
	}{
		{"minimal", &Launcher{Command: []string{"true"}}, ""},
		{"no command", &Launcher{}, "Command is empty"},
		{"reaper without pidns", &Launcher{Command: []string{"true"}, Reaper: ReaperOn}, "Reaper is ReaperOn requires PIDNS"},
		{"reaper with pidns", &Launcher{Command: []string{"true"}, Reaper: ReaperOn, PIDNS: true}, ""},
		{"bad propagation", &Launcher{Command: []string{"true"}, Propagation: "weird"}, `Propagation "weird"`},
		{"copy-up /tmp", &Launcher{Command: []string{"true"}, CopyUp: []string{"/tmp"}}, "/tmp"},
		{"copy-up relative", &Launcher{Command: []string{"true"}, CopyUp: []string{"etc"}}, "absolute"},
		{"rshared copy-up", &Launcher{Command: []string{"true"}, CopyUp: []string{"/etc"}, Propagation: "rshared"}, "rslave"},
		{"evacuate without cgroupns", &Launcher{Command: []string{"true"}, EvacuateCgroup2: "evac", PIDNS: true}, "EvacuateCgroup2 requires PIDNS and CgroupNS"},
		{"evacuate bad name", &Launcher{Command: []string{"true"}, EvacuateCgroup2: "a/b", PIDNS: true, CgroupNS: true}, `EvacuateCgroup2 "a/b"`},
		{"detach on host", &Launcher{Command: []string{"true"}, DetachNetNS: true}, "DetachNetNS requires a network namespace"},
		{"detach on host driver", &Launcher{Command: []string{"true"}, DetachNetNS: true, Network: fakeNet{host: true}}, "DetachNetNS requires a network namespace"},
		{"detach on private", &Launcher{Command: []string{"true"}, DetachNetNS: true, Network: fakeNet{}}, ""},
		{"publish without driver", &Launcher{Command: []string{"true"}, Publish: []port.Spec{{Proto: "tcp", ParentPort: 80, ChildPort: 80}}}, "Publish requires a port driver: add Ports"},
		{"state dir too long", &Launcher{Command: []string{"true"}, StateDir: "/" + strings.Repeat("d", 100)}, "too long"},
		{"bad network failure", &Launcher{Command: []string{"true"}, OnNetworkFailure: "retry"}, `OnNetworkFailure "retry"`},
		{"forward on host", &Launcher{Command: []string{"true"}, Forward: []forward.Spec{mustForward(t, "127.0.0.1:1:2/tcp")}}, "Forward needs a network namespace"},
		{"publish with driver", &Launcher{Command: []string{"true"}, Ports: noPorts, Publish: []port.Spec{{Proto: "tcp", ParentPort: 80, ChildPort: 80}}}, ""},
	}
	for _, tt := range tests {
		err := tt.l.Validate()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: Validate() = %v, want %q", tt.name, err, tt.want)
		}
		var ce *ConfigError
		if err != nil && (!errors.As(err, &ce) || ce.Field == "" || !strings.HasPrefix(err.Error(), ce.Field)) {
			t.Errorf("%s: Validate() = %#v, want a *ConfigError that starts with its field", tt.name, err)
		}
		if ce != nil {
			for _, r := range ce.Refs() {
				if !slices.Contains(ConfigRefs(), r) {
					t.Errorf("%s: reference %q is not in ConfigRefs", tt.name, r)
				}
			}
		}
		if ce != nil && strings.ContainsAny(err.Error(), "{}") {
			t.Errorf("%s: %q has a reference left", tt.name, err)
		}
	}
}

func TestConfigErrorText(t *testing.T) {
	e := configErrorf("Reaper", "{Reaper=ReaperOn} requires {PIDNS} (%s)", "x")
	if got := e.Error(); got != "Reaper is ReaperOn requires PIDNS (x)" {
		t.Errorf("Error() = %q", got)
	}
	flags := map[string]string{"Reaper=ReaperOn": "--reaper=true", "PIDNS": "--pidns"}
	if got := e.Text(func(r string) string { return flags[r] }); got != "--reaper=true requires --pidns (x)" {
		t.Errorf("Text = %q", got)
	}
	if got := e.Refs(); len(got) != 2 || got[0] != "Reaper=ReaperOn" || got[1] != "PIDNS" {
		t.Errorf("Refs = %q", got)
	}
}

func TestCloneflagsAndReaper(t *testing.T) {
	l := &Launcher{Command: []string{"x"}, Network: fakeNet{}, PIDNS: true}
	if !l.reaper() || !l.privateNet() {
		t.Errorf("pidns + private net: reaper %v, private %v; want both", l.reaper(), l.privateNet())
	}
	const newnet = 0x40000000
	if l.cloneflags()&newnet == 0 {
		t.Error("private network without CLONE_NEWNET")
	}
	l.DetachNetNS = true
	if l.cloneflags()&newnet != 0 {
		t.Error("--detach-netns with CLONE_NEWNET: the command must stay in the host netns")
	}
	l = &Launcher{Command: []string{"x"}, PIDNS: true, Reaper: ReaperOff}
	if l.reaper() || l.privateNet() || l.cloneflags()&newnet != 0 {
		t.Errorf("host net, reaper off: reaper %v, private %v", l.reaper(), l.privateNet())
	}
}

func TestParseReaperMode(t *testing.T) {
	for in, want := range map[string]ReaperMode{"": ReaperAuto, "auto": ReaperAuto, "true": ReaperOn, "false": ReaperOff} {
		if got, err := ParseReaperMode(in); err != nil || got != want {
			t.Errorf("ParseReaperMode(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseReaperMode("yes"); err == nil {
		t.Error("ParseReaperMode(yes) = nil error")
	}
}

func TestStartRejectsBadConfigWithoutSideEffects(t *testing.T) {
	dir := t.TempDir() + "/state"
	l := &Launcher{Command: []string{"true"}, StateDir: dir, Reaper: ReaperOn}
	if err := l.Start(context.Background()); err == nil {
		t.Fatal("Start with --reaper=true and no pidns succeeded")
	}
	if l.StateDirPath() != "" {
		t.Errorf("state dir %s created for an invalid config", l.StateDirPath())
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close after a failed Start: %v", err)
	}
}

func mustForward(t *testing.T, s string) forward.Spec {
	sp, err := forward.ParseSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}
