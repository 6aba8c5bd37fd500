// Command udp-ceiling is a yardstick for the UDP rows of bench/: it sends
// 1400-byte datagrams, paced, from one socket to a sink that reads them one
// at a time (as iperf3 -u does), once straight over loopback and once
// through a published port of the builtin port driver, in the same process
// and the same run, and reports the goodput of the fastest rate with < 1%
// loss for each and their ratio. No namespaces and no launcher: it
// measures the forwarder's own ceiling on this machine.
//
//	go run ./bench/cmd/udp-ceiling [-secs 1] [-rounds 3] [-path both|loopback|published]
//
// With -path loopback or published it measures that path only and prints
// the median in Gbit/s alone on stdout (bench/run.sh's udp rows use this).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/unroot/unroot/internal/sys"
	"github.com/unroot/unroot/port"
	"github.com/unroot/unroot/port/builtin"
)

// hostSockets hands out sockets of this process's own network namespace.
type hostSockets struct{}

func (hostSockets) Socket(ctx context.Context, family, sotype int) (int, error) {
	return sys.Socket(family, sotype)
}

func (hostSockets) EnableTransparent(ctx context.Context, connmark bool) error {
	return errors.New("no namespace")
}

const size = 1400

func main() {
	secs := flag.Float64("secs", 1, "seconds per rate tried")
	rounds := flag.Int("rounds", 3, "rounds (each a full rate search on both paths)")
	path := flag.String("path", "both", "both, loopback or published")
	flag.Parse()
	if *path != "both" && *path != "loopback" && *path != "published" {
		fmt.Fprintf(os.Stderr, "udp-ceiling: -path %q: use both, loopback or published\n", *path)
		os.Exit(1)
	}
	if err := run(time.Duration(*secs*float64(time.Second)), *rounds, *path); err != nil {
		fmt.Fprintln(os.Stderr, "udp-ceiling:", err)
		os.Exit(1)
	}
}

func run(d time.Duration, rounds int, only string) error {
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer sink.Close()
	sink.SetReadBuffer(4 << 20)
	var got atomic.Int64
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := sink.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if n == size {
				got.Add(1)
			}
		}
	}()
	drv, err := builtin.New(context.Background(), port.Env{Sockets: hostSockets{}})
	if err != nil {
		return err
	}
	defer drv.Close()
	pl, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	pp := pl.LocalAddr().(*net.UDPAddr).Port
	pl.Close()
	spec := port.Spec{Proto: "udp", ParentPort: pp, ChildPort: sink.LocalAddr().(*net.UDPAddr).Port}
	spec.ParentIP = netip.MustParseAddr("127.0.0.1")
	if _, err := drv.Add(context.Background(), spec); err != nil {
		return err
	}
	paths := []struct {
		key  string
		name string
		addr netip.AddrPort
		rate float64 // datagrams/s to start the next search from
		best []float64
	}{
		{key: "loopback", name: "loopback (sender → sink)", addr: sink.LocalAddr().(*net.UDPAddr).AddrPort(), rate: 50000},
		{key: "published", name: "published port (sender → builtin → sink)", addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(pp)), rate: 50000},
	}
	for r := 0; r < rounds; r++ {
		for i := range paths {
			p := &paths[i]
			if only != "both" && p.key != only {
				continue
			}
			best, next, err := search(p.addr, p.rate, d, &got)
			if err != nil {
				return err
			}
			p.rate = next
			p.best = append(p.best, best)
			fmt.Fprintf(os.Stderr, "round %d %s: %.3f Gbit/s\n", r+1, p.name, best*size*8/1e9)
		}
	}
	med := func(xs []float64) float64 {
		s := slices.Clone(xs)
		slices.Sort(s)
		return s[len(s)/2]
	}
	if only != "both" {
		for _, p := range paths {
			if p.key == only {
				fmt.Printf("%.4f\n", med(p.best)*size*8/1e9)
			}
		}
		return nil
	}
	lo, fw := med(paths[0].best), med(paths[1].best)
	fmt.Printf("| path | goodput at < 1%% loss, Gbit/s (median of %d) |\n|---|---:|\n", rounds)
	for _, p := range paths {
		fmt.Printf("| %s | %.3f |\n", p.name, med(p.best)*size*8/1e9)
	}
	fmt.Printf("\nratio published/loopback: %.2f×\n", fw/lo)
	return nil
}

// search looks for the edge from start datagrams/s, 10 tries of d each:
// up 30% while runs pass (< 1% loss), then halving the gap between the
// highest pass and the lowest fail; after a fail with no pass yet, down to
// 90% of what arrived. It returns the best passing rate (datagrams/s that
// arrived) and the highest passing rate tried, to start the next search
// from.
func search(dst netip.AddrPort, start float64, d time.Duration, got *atomic.Int64) (best, next float64, err error) {
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	c.SetWriteBuffer(4 << 20)
	msg := make([]byte, size)
	rate, pass, fail := start, 0.0, 0.0
	for try := 0; try < 10; try++ {
		got.Store(0)
		sent, took := blast(c, msg, rate, d)
		time.Sleep(100 * time.Millisecond) // what is in flight arrives
		recv := got.Load()
		// A sender that fell behind its rate sends its backlog late: the
		// rate is over the time it really took.
		arrived := float64(recv) / took.Seconds()
		if sent > 0 && float64(recv) >= 0.99*float64(sent) {
			pass, best = max(pass, rate), max(best, arrived)
		} else if fail == 0 || rate < fail {
			fail = rate
		}
		switch {
		case pass == 0:
			rate = max(1000, arrived*0.9)
		case fail == 0:
			rate = pass * 1.3
		case fail/pass < 1.05:
			return best, pass, nil
		default:
			rate = (pass + fail) / 2
		}
	}
	return best, max(pass, start/2), nil
}

// blast sends at rate datagrams/s for d, in bursts every millisecond, and
// returns how many it sent and how long that took.
func blast(c *net.UDPConn, msg []byte, rate float64, d time.Duration) (int64, time.Duration) {
	var sent int64
	t0 := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for now := t0; now.Sub(t0) < d; now = <-tick.C {
		due := int64(rate * now.Sub(t0).Seconds())
		for ; sent < due; sent++ {
			c.Write(msg)
		}
	}
	return sent, time.Since(t0)
}
