package sockpool

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// nftTable holds the connmark rules when nft makes them.
const nftTable = "unroot"

// nftRules are the iptables rules of SetupTransparent in nft's words: the
// replies of connections made from a foreign (client) address are marked
// in OUTPUT, and packets of marked connections get the fwmark in
// PREROUTING. One inet table covers IPv4 and IPv6.
var nftRules = fmt.Sprintf(`table inet %[1]s {
	chain output {
		type filter hook output priority mangle; policy accept;
		meta l4proto tcp fib saddr type != local ct mark set %[2]d
	}
	chain prerouting {
		type filter hook prerouting priority mangle; policy accept;
		meta l4proto tcp ct mark %[2]d meta mark set %[2]d
	}
}
`, nftTable, Mark)

// useNFT picks the firewall: nft when asked, or for auto when iptables is
// missing.
func useNFT(firewall string) bool {
	switch firewall {
	case "nft":
		return true
	case "auto":
		if _, err := exec.LookPath("iptables"); err != nil {
			if _, err := exec.LookPath("nft"); err == nil {
				return true
			}
		}
	}
	return false
}

// connmarkNFT loads nftRules, once: a table that exists already is kept.
func connmarkNFT() error {
	path, err := exec.LookPath("nft")
	if err != nil {
		return fmt.Errorf("find nft: %w (install nftables, use --source-ip-transparent-backend=iptables, or disable source-IP preservation with --source-ip-transparent=false)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), helperTimeout)
	defer cancel()
	run := func(stdin string, args ...string) (string, error) {
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, path, args...)
		cmd.Stdin = strings.NewReader(stdin)
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.Env = os.Environ()
		ExecMu.RLock()
		err := cmd.Run()
		ExecMu.RUnlock()
		return strings.TrimSpace(out.String()), err
	}
	if _, err := run("", "list", "table", "inet", nftTable); err == nil {
		return nil
	}
	if out, err := run(nftRules, "-f", "-"); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("run nft -f: no answer within %v (--source-ip-transparent=false skips this)", helperTimeout)
		}
		return fmt.Errorf("run nft -f (the connmark rules): %w: %s", err, out)
	}
	return nil
}
