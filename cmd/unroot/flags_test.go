package main

import (
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func newFS(p personality) (*pflag.FlagSet, *opts) {
	var o opts
	fs := pflag.NewFlagSet("rootlesskit", pflag.ContinueOnError)
	fs.SetOutput(devNull{})
	register(fs, &o, p)
	return fs, &o
}

func TestParseGrammar(t *testing.T) {
	tests := []struct {
		args    []string
		cmd     []string
		check   func(o *opts) bool
		wantErr string
	}{
		{[]string{"--pidns", "true"}, []string{"true"}, func(o *opts) bool { return o.pidns }, ""},
		{[]string{"--pidns=false", "sh"}, []string{"sh"}, func(o *opts) bool { return !o.pidns }, ""},
		{[]string{"--net", "slirp4netns", "sh"}, []string{"sh"}, func(o *opts) bool { return o.net == "slirp4netns" }, ""},
		{[]string{"--net=none", "--", "sh", "--net=x"}, []string{"sh", "--net=x"}, func(o *opts) bool { return o.net == "none" }, ""},
		{[]string{"-net=none", "-pidns", "sh"}, []string{"sh"}, func(o *opts) bool { return o.net == "none" && o.pidns }, ""},
		{[]string{"-state-dir", "/x", "sh"}, []string{"sh"}, func(o *opts) bool { return o.stateDir == "/x" }, ""},
		{[]string{"--copy-up=/etc,/run", "--copy-up", "/var/lib", "sh"}, []string{"sh"}, func(o *opts) bool {
			return reflect.DeepEqual(o.copyUp, []string{"/etc", "/run", "/var/lib"})
		}, ""},
		{[]string{"-p", "127.0.0.1:8080:80/tcp,127.0.0.1:8443:443/tcp", "sh"}, []string{"sh"}, func(o *opts) bool { return len(o.publish) == 2 }, ""},
		{[]string{"sh", "--pidns"}, []string{"sh", "--pidns"}, func(o *opts) bool { return !o.pidns }, ""},
		{[]string{"--no-such", "sh"}, nil, nil, "Incorrect Usage: flag provided but not defined: --no-such"},
		{[]string{"--mtu=abc", "sh"}, nil, nil, "Incorrect Usage"},
		{nil, []string{}, func(o *opts) bool {
			return o.net == "host" && o.portDriver == "none" && o.reaper == "auto" && o.sourceIPTransparent
		}, ""},
	}
	for _, tt := range tests {
		fs, o := newFS(asRootlesskit)
		cmd, err := parse(fs, tt.args)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parse(%q) error = %v, want %q", tt.args, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("parse(%q): %v", tt.args, err)
			continue
		}
		if !reflect.DeepEqual(cmd, tt.cmd) {
			t.Errorf("parse(%q) command = %q, want %q", tt.args, cmd, tt.cmd)
		}
		if !tt.check(o) {
			t.Errorf("parse(%q) options = %+v", tt.args, *o)
		}
	}
}

func TestUnrootDefaults(t *testing.T) {
	fs, o := newFS(asUnroot)
	if _, err := parse(fs, []string{"id"}); err != nil {
		t.Fatal(err)
	}
	if o.net != "auto" || o.portDriver != "builtin" || !reflect.DeepEqual(o.copyUp, []string{"/etc"}) || !o.disableHostLoopback || !o.pidns {
		t.Errorf("unroot run defaults = %+v", *o)
	}
}

func TestHelpListsEveryFlag(t *testing.T) {
	fs, _ := newFS(asRootlesskit)
	help := formatHelp(fs)
	fs.VisitAll(func(f *pflag.Flag) {
		has := strings.Contains(help, "--"+f.Name+" ") || strings.Contains(help, "--"+f.Name+",")
		if f.Hidden && has {
			t.Errorf("help lists the hidden --%s", f.Name)
		}
		if !f.Hidden && !has {
			t.Errorf("help lacks --%s", f.Name)
		}
	})
	// unroot run lists its own flags.
	fs, _ = newFS(asUnroot)
	if help := formatHelp(fs); !strings.Contains(help, "--bypass ") {
		t.Errorf("unroot run's help lacks --bypass")
	}
}

func TestSemverPart(t *testing.T) {
	for part, want := range map[string]string{"major": "3", "minor": "3", "patch": "0"} {
		if got, err := semverPart("3.3.0+unroot", part); err != nil || got != want {
			t.Errorf("semverPart(%s) = %q, %v; want %q", part, got, err, want)
		}
	}
	if _, err := semverPart("3.3.0+unroot", "build"); err == nil {
		t.Error("semverPart(build) = nil error")
	}
}

func TestPortRules(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	tests := []struct {
		net, pd string
		p       personality
		publish []string
		wantErr string
	}{
		{"host", "builtin", asRootlesskit, nil, "port driver requires non-host network"},
		{"pasta", "builtin", asRootlesskit, nil, `network "pasta" requires port driver "none" or "implicit" or "pesto"`},
		{"pasta", "builtin", asUnroot, nil, ""},
		{"slirp4netns", "implicit", asRootlesskit, nil, "requires --net=pasta"},
		{"pasta", "implicit", asRootlesskit, []string{"127.0.0.1:80:80/tcp"}, ""},
		{"none", "none", asRootlesskit, []string{"127.0.0.1:80:80/tcp"}, "needs a port driver"},
		{"none", "builtin", asRootlesskit, []string{"8080:80/tcp"}, "publish"},
		{"none", "builtin", asUnroot, []string{"8080:80"}, ""},
		{"none", "nope", asRootlesskit, nil, "unknown port driver"},
	}
	for _, tt := range tests {
		o := &opts{portDriver: tt.pd, publish: tt.publish}
		_, _, err := buildPorts(o, tt.net, tt.p, log)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("net %s port %s publish %v: %v, want %q", tt.net, tt.pd, tt.publish, err, tt.wantErr)
		}
	}
}

func FuzzNormalize(f *testing.F) {
	f.Add("-net=none\x00-pidns\x00sh\x00-c\x00x")
	f.Add("--state-dir\x00/x\x00--\x00-p")
	f.Fuzz(func(t *testing.T, joined string) {
		args := strings.Split(joined, "\x00")
		fs, _ := newFS(asRootlesskit)
		out := normalize(fs, args)
		if len(out) != len(args) {
			t.Fatalf("normalize changed the argument count: %q → %q", args, out)
		}
		for i := range args {
			if out[i] != args[i] && out[i] != "-"+args[i] {
				t.Fatalf("normalize rewrote %q to %q", args[i], out[i])
			}
		}
		parse(fs, args) // must not panic
	})
}

// An empty --publish value is a mistake (an unset shell variable, a stray
// comma), not a request to publish nothing.
func TestEmptyPublishRefused(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, p := range []personality{asRootlesskit, asUnroot} {
		for _, args := range [][]string{
			{"-p", "", "true"},
			{"--publish=", "true"},
			{"-p", "127.0.0.1:8080:80/tcp,", "true"},
			{"-p", ",127.0.0.1:8080:80/tcp", "true"},
			{"--port-driver=builtin", "--net=slirp4netns", "-p", "", "-p", "127.0.0.1:8080:80/tcp", "true"},
		} {
			fs, o := newFS(p)
			if _, err := parse(fs, args); err != nil {
				t.Fatalf("parse %q: %v", args, err)
			}
			o.portDriver, o.net = "builtin", "slirp4netns"
			_, _, err := buildPorts(o, "slirp4netns", p, log)
			if err == nil || !strings.Contains(err.Error(), "--publish: empty") {
				t.Errorf("personality %d, args %q: err = %v, want a refusal of the empty value", p, args, err)
			}
		}
		fs, o := newFS(p)
		if _, err := parse(fs, []string{"-p", "127.0.0.1:8080:80/tcp,127.0.0.1:8081:81/tcp", "true"}); err != nil {
			t.Fatal(err)
		}
		o.portDriver = "builtin"
		if _, specs, err := buildPorts(o, "slirp4netns", p, log); err != nil || len(specs) != 2 {
			t.Errorf("two specs in one value: %v, %v", specs, err)
		}
	}
}
