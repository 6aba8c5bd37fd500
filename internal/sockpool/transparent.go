package sockpool

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/unroot/unroot/internal/operr"
)

// Mark is the fwmark and routing table used for transparent sockets.
const Mark = 100

// SetupTransparent makes replies to connections from foreign (client)
// source addresses come back to the local socket, in the current thread's
// netns. Policy routing, over netlink: fwmark 100 → table 100 → local
// default dev lo, v4 and v6, and replies sent from loopback look up table
// 100 too, which is all a server on the child's loopback needs. With
// connmark, for servers on other addresses: tcp_fwmark_accept so accepted
// sockets inherit the mark, and connmark rules that mark the replies of
// connections we originated from a foreign address. Those take iptables,
// the one program the namespace init runs, or nft when firewall is "nft"
// (or "auto" without iptables). It is idempotent.
func SetupTransparent(connmark bool, firewall string) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		dst := &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}
		if fam == netlink.FAMILY_V6 {
			dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		}
		r := &netlink.Route{LinkIndex: lo.Attrs().Index, Dst: dst, Table: Mark, Type: 2 /* RTN_LOCAL */, Scope: netlink.SCOPE_HOST, Family: fam}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("add local default route to table %d (family %d): %w", Mark, fam, err)
		}
		rule := netlink.NewRule()
		rule.Family = fam
		rule.Mark = Mark
		rule.Table = Mark
		rule.Priority = Mark
		if err := netlink.RuleAdd(rule); err != nil && !os.IsExist(err) {
			return fmt.Errorf("add rule fwmark %d lookup %d (family %d): %w", Mark, Mark, fam, err)
		}
		// Replies from a server on loopback to a foreign client address
		// (UDP included, which connmark above does not cover) are delivered
		// locally too. Packets from loopback can never leave a netns, so
		// this changes no other traffic.
		from := netlink.NewRule()
		from.Family, from.Table, from.Priority = fam, Mark, Mark
		from.Src = &net.IPNet{IP: net.IPv4(127, 0, 0, 0).To4(), Mask: net.CIDRMask(8, 32)}
		if fam == netlink.FAMILY_V6 {
			from.Src = &net.IPNet{IP: net.IPv6loopback, Mask: net.CIDRMask(128, 128)}
		}
		if err := netlink.RuleAdd(from); err != nil && !os.IsExist(err) {
			return fmt.Errorf("add rule from %s lookup %d: %w", from.Src, Mark, err)
		}
	}
	if !connmark {
		return nil
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/tcp_fwmark_accept", []byte("1"), 0); err != nil {
		return fmt.Errorf("set net.ipv4.tcp_fwmark_accept: %w", err)
	}
	if useNFT(firewall) {
		return connmarkNFT()
	}
	for _, bin := range []string{"iptables", "ip6tables"} {
		for _, rule := range [][]string{
			{"OUTPUT", "-p", "tcp", "-m", "addrtype", "!", "--src-type", "LOCAL", "-j", "CONNMARK", "--set-mark", "100"},
			{"PREROUTING", "-p", "tcp", "-m", "connmark", "--mark", "100", "-j", "MARK", "--set-mark", "100"},
		} {
			if err := iptables(bin, append([]string{"-t", "mangle", "-C"}, rule...)); err == nil {
				continue
			}
			if err := iptables(bin, append([]string{"-t", "mangle", "-A"}, rule...)); err != nil {
				return err
			}
		}
	}
	return nil
}

// helperTimeout bounds one iptables run; -w waits at most 5 s of it for
// the xtables lock.
var helperTimeout = 20 * time.Second

// ExecMu is held for reading while a helper program runs in the namespace
// init. Its reaper, which waits for any child, takes it for writing before
// reaping, so it cannot collect a helper's exit status before os/exec does
// ("waitid: no child processes").
var ExecMu sync.RWMutex

func iptables(bin string, args []string) error {
	path, err := exec.LookPath(bin)
	if err != nil {
		return operr.Errorf(operr.IPTables, bin, "find %s: %w (install iptables, or disable source-IP preservation with --source-ip-transparent=false)", bin, err)
	}
	// A helper that hangs would leave the connections waiting for the
	// preparation waiting for good; give up on it instead, and let them
	// connect plainly.
	ctx, cancel := context.WithTimeout(context.Background(), helperTimeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, path, append([]string{"-w", "5"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	// Run in the namespace's own xtables lock, not the host's /run.
	cmd.Env = append(os.Environ(), "XTABLES_LOCKFILE=/dev/null")
	ExecMu.RLock()
	err = cmd.Run()
	ExecMu.RUnlock()
	if ctx.Err() != nil {
		return operr.Errorf(operr.IPTables, bin, "run %s %s: no answer within %v (a program holding the xtables lock in the namespace? --source-ip-transparent=false skips this)", bin, strings.Join(args, " "), helperTimeout)
	}
	if err != nil {
		return operr.Errorf(operr.IPTables, bin, "run %s %s: %w: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}
