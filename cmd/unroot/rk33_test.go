package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/unroot/unroot"
	"github.com/unroot/unroot/api"
)

// rkHelp is RootlessKit v3.3.0's `rootlesskit --help`, committed as it
// printed it (GOBIN=/tmp/rk3 go install
// github.com/rootless-containers/rootlesskit/v3/cmd/rootlesskit@v3.3.0).
const rkHelp = "testdata/rootlesskit-v3.3.0-help.txt"

// rkFlags lists the long flag names of the committed help's OPTIONS.
func rkFlags(t *testing.T) (names []string, version string) {
	t.Helper()
	b, err := os.ReadFile(rkHelp)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	_, after, ok := strings.Cut(text, "VERSION:\n")
	if !ok {
		t.Fatalf("%s has no VERSION section", rkHelp)
	}
	version = strings.TrimSpace(strings.SplitN(after, "\n", 2)[0])
	_, opts, ok := strings.Cut(text, "OPTIONS:\n")
	if !ok {
		t.Fatalf("%s has no OPTIONS section", rkHelp)
	}
	flag := regexp.MustCompile(`^\s+--([a-z0-9-]+)`)
	for _, line := range strings.Split(opts, "\n") {
		if m := flag.FindStringSubmatch(line); m != nil && !slices.Contains(names, m[1]) {
			names = append(names, m[1])
		}
	}
	slices.Sort(names)
	return names, version
}

// TestRootlessKitFlagParity keeps the rootlesskit personality's flags
// equal to those RootlessKit v3.3.0 lists, and the reported versions to
// that release.
func TestRootlessKitFlagParity(t *testing.T) {
	want, version := rkFlags(t)
	if len(want) < 30 {
		t.Fatalf("parsed only %d flags from %s: %q", len(want), rkHelp, want)
	}
	fs := pflag.NewFlagSet("rootlesskit", pflag.ContinueOnError)
	var o opts
	register(fs, &o, asRootlesskit)
	fs.BoolP("help", "h", false, "")
	fs.BoolP("version", "v", false, "")
	var got []string
	fs.VisitAll(func(f *pflag.Flag) { got = append(got, f.Name) })
	slices.Sort(got)
	for _, n := range want {
		if !slices.Contains(got, n) {
			t.Errorf("RootlessKit v%s has --%s; the rootlesskit personality lacks it", version, n)
		}
	}
	for _, n := range got {
		if slices.Contains(unrootExtensions, n) {
			if f := fs.Lookup(n); !f.Hidden {
				t.Errorf("--%s is unroot's own; the rootlesskit personality must keep it out of --help", n)
			}
			continue
		}
		if !slices.Contains(want, n) {
			t.Errorf("the rootlesskit personality has --%s, which RootlessKit v%s does not list", n, version)
		}
	}
	if core, _, _ := strings.Cut(unroot.Version, "+"); core != version || !strings.HasSuffix(unroot.Version, "+unroot") {
		t.Errorf("unroot.Version = %q, want %q", unroot.Version, version+"+unroot")
	}
	if api.Version != "1.1.3" { // RootlessKit v3.3.0's pkg/api.Version
		t.Errorf("api.Version = %q, want 1.1.3 (RootlessKit v3.3.0)", api.Version)
	}
	// Every flag also parses with a value of its kind.
	for _, n := range []string{"--pesto-binary=/x/pesto", "--source-ip-transparent-backend=nft"} {
		fs, o := newFS(asRootlesskit)
		if _, err := parse(fs, []string{n, "true"}); err != nil {
			t.Errorf("parse %s: %v", n, err)
		}
		if o.pestoBinary == "pesto" && o.sourceIPTransparentBackend == "auto" {
			t.Errorf("parse %s: value not stored", n)
		}
	}
}

// fakePastaWithConfPath is a pasta whose --help lists --conf-path, as
// passt 2026_05_07 and later do (Debian's does not yet).
func fakePastaWithConfPath(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "pasta")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho '  --conf-path PATH  configuration socket'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRootlessKit33PortDrivers checks the answers RootlessKit 3.3 gives
// for its new port-driver choices where their requirement is missing.
func TestRootlessKit33PortDrivers(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	tests := []struct {
		name    string
		args    []string
		netName string
		want    string // "" = accepted
	}{
		{"pasta is a typo", []string{"--port-driver=pasta"}, "pasta", `unknown port driver "pasta": did you mean "pesto"?`},
		{"pesto needs pasta", []string{"--port-driver=pesto"}, "slirp4netns", `port driver "pesto" requires --net=pasta`},
		{"pasta without --conf-path", []string{"--port-driver=pesto", "--pasta-binary=/bin/true"}, "pasta", `port driver "pesto" requires pasta with --conf-path support (passt >= 2026_05_07.1afd4ed)`},
		{"pesto binary missing", []string{"--port-driver=pesto", "--pasta-binary=" + fakePastaWithConfPath(t), "--pesto-binary=/nonexistent/pesto"}, "pasta", `exec: "/nonexistent/pesto": stat /nonexistent/pesto: no such file or directory`},
		{"backend unknown", []string{"--port-driver=builtin", "--source-ip-transparent-backend=ebpf"}, "slirp4netns", "unknown source-ip-transparent-backend: ebpf"},
		{"backend iptables", []string{"--port-driver=builtin", "--source-ip-transparent-backend=iptables"}, "slirp4netns", ""},
		{"backend nft", []string{"--port-driver=builtin", "--source-ip-transparent-backend=nft"}, "slirp4netns", ""},
		{"backend auto", []string{"--port-driver=builtin"}, "slirp4netns", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, o := newFS(asRootlesskit)
			if _, err := parse(fs, append(tt.args, "true")); err != nil {
				t.Fatal(err)
			}
			_, _, err := buildPorts(o, tt.netName, asRootlesskit, log)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("buildPorts(%q) = %v, want success", tt.args, err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Errorf("buildPorts(%q) = %v, want %q", tt.args, err, tt.want)
			}
		})
	}
}

// --source-ip-transparent-backend=nft without nft: RootlessKit's warning,
// and transparency off; with it, the builtin driver makes nft rules.
func TestTransparentBackendNFT(t *testing.T) {
	var warned strings.Builder
	log := slog.New(slog.NewTextHandler(&warned, nil))
	t.Setenv("PATH", t.TempDir())
	o := &opts{sourceIPTransparent: true, sourceIPTransparentBackend: "nft"}
	fw, err := transparentBackend(o, log)
	if err != nil || fw != "nft" || o.sourceIPTransparent || !strings.Contains(warned.String(), "source IP transparent (nft): nft not found, disabling") {
		t.Errorf("without nft: %q, %v, transparent %v, log %q", fw, err, o.sourceIPTransparent, warned.String())
	}
	bin := t.TempDir()
	os.WriteFile(filepath.Join(bin, "nft"), []byte("#!/bin/sh\n"), 0o755)
	t.Setenv("PATH", bin)
	o = &opts{sourceIPTransparent: true, sourceIPTransparentBackend: "nft"}
	if fw, err := transparentBackend(o, log); err != nil || fw != "nft" || !o.sourceIPTransparent {
		t.Errorf("with nft: %q, %v, transparent %v", fw, err, o.sourceIPTransparent)
	}
}
