package childinit

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/unroot/unroot/network"
)

func TestConfigRoundTrip(t *testing.T) {
	full := Config{
		Stage: 1, CtlFD: 3, SockFD: 4, DoneFD: 5, ListenFDs: 2, ParentPID: 77, Activation: true,
		Command: []string{"sh", "-c", "echo 'a b'\n"}, StateDir: "/tmp/x", PIDNS: true, Reaper: true,
		PrivateNet: true, DetachNetNS: true, PreTap: "tap0",
		PreSetup: &network.Setup{IfName: "tap0", Addr: netip.MustParsePrefix("10.0.2.100/24"),
			Gateway: netip.MustParseAddr("10.0.2.2"), DNS: []netip.Addr{netip.MustParseAddr("10.0.2.3")}, MTU: 65520},
		Propagation: "rslave", CopyUp: []string{"/etc", "/run"}, Cgroup2: true, ErrPrefix: "[rootlesskit:child] ", ReportExit: true,
		Forwards: []string{"tcp/5000", "udp/53"},
	}
	for _, c := range []Config{full, {Stage: 2, CtlFD: 3, SockFD: 4, Command: []string{"id"}}, {Stage: 1, CtlFD: 3, SockFD: 4, CmdFD: 6}} {
		enc := c.Encode()
		if strings.ContainsAny(enc, "\x00=") {
			t.Errorf("Encode = %q: not fit for an environment variable's value", enc)
		}
		got, err := DecodeConfig(enc)
		if err != nil || !reflect.DeepEqual(got, c) {
			t.Errorf("round trip = %+v, %v; want %+v", got, err, c)
		}
	}
	enc := full.Encode()
	bad := map[string]string{
		"empty":      "",
		"not base64": "{}",
		"json":       `{"stage":1,"ctlFD":3,"sockFD":4,"command":["x"]}`,
		"stage 3":    Config{Stage: 3, CtlFD: 3, SockFD: 4, Command: []string{"x"}}.Encode(),
		"same fds":   Config{Stage: 1, CtlFD: 3, SockFD: 3, Command: []string{"x"}}.Encode(),
		"no command": Config{Stage: 1, CtlFD: 3, SockFD: 4}.Encode(),
		"cmd fd 2":   Config{Stage: 1, CtlFD: 3, SockFD: 4, CmdFD: 2}.Encode(),
		"truncated":  enc[:len(enc)-2],
		"trailing":   enc + "AA",
	}
	for name, s := range bad {
		if c, err := DecodeConfig(s); err == nil {
			t.Errorf("%s: DecodeConfig(%q) = %+v, nil error", name, s, c)
		}
	}
}

func TestPropagationFlags(t *testing.T) {
	for _, ok := range []string{"", "private", "rprivate", "slave", "rslave", "shared", "rshared"} {
		if _, err := PropagationFlags(ok); err != nil {
			t.Errorf("PropagationFlags(%q) = %v", ok, err)
		}
	}
	if _, err := PropagationFlags("unbindable"); err == nil {
		t.Error("PropagationFlags(unbindable) = nil error")
	}
}

func FuzzDecodeConfig(f *testing.F) {
	f.Add(Config{Stage: 2, CtlFD: 3, SockFD: 4, Command: []string{"sh"}}.Encode())
	f.Add(Config{Stage: 1, CtlFD: 3, SockFD: 4, CmdFD: 6}.Encode())
	f.Fuzz(func(t *testing.T, s string) {
		c, err := DecodeConfig(s)
		if err != nil {
			return
		}
		// The command comes in the config or, with CmdFD, in a file: one of them.
		if (len(c.Command) == 0) == (c.CmdFD == 0) || c.CtlFD < 3 || c.CmdFD != 0 && c.CmdFD < 3 {
			t.Fatalf("accepted %+v", c)
		}
		if c2, err := DecodeConfig(c.Encode()); err != nil || !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip of %+v: %+v, %v", c, c2, err)
		}
	})
}

func TestScratchDir(t *testing.T) {
	tests := []struct {
		state  string
		copyUp []string
		want   string
	}{
		{"/tmp/rootlesskit1", []string{"/etc"}, "/tmp/rootlesskit1"},
		{"/run/user/1000/dockerd-rootless", []string{"/etc", "/run"}, "/tmp"},
		{"/run/user/1000/x", []string{"/run/"}, "/tmp"},
		{"/runner/x", []string{"/run"}, "/runner/x"},
		{"/var/lib/x", nil, "/var/lib/x"},
	}
	for _, tt := range tests {
		if got := scratchDir(Config{StateDir: tt.state, CopyUp: tt.copyUp}); got != tt.want {
			t.Errorf("scratchDir(%s, %v) = %s, want %s", tt.state, tt.copyUp, got, tt.want)
		}
	}
}

// The command file holds any command line, however long, and reads back
// the same from offset 0 as often as asked (stage 1, then a re-exec).
func TestCommandFile(t *testing.T) {
	long := strings.Repeat("x", 300_000) // past the 128 KiB of one env string
	many := make([]string, 200)
	for i := range many {
		many[i] = strings.Repeat(string(rune('a'+i%26)), 1000)
	}
	for _, cmd := range [][]string{{"id"}, {"sh", "-c", "echo \"$1\"", "", "a\x00b"}, {"echo", long}, append([]string{"echo"}, many...)} {
		f, err := CommandFile(cmd)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			got, err := readCommand(int(f.Fd()))
			if err != nil || !reflect.DeepEqual(got, cmd) {
				t.Fatalf("readCommand = %d args, %v; want %d args back", len(got), err, len(cmd))
			}
		}
		f.Close()
	}
	// A config with the command in a file stays small, whatever the command.
	c := Config{Stage: 1, CtlFD: 3, SockFD: 4, CmdFD: 6, Command: []string{"echo", long}}
	if n := len(c.Encode()); n > 100 {
		t.Errorf("EnvConfig with CmdFD is %d bytes, want the command left out", n)
	}
	if _, err := readCommand(999); err == nil {
		t.Error("readCommand of a closed fd: nil error")
	}
}
