package netconf

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/unroot/unroot/internal/sys"
	"github.com/unroot/unroot/internal/testutil/userns"
	"github.com/unroot/unroot/network"
)

// Configuration runs in a helper process (this test binary re-executed) in
// new user and network namespaces, on a real tap device.
func TestMain(m *testing.M) {
	if os.Getenv("NETCONF_TEST_HELPER") != "" {
		os.Exit(helper())
	}
	os.Exit(m.Run())
}

func helper() int {
	tap, err := sys.OpenTap("tap0", false)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer tap.Close()
	s := network.Setup{
		IfName:  "tap0",
		Addr:    netip.MustParsePrefix("10.0.2.100/24"),
		Gateway: netip.MustParseAddr("10.0.2.2"),
		MTU:     65520,
		Addr6:   netip.MustParsePrefix("fd00::100/64"),
	}
	// Twice: configuring must be idempotent.
	var index int
	for range 2 {
		var err error
		if index, err = Up(s); err != nil {
			fmt.Println(err)
			return 1
		}
	}
	link, _ := netlink.LinkByName("tap0")
	fmt.Printf("index-matches=%v\n", index == link.Attrs().Index)
	addrs, _ := netlink.AddrList(link, netlink.FAMILY_ALL)
	routes, _ := netlink.RouteList(link, netlink.FAMILY_V4)
	fmt.Printf("mtu=%d up=%v\n", link.Attrs().MTU, link.Attrs().Flags&1 != 0)
	for _, a := range addrs {
		fmt.Printf("addr=%s\n", a.IPNet)
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
			fmt.Printf("default=%s\n", r.Gw)
		}
	}
	lo, _ := netlink.LinkByName("lo")
	fmt.Printf("lo-up=%v lo-index=%d\n", lo.Attrs().Flags&1 != 0, lo.Attrs().Index)
	i, err := sys.IfIndex("tap0")
	fmt.Printf("linkindex-matches=%v\n", err == nil && i == link.Attrs().Index)
	if _, err := sys.IfIndex("nosuchdev0"); err != nil {
		fmt.Printf("missing: %v\n", err)
	}
	if _, err := Up(network.Setup{IfName: "nosuchdev0", MTU: 1500}); err != nil {
		fmt.Printf("up missing: %v\n", err)
	}
	return 0
}

func TestConfigure(t *testing.T) {
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), "NETCONF_TEST_HELPER=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	userns.Require(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	for _, want := range []string{"index-matches=true", "mtu=65520 up=true", "addr=10.0.2.100/24", "addr=fd00::100/64", "default=10.0.2.2", "lo-up=true lo-index=1", "linkindex-matches=true",
		"missing: find nosuchdev0: no such device",
		"up missing: find nosuchdev0: no such device (the network driver did not create it)"} {
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("inside the namespace: missing %q in\n%s", want, out)
		}
	}
}

func TestConfigureSkipsDriverConfigured(t *testing.T) {
	// Nothing to do, so no netlink request is made even outside a
	// namespace (where changing a device would fail without privileges).
	h, err := newHandle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, s := range []network.Setup{{IfName: "tap0", ConfiguredByDriver: true}, {}} {
		if idx, err := configure(h, s); idx != 0 || err != nil {
			t.Errorf("configure(%+v) = %d, %v; want 0, nil", s, idx, err)
		}
	}
}
