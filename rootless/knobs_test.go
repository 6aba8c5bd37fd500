package rootless

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestParseKnobs(t *testing.T) {
	def := K3s().Defaults
	tests := []struct {
		name    string
		env     func(string) string
		check   func(Settings) bool
		warn    string // substring of the only warning; "" means none
		wantErr string
	}{
		{"defaults", env(), func(s Settings) bool {
			return s.MTU == 0 && s.CIDR == netip.MustParsePrefix("10.41.0.0/16") && !s.IPv6 &&
				s.PortDriver == "builtin" && s.DisableHostLoopback && slices.Equal(s.CopyUp, def.CopyUp)
		}, "", ""},
		{"mtu", env("K3S_ROOTLESS_MTU", "1500"), func(s Settings) bool { return s.MTU == 1500 }, "", ""},
		{"mtu spaces", env("K3S_ROOTLESS_MTU", " 9000 "), func(s Settings) bool { return s.MTU == 9000 }, "", ""},
		{"mtu bad", env("K3S_ROOTLESS_MTU", "abc"), func(s Settings) bool { return s.MTU == 0 }, `K3S_ROOTLESS_MTU="abc": not a number`, ""},
		{"mtu too big", env("K3S_ROOTLESS_MTU", "70000"), func(s Settings) bool { return s.MTU == 0 }, "mtu must be <= 65521", ""},
		{"mtu too small", env("K3S_ROOTLESS_MTU", "10"), func(s Settings) bool { return s.MTU == 0 }, "too small", ""},
		{"cidr", env("K3S_ROOTLESS_CIDR", "10.42.0.0/24"), func(s Settings) bool { return s.CIDR == netip.MustParsePrefix("10.42.0.0/24") }, "", ""},
		{"cidr host bits", env("K3S_ROOTLESS_CIDR", "10.0.2.100/24"), nil, "", "K3S_ROOTLESS_CIDR: cidr must be like 10.0.2.0/24, not like 10.0.2.100/24"},
		{"cidr garbage", env("K3S_ROOTLESS_CIDR", "ten"), nil, "", "not an address/length pair"},
		{"cidr v6", env("K3S_ROOTLESS_CIDR", "fd00::/64"), nil, "", "K3S_ROOTLESS_CIDR: cidr fd00::/64 is IPv6: the network here is slirp4netns', which is IPv4 (with K3S_ROOTLESS_ENABLE_IPV6=true adding fd00::/64)"},
		{"ipv6", env("K3S_ROOTLESS_ENABLE_IPV6", "true"), func(s Settings) bool { return s.IPv6 }, "", ""},
		{"ipv6 1", env("K3S_ROOTLESS_ENABLE_IPV6", "1"), func(s Settings) bool { return s.IPv6 }, "", ""},
		{"ipv6 bad", env("K3S_ROOTLESS_ENABLE_IPV6", "yes"), func(s Settings) bool { return !s.IPv6 }, `K3S_ROOTLESS_ENABLE_IPV6="yes": not a boolean`, ""},
		{"loopback off", env("K3S_ROOTLESS_DISABLE_HOST_LOOPBACK", "false"), func(s Settings) bool { return !s.DisableHostLoopback }, "", ""},
		{"loopback bad", env("K3S_ROOTLESS_DISABLE_HOST_LOOPBACK", "nope"), func(s Settings) bool { return s.DisableHostLoopback }, "using the default (true)", ""},
		{"port slirp", env("K3S_ROOTLESS_PORT_DRIVER", "slirp4netns"), func(s Settings) bool { return s.PortDriver == "slirp4netns" }, "", ""},
		{"port case", env("K3S_ROOTLESS_PORT_DRIVER", "Builtin"), func(s Settings) bool { return s.PortDriver == "builtin" }, "", ""},
		{"port unknown", env("K3S_ROOTLESS_PORT_DRIVER", "vpnkit"), func(s Settings) bool { return s.PortDriver == "builtin" }, `K3S_ROOTLESS_PORT_DRIVER="vpnkit": unknown port driver`, ""},
		{"copyup", env("K3S_ROOTLESS_COPYUPDIRS", "/opt, /srv,,"), func(s Settings) bool {
			return slices.Equal(s.CopyUp, append(slices.Clone(def.CopyUp), "/opt", "/srv"))
		}, "", ""},
		{"copyup relative", env("K3S_ROOTLESS_COPYUPDIRS", "opt"), nil, "", "K3S_ROOTLESS_COPYUPDIRS: copy-up \"opt\": must be an absolute path"},
		{"copyup tmp", env("K3S_ROOTLESS_COPYUPDIRS", "/opt,/tmp"), nil, "", "copy-up \"/tmp\""},
		{"bypass", env("K3S_ROOTLESS_BYPASS", "true"), func(s Settings) bool { return s.Bypass == "true" }, "", ""},
		{"bypass auto", env("K3S_ROOTLESS_BYPASS", "Auto"), func(s Settings) bool { return s.Bypass == "auto" }, "", ""},
		{"bypass 0", env("K3S_ROOTLESS_BYPASS", "0"), func(s Settings) bool { return s.Bypass == "false" }, "", ""},
		{"bypass bad", env("K3S_ROOTLESS_BYPASS", "fast"), func(s Settings) bool { return s.Bypass == "false" }, `K3S_ROOTLESS_BYPASS="fast": use true, false or auto`, ""},
		{"other prefix ignored", env("FOO_ROOTLESS_MTU", "1500"), func(s Settings) bool { return s.MTU == 0 }, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, warns, err := ParseKnobs("K3S", tt.env, def)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.warn == "" && len(warns) > 0 {
				t.Errorf("unexpected warnings %q", warns)
			}
			if tt.warn != "" && (len(warns) != 1 || !strings.Contains(warns[0], tt.warn)) {
				t.Errorf("warnings %q, want one containing %q", warns, tt.warn)
			}
			if !tt.check(s) {
				t.Errorf("settings %+v", s)
			}
		})
	}
}

func TestParseKnobsKeepsDefaultsSlice(t *testing.T) {
	def := K3s().Defaults
	before := slices.Clone(def.CopyUp)
	if _, _, err := ParseKnobs("K3S", env("K3S_ROOTLESS_COPYUPDIRS", "/opt"), def); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(def.CopyUp, before) {
		t.Fatalf("defaults changed: %q", def.CopyUp)
	}
}

func FuzzParseKnobs(f *testing.F) {
	f.Add("1500", "10.41.0.0/16", "true", "builtin", "false", "/opt")
	f.Add("x", "10.0.2.100/24", "maybe", "vpnkit", "", "/tmp,rel")
	f.Add("-1", "::/0", "", "", "0", ",,,")
	def := K3s().Defaults
	f.Fuzz(func(t *testing.T, mtu, cidr, v6, pd, lo, cu string) {
		get := env("K3S_ROOTLESS_MTU", mtu, "K3S_ROOTLESS_CIDR", cidr, "K3S_ROOTLESS_ENABLE_IPV6", v6,
			"K3S_ROOTLESS_PORT_DRIVER", pd, "K3S_ROOTLESS_DISABLE_HOST_LOOPBACK", lo, "K3S_ROOTLESS_COPYUPDIRS", cu)
		s, warns, err := ParseKnobs("K3S", get, def)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if s.PortDriver != PortDriverBuiltin && s.PortDriver != PortDriverSlirp4netns {
			t.Fatalf("port driver %q", s.PortDriver)
		}
		if s.CIDR.Masked() != s.CIDR || !s.CIDR.Addr().Is4() {
			t.Fatalf("cidr %v accepted", s.CIDR)
		}
		if s.MTU != 0 && (s.MTU < 68 || s.MTU > 65521) {
			t.Fatalf("mtu %d accepted", s.MTU)
		}
		if len(warns) > 4 {
			t.Fatalf("%d warnings for 4 lenient knobs", len(warns))
		}
		for _, d := range s.CopyUp {
			if !strings.HasPrefix(d, "/") || d == "/tmp" {
				t.Fatalf("copy-up %q accepted", d)
			}
		}
	})
}

func TestCheckSysctls(t *testing.T) {
	values := map[string]string{"kernel.unprivileged_userns_clone": "1", "net.ipv4.ip_forward": "0"}
	read := func(k string) (string, error) {
		if v, ok := values[k]; ok {
			return v, nil
		}
		return "", errors.New("no such file")
	}
	k3s := K3s().Sysctls
	err := CheckSysctls(k3s, read)
	want := "expected sysctl value \"net.ipv4.ip_forward\" to be \"1\", got \"0\"; try adding \"net.ipv4.ip_forward=1\" to /etc/sysctl.conf and running `sudo sysctl --system`"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	if err := CheckSysctls(k3s[:1], read); err != nil {
		t.Fatalf("userns_clone=1: %v", err)
	}
	if err := CheckSysctls([]Sysctl{{Key: "kernel.absent", Value: "1"}}, read); err != nil {
		t.Fatalf("absent key must be skipped: %v", err)
	}
}

func TestReadSysctl(t *testing.T) {
	// kernel.ostype exists on every Linux and reads "Linux".
	v, err := ReadSysctl("kernel.ostype")
	if err != nil || v != "Linux" {
		t.Fatalf("ReadSysctl(kernel.ostype) = %q, %v", v, err)
	}
	if _, err := ReadSysctl("kernel.no_such_setting"); err == nil {
		t.Fatal("missing key read without error")
	}
}

func TestPlanCgroup(t *testing.T) {
	yes := func(string) bool { return true }
	no := func(string) bool { return false }
	tests := []struct {
		name      string
		h         cgroupHost
		evac, msg string
	}{
		{"v1 only", cgroupHost{selfCgroup: []byte("1:cpu:/\n"), unified: false, writable: yes}, "", Cgroup2Warning},
		{"hybrid", cgroupHost{selfCgroup: []byte("1:cpu:/\n0::/\n"), unified: false, writable: yes}, "", Cgroup2Warning},
		{"v2 writable", cgroupHost{selfCgroup: []byte("0::/user.slice/k3s.service\n"), unified: true, writable: yes}, "k3s_evac", ""},
		{"v2 not writable", cgroupHost{selfCgroup: []byte("0::/user.slice\n"), unified: true, writable: no}, "", "systemd unit"},
	}
	for _, tt := range tests {
		evac, msg := planCgroup(tt.h, "k3s_evac", "k3s")
		if evac != tt.evac || (tt.msg == "") != (msg == "") || !strings.Contains(msg, tt.msg) {
			t.Errorf("%s: planCgroup = %q, %q; want %q, %q", tt.name, evac, msg, tt.evac, tt.msg)
		}
	}
}

func TestKnobVarAndMarkers(t *testing.T) {
	p := K3s()
	if KnobVar(p.Prefix, KnobCIDR) != "K3S_ROOTLESS_CIDR" || p.DaemonMarker() != "_K3S_ROOTLESS_SOCK" {
		t.Fatalf("names: %s %s", KnobVar(p.Prefix, KnobCIDR), p.DaemonMarker())
	}
}

func TestLauncherNeedsPrefix(t *testing.T) {
	_, err := Profile{}.Launcher("")
	if err == nil || !strings.Contains(err.Error(), "Prefix is empty") {
		t.Fatalf("err = %v", err)
	}
}

func TestRunAgainInDaemonPhase(t *testing.T) {
	// Once the daemon phase has returned, another Run (another Profile
	// even) must not start a nested launcher.
	d := Daemon{Sock: "/run/x/api.sock", StateDir: "/run/x"}
	current = &d
	t.Cleanup(func() { current = nil })
	got, err := Profile{Prefix: "K3S", Sysctls: []Sysctl{{Key: "kernel.ostype", Value: "never"}}}.Run("")
	if err != nil || got != d {
		t.Fatalf("Run = %+v, %v; want %+v", got, err, d)
	}
}
