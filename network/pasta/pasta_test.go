package pasta

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/unroot/unroot/internal/testutil"
	"github.com/unroot/unroot/network"
	"github.com/unroot/unroot/network/internal/nstest"
)

func TestMain(m *testing.M) {
	nstest.Main(m, func(c network.Config, o Options) (network.Driver, error) { return New(c, o) })
}

// The long options pasta 2023_03_09 (Debian 12) lists, of those the driver asks about.
var debian12 = flagSet("--runas --foreground --stderr --config-net --ns-ifname --pid --address --netmask --gateway --mtu " +
	"--tcp-ports --udp-ports --tcp-ns --udp-ns --no-map-gw --ipv4-only --userns --netns --dns-forward")

func flagSet(s string) map[string]bool {
	m := map[string]bool{}
	for _, f := range strings.Fields(s) {
		m[f] = true
	}
	return m
}

func with(m map[string]bool, extra ...string) map[string]bool {
	n := map[string]bool{}
	for k := range m {
		n[k] = true
	}
	for _, e := range extra {
		n[e] = true
	}
	return n
}

func without(m map[string]bool, drop string) map[string]bool {
	n := with(m)
	delete(n, drop)
	return n
}

func TestBuildArgs(t *testing.T) {
	def, _ := network.Config{}.WithDefaults()
	attached := network.Child{PID: 42}
	detached := network.Child{PID: 42, NetNS: "/proc/42/root/s/netns", UserNS: "/proc/42/ns/user", Detached: true}
	custom := def
	custom.DisableHostLoopback = true
	custom.IPv6 = true
	custom.CIDR = netip.MustParsePrefix("10.41.0.0/16")
	v6only := def
	v6only.CIDR = netip.MustParsePrefix("fd12:3456::/64")
	tests := []struct {
		name string
		cfg  network.Config
		c    network.Child
		f    features
		want string
	}{
		{"rootlesskit defaults", def, attached, features{stderr: true, dnsForward: true, nsNone: true},
			"--foreground --stderr --ns-ifname=tap0 --mtu=65520 --config-net --address=10.0.2.100 --netmask=24 --gateway=10.0.2.2 --dns-forward=10.0.2.3 --tcp-ns=none --udp-ns=none --ipv4-only --tcp-ports=none --udp-ports=none --pid=/proc/self/fd/3 42"},
		{"implicit, new pasta", def, attached, features{dnsForward: true, hostLoToNsLo: true, implicit: true, nsNone: true},
			"--foreground --ns-ifname=tap0 --mtu=65520 --config-net --address=10.0.2.100 --netmask=24 --gateway=10.0.2.2 --dns-forward=10.0.2.3 --ipv4-only --tcp-ports=auto --udp-ports=auto --host-lo-to-ns-lo --pid=/proc/self/fd/3 42"},
		{"as root", def, attached, features{stayRoot: true},
			"--foreground --runas=0:0 --ns-ifname=tap0 --mtu=65520 --config-net --address=10.0.2.100 --netmask=24 --gateway=10.0.2.2 --ipv4-only --tcp-ports=none --udp-ports=none --pid=/proc/self/fd/3 42"},
		{"no loopback, ipv6, cidr, detached", custom, detached, features{implicit: true},
			"--foreground --ns-ifname=tap0 --mtu=65520 --config-net --address=10.41.0.100 --netmask=16 --gateway=10.41.0.2 --no-map-gw --tcp-ports=auto --udp-ports=auto --pid=/proc/self/fd/3 --userns=/proc/42/ns/user --netns=/proc/42/root/s/netns"},
		{"ipv6 only: the prefix given, no netmask", v6only, attached, features{dnsForward: true},
			"--foreground --ns-ifname=tap0 --mtu=65520 --config-net --address=fd12:3456::100 --gateway=fd12:3456::2 --dns-forward=fd12:3456::3 --ipv6-only --tcp-ports=none --udp-ports=none --pid=/proc/self/fd/3 42"},
	}
	for _, tt := range tests {
		got, err := buildArgs(tt.cfg, tt.c, tt.f)
		if err != nil || strings.Join(got, " ") != tt.want {
			t.Errorf("%s: buildArgs =\n%q, %v\nwant\n%q", tt.name, strings.Join(got, " "), err, tt.want)
		}
	}
	if _, err := buildArgs(def, network.Child{}, features{}); err == nil {
		t.Error("no pid: want error")
	}
}

func TestFeatures(t *testing.T) {
	old := geteuid
	defer func() { geteuid = old }()
	geteuid = func() int { return 1000 }
	mk := func(mod func(*network.Config, *Options)) *Driver {
		cfg := network.Config{Binary: "/bin/true"}
		var o Options
		if mod != nil {
			mod(&cfg, &o)
		}
		d, err := New(cfg, o)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	implicit := mk(func(_ *network.Config, o *Options) { o.ImplicitPorts = true })
	noLoop := mk(func(c *network.Config, _ *Options) { c.DisableHostLoopback = true })
	tests := []struct {
		name     string
		d        *Driver
		flags    map[string]bool
		c        network.Child
		want     features
		warnings []string
		wantErr  string
	}{
		{"debian 12", mk(nil), debian12, network.Child{PID: 1}, features{stderr: true, dnsForward: true, nsNone: true}, nil, ""},
		{"debian 12 implicit", implicit, debian12, network.Child{PID: 1}, features{stderr: true, dnsForward: true, implicit: true, nsNone: true},
			[]string{"(passt older than 2023_06_03; Debian 12 ships 2023_03_09) forwards only TCP with --port-driver=implicit"}, ""},
		{"new pasta implicit", implicit, with(debian12, "--host-lo-to-ns-lo"), network.Child{PID: 1},
			features{stderr: true, dnsForward: true, hostLoToNsLo: true, implicit: true, nsNone: true}, nil, ""},
		{"no dns-forward", mk(nil), without(debian12, "--dns-forward"), network.Child{PID: 1}, features{stderr: true, nsNone: true},
			[]string{"lacks --dns-forward: DNS at 10.0.2.3 will not answer"}, ""},
		{"implicit without host loopback", mk(func(c *network.Config, o *Options) {
			c.DisableHostLoopback = true
			o.ImplicitPorts = true
		}), with(debian12, "--host-lo-to-ns-lo"), network.Child{PID: 1},
			features{stderr: true, dnsForward: true, hostLoToNsLo: true, implicit: true, nsNone: true},
			[]string{"--disable-host-loopback only closes the gateway address"}, ""},
		{"no config-net", mk(nil), without(debian12, "--config-net"), network.Child{PID: 1}, features{}, nil,
			"lacks --config-net: install a newer passt, or use --net=slirp4netns"},
		{"no no-map-gw", noLoop, without(debian12, "--no-map-gw"), network.Child{PID: 1}, features{}, nil, "lacks --no-map-gw"},
		{"detached without --userns", mk(nil), without(debian12, "--userns"), network.Child{Detached: true}, features{}, nil, "lacks --userns"},
		{"nothing", mk(nil), map[string]bool{}, network.Child{PID: 1}, features{}, nil, "lacks --foreground, --config-net"},
	}
	for _, tt := range tests {
		got, warn, err := tt.d.features(tt.flags, tt.c)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: error = %v, want %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: features = %+v, %v, want %+v", tt.name, got, err, tt.want)
		}
		if len(warn) != len(tt.warnings) {
			t.Errorf("%s: warnings = %q, want %d", tt.name, warn, len(tt.warnings))
			continue
		}
		for i, w := range tt.warnings {
			if !strings.Contains(warn[i], w) || strings.Contains(warn[i], "\n") {
				t.Errorf("%s: warning %q, want one line containing %q", tt.name, warn[i], w)
			}
		}
	}
}

func TestFeaturesAsRoot(t *testing.T) {
	old := geteuid
	defer func() { geteuid = old }()
	geteuid = func() int { return 0 }
	d, err := New(network.Config{Binary: "/bin/true"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := d.features(debian12, network.Child{PID: 1})
	if err != nil || !f.stayRoot {
		t.Errorf("as root: features = %+v, %v, want stayRoot", f, err)
	}
}

func TestNewErrors(t *testing.T) {
	for cfg, want := range map[*network.Config]string{
		{Binary: "/nonexistent/pasta"}:                                       "pasta binary /nonexistent/pasta: ",
		{Binary: "/bin/true", IfName: "a/b"}:                                 "must not contain '/'",
		{Binary: "/bin/true", CIDR: netip.MustParsePrefix("fd12:3456::/48")}: "pasta gives its IPv6 address a /64, so use a /64 (like fd12:3456::/64), or --net=netstack",
	} {
		if _, err := New(*cfg, Options{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(%+v) = %v, want %q", *cfg, err, want)
		}
	}
	t.Setenv("PATH", t.TempDir())
	_, err := New(network.Config{}, Options{})
	if err == nil || !strings.HasPrefix(err.Error(), "pasta not found in PATH: install it (apt-get install passt), or use --net=slirp4netns") {
		t.Errorf("New without pasta in PATH: %v", err)
	}
}

func TestStartRefusesPastaWithoutOptions(t *testing.T) {
	d, err := New(network.Config{Binary: "/bin/true"}, Options{ImplicitPorts: true})
	if err != nil {
		t.Fatal(err)
	}
	// /bin/true has no options at all: Start must refuse before running it.
	_, err = d.Start(t.Context(), network.Child{PID: 1})
	if err == nil || !strings.Contains(err.Error(), "install a newer passt") {
		t.Errorf("Start with a pasta without options: %v", err)
	}
}

func hostServer(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello from the host") })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

func TestDriverUnprivileged(t *testing.T) {
	for _, tc := range []struct {
		name     string
		detached bool
		noLoop   bool
		implicit bool
		ipv6     bool
	}{
		{name: "attached"},
		{name: "attached-implicit-ports", implicit: true},
		{name: "no-host-loopback", noLoop: true},
		{name: "detached", detached: true, implicit: true},
		{name: "ipv6", ipv6: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := hostServer(t)
			cfg := network.Config{DisableHostLoopback: tc.noLoop, IPv6: tc.ipv6}
			opts, _ := json.Marshal(Options{ImplicitPorts: tc.implicit})
			s := nstest.Start(t, nstest.Spec{Detached: tc.detached, Config: cfg, Options: opts})
			if s.Err != "" {
				t.Fatalf("Start: %s", s.Err)
			}
			t.Logf("Start took %.1f ms", s.StartMS)
			if !s.Setup.ConfiguredByDriver || s.Setup.Addr.String() != "10.0.2.100/24" || len(s.Setup.DNS) != 1 || s.Setup.DNS[0].String() != "10.0.2.3" {
				t.Errorf("Setup = %+v", s.Setup)
			}
			want := `{"driver":"pasta","dns":["10.0.2.3"],"childIP":"10.0.2.100"}`
			if tc.ipv6 {
				want = `{"driver":"pasta","dns":["10.0.2.3"],"childIP":"10.0.2.100","ipv6":true}`
			}
			if string(s.Info) != want {
				t.Errorf("Info = %s, want %s", s.Info, want)
			}
			// pasta configured the interface itself, before Start returned.
			addr, err := s.Exec(5*time.Second, "ip", "-4", "-o", "addr", "show", "dev", "tap0")
			if err != nil || !strings.Contains(addr, "inet 10.0.2.100/24") {
				t.Errorf("tap0 address: %v %s", err, addr)
			}
			route, err := s.Exec(5*time.Second, "ip", "-4", "route", "show", "default")
			if err != nil || !strings.Contains(route, "default via 10.0.2.2 dev tap0") {
				t.Errorf("default route: %v %s", err, route)
			}
			if tc.ipv6 && hostHasIPv6Route() {
				// pasta copies the host's IPv6 address and routes.
				out, err := s.Exec(5*time.Second, "ip", "-6", "route", "show", "default")
				if err != nil || !strings.Contains(out, "default via") {
					t.Errorf("no IPv6 default route inside with --ipv6: %v %s", err, out)
				}
			}
			if _, err := s.Exec(5*time.Second, "ip", "link", "set", "lo", "up"); err != nil {
				t.Fatal(err)
			}
			// Room for a loaded machine where the answer must come; a short
			// wait where none may.
			maxTime := "15"
			if tc.noLoop {
				maxTime = "3"
			}
			out, err := s.Exec(20*time.Second, "curl", "-sS", "--max-time", maxTime, fmt.Sprintf("http://10.0.2.2:%d/", port))
			if tc.noLoop {
				if err == nil {
					t.Errorf("reached the host's loopback via 10.0.2.2 with DisableHostLoopback: %s", out)
				}
				// Nor through pasta's mirror of host ports into the namespace's loopback.
				out, err = s.Exec(10*time.Second, "curl", "-sS", "--max-time", "3", fmt.Sprintf("http://127.0.0.1:%d/", port))
				if err == nil {
					t.Errorf("reached the host's loopback via 127.0.0.1 inside with DisableHostLoopback: %s", out)
				}
			} else if err != nil || out != "hello from the host" {
				t.Errorf("curl host loopback via 10.0.2.2: %v %q", err, out)
			}
			if tc.implicit {
				checkImplicit(t, s)
			}
			if !tc.implicit {
				// The host's loopback ports are not mirrored into the namespace,
				// so the command can bind the same port on its own 127.0.0.1.
				s.Listen(t, fmt.Sprintf("127.0.0.1:%d", port)).Close()
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if len(s.HelperPIDs) == 0 {
				t.Fatal("no helper process was seen")
			}
			if left := nstest.WaitGone(s.HelperPIDs, 10*time.Second); len(left) > 0 {
				t.Errorf("pasta %v still running after Close", left)
			}
		})
	}
}

func hostHasIPv6Route() bool {
	out, err := exec.Command("ip", "-6", "route", "show", "default").Output()
	return err == nil && strings.Contains(string(out), "default")
}

// checkImplicit serves inside the namespace and reaches it from the host's
// loopback through pasta's automatic forwarding.
func checkImplicit(t *testing.T, s *nstest.Session) {
	// Bound to the namespace's loopback only: connections from the host's
	// loopback land on the namespace's loopback, as with RootlessKit.
	l := s.Listen(t, "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello from inside") }))
	// pasta scans the namespace's bound ports about once a second (later
	// on a loaded machine).
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := (&http.Client{Timeout: time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "hello from inside" {
				t.Errorf("host → child via pasta: got %q", b)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("host → child port %d via pasta: %v", port, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestHelperDiesWithParent(t *testing.T) {
	s := nstest.Start(t, nstest.Spec{})
	if s.Err != "" {
		t.Fatalf("Start: %s", s.Err)
	}
	s.Kill()
	if left := nstest.WaitGone(s.HelperPIDs, 10*time.Second); len(s.HelperPIDs) == 0 || len(left) > 0 {
		t.Errorf("pasta %v (of %v) still running after its parent was SIGKILLed", left, s.HelperPIDs)
	}
}

func TestStartFailureSaysWhy(t *testing.T) {
	testutil.RequireTool(t, "pasta", "passt")
	d, err := New(network.Config{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Start(t.Context(), network.Child{PID: 1<<22 + 1})
	if err == nil {
		d.Close()
		t.Fatal("Start against a missing pid succeeded")
	}
	if !strings.HasPrefix(err.Error(), "start pasta: exited (exit status 1) before it was ready: ") || strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "syslog") {
		t.Errorf("error = %q", err)
	}
}

// Run by real root, pasta would drop to "nobody" and fail to join the
// child's user namespace; the driver keeps it root.
func TestDriverAsRoot(t *testing.T) {
	testutil.RequireRoot(t, "see that pasta keeps root")
	holder := exec.Command("unshare", "--user", "--map-root-user", "--net", "sleep", "30")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	pid := holder.Process.Pid
	// Wait until unshare has mapped root and exec'd sleep in the namespaces.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); string(comm) == "sleep\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("namespace holder did not unshare")
		}
	}
	d, err := New(network.Config{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Start(t.Context(), network.Child{PID: pid}); err != nil {
		t.Fatalf("Start as root: %v", err)
	}
	out, err := exec.Command("nsenter", "-t", fmt.Sprint(pid), "-n", "ip", "-4", "-o", "addr", "show", "dev", "tap0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "inet 10.0.2.100/24") {
		t.Errorf("tap0 as root: %v %s", err, out)
	}
}

// Which pasta forwards the UDP ports the command binds (--udp-ports=auto
// rescans since 2023_11_19), told by the options it lists and, where they
// leave it open, the version it reports.
func TestImplicitUDPWarning(t *testing.T) {
	mid := with(debian12, "--no-copy-routes", "--no-copy-addrs") // 2023_06_03 to 2024_06
	tests := []struct {
		name    string
		flags   map[string]bool
		version string // "" when pasta must not be asked
		want    string // in the warning; "" for none
	}{
		{"debian 12", debian12, "", "(passt older than 2023_06_03; Debian 12 ships 2023_03_09) forwards only TCP"},
		{"2024_08_21 and later", with(mid, "--map-host-loopback"), "", ""},
		{"2024_10_30 and later", with(mid, "--host-lo-to-ns-lo"), "", ""},
		{"upstream before the rescan", mid, "pasta 2023_11_10.5ec3634\nCopyright Red Hat\n", "(passt 2023_11_10) forwards only TCP"},
		{"upstream with the rescan", mid, "pasta 2023_11_19.4f1709d\n", ""},
		{"ubuntu 24.04", mid, "pasta 0.0~git20240220.1e6f92b-1\n", ""},
		{"fedora, before", mid, "pasta 0^20230908.g05627dc-1.fc39.x86_64\n", "(passt 2023_09_08)"},
		{"unknown version", mid, "pasta unknown version\nCopyright Red Hat\n", ""},
		{"no answer", mid, "", ""},
	}
	for _, tt := range tests {
		asked := false
		got := implicitUDPWarning("/usr/bin/pasta", tt.flags, func() string { asked = true; return tt.version })
		if asked && tt.version == "" && tt.name != "no answer" {
			t.Errorf("%s: ran pasta --version; the options tell", tt.name)
		}
		if tt.want == "" {
			if got != "" {
				t.Errorf("%s: warning %q, want none", tt.name, got)
			}
			continue
		}
		if !strings.Contains(got, tt.want) || strings.Contains(got, "\n") ||
			!strings.Contains(got, "--port-driver=builtin") || !strings.Contains(got, "install passt 2023_11_19 or newer") {
			t.Errorf("%s: warning %q, want one line with %q and both fixes", tt.name, got, tt.want)
		}
	}
}

func FuzzReleaseDate(f *testing.F) {
	for _, s := range []string{"pasta 2023_11_19.4f1709d", "pasta 0.0~git20240220.1e6f92b-1", "0^20240220.g1e6f92b", "unknown version", "20231119", "2023_1_1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, v := releaseDate(s)
		if (d == 0) != (v == "") {
			t.Fatalf("releaseDate(%q) = %d, %q: a date and its text go together", s, d, v)
		}
		if d != 0 && (d < 20000101 || d > 20991231 || len(v) != 10) {
			t.Fatalf("releaseDate(%q) = %d, %q: not a date", s, d, v)
		}
	})
}
