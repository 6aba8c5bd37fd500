// Command fwdclient is the client the forward e2e tests run inside the
// namespaces: `fwdclient tcp|udp ADDR:PORT MSG` sends MSG (a line for TCP,
// a datagram for UDP) and prints the one answer. ADDR may be @IFNAME for
// that interface's first IPv4 address (the tap's), or @IFNAME6 for its
// first global IPv6 one.
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: fwdclient tcp|udp ADDR:PORT MSG")
		os.Exit(2)
	}
	proto, addr, msg := os.Args[1], os.Args[2], os.Args[3]
	if strings.HasPrefix(addr, "@") {
		name, port, _ := strings.Cut(addr[1:], ":")
		want6 := strings.HasSuffix(name, "6")
		ifi, err := net.InterfaceByName(strings.TrimSuffix(name, "6"))
		if err != nil {
			fail(err)
		}
		as, _ := ifi.Addrs()
		addr = ""
		for _, a := range as {
			ip := a.(*net.IPNet).IP
			if (ip.To4() != nil) != want6 && (!want6 || ip.IsGlobalUnicast()) {
				addr = net.JoinHostPort(ip.String(), port)
				break
			}
		}
		if addr == "" {
			fail(fmt.Errorf("no address on %s", name))
		}
	}
	c, err := net.DialTimeout(proto, addr, 5*time.Second)
	if err != nil {
		fail(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if proto == "udp" {
		c.Write([]byte(msg))
		b := make([]byte, 65535)
		n, err := c.Read(b)
		if err != nil {
			fail(err)
		}
		fmt.Println(string(b[:n]))
		return
	}
	fmt.Fprintln(c, msg)
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		fail(err)
	}
	fmt.Print(line)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "fwdclient:", err)
	os.Exit(1)
}
