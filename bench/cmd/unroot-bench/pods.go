package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/unroot/unroot/bench/internal/parse"
	"github.com/unroot/unroot/bench/internal/report"
)

// ---- pod to pod across two simulated hosts ----
//
// Two hosts are two network namespaces joined by a veth pair (198.18.0.1
// and .2). Each runs a node of a flannel-style pod network, built by the
// script the cluster test uses (test/cluster/testdata/node.sh, without
// etcd): a vxlan device on UDP 8472 with static neighbour and FDB entries,
// a bridge and two pods. iperf3 runs from a pod of host 1 to a pod of host
// 2. The reference runs the script as root right in the host namespaces
// (a rootful node: the overlay over a plain veth); the others run it
// inside a launcher started by the test user in each host, with 8472/udp
// published by the builtin port driver, so VXLAN goes out through the
// user-mode network and in through the published port.

var podHosts = []string{"198.18.0.1", "198.18.0.2"}

func (h *harness) podsGroup() *group {
	g := &group{name: "pods", reps: 1, benches: []*report.Bench{
		{ID: "pod-tcp", Title: "Pod to pod TCP across two simulated hosts (iperf3; flannel-style VXLAN on 8472/udp, pod MTU 1450)", Unit: "Gbit/s", HigherIsBetter: true,
			Note: "Hosts are two network namespaces joined by a veth pair; each runs test/cluster/testdata/node.sh (vxlan on UDP 8472 with static neighbour and FDB entries, a bridge, two pods). Reference: the script as root in the host namespaces, the overlay over the plain veth. Others: the script inside the launcher, started by the test user in each host with -p 8472:8472/udp (builtin port driver; pasta's own, implicit, for pasta)."},
	}}
	g.variants = append(g.variants, variant{label: "rootful nodes over a veth pair (root)", peer: "ref", refKey: "pods", benches: []string{"pod-tcp"},
		run: func(ctx context.Context) (map[string]float64, error) { return h.podRun(ctx, nil, "", "") }})
	// RootlessKit's flags pair pasta with its own port driver (implicit);
	// `unroot run` may pair it with builtin.
	for _, p := range h.peers {
		if p.id == "unroot" {
			v := variant{label: "unroot run · pasta + builtin", peer: p.id, config: "pasta + builtin", refKey: "pods", benches: []string{"pod-tcp"}, skip: p.missing}
			if v.skip == "" {
				p := p
				v.run = func(ctx context.Context) (map[string]float64, error) { return h.podRun(ctx, p, "pasta", "builtin") }
			}
			g.variants = append(g.variants, v)
		}
	}
	for _, c := range []struct{ net, port string }{{"slirp4netns", "builtin"}, {"pasta", "implicit"}, {"netstack", "builtin"}} {
		g.variants = append(g.variants, h.peerVariants(c.net+" + "+c.port, c.net, c.port, "pods", []string{"pod-tcp"}, func(p *peer) func(context.Context) (map[string]float64, error) {
			return func(ctx context.Context) (map[string]float64, error) { return h.podRun(ctx, p, c.net, c.port) }
		})...)
	}
	// VXLAN arrives at the published UDP port. pasta's implicit driver
	// forwards only the ports it sees bound inside, and some pasta
	// (Debian 12's passt 2023-03-09) never forwards a UDP port bound after
	// it started: measure that once, and say so instead of failing.
	for i := range g.variants {
		v := &g.variants[i]
		if v.run == nil || v.config != "pasta + implicit" {
			continue
		}
		for _, p := range h.peers {
			if p.id == v.peer {
				if why := h.implicitUDPMissing(p); why != "" {
					v.run, v.skip, v.unsupported = nil, why, true
				}
			}
		}
	}
	return g
}

// implicitUDPMissing starts p with pasta's implicit port driver and a
// command that binds a UDP port, and says why the port was not bound on
// the host within 5 s (pasta rescans the namespace's ports every second),
// or "" when it was.
func (h *harness) implicitUDPMissing(p *peer) string {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	port, err := freeUDPPort()
	if err != nil {
		return ""
	}
	inner := fmt.Sprintf(`exec python3 -c 'import socket,time
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(("0.0.0.0",%d)); open("DIR/ready","w").close(); time.sleep(60)'`, port)
	s, err := h.launch(ctx, p, []string{"--net=pasta", "--port-driver=implicit", "--copy-up=/etc", "--disable-host-loopback"}, inner)
	if err != nil {
		return "" // the variant itself will fail and say why
	}
	defer s.stop(h)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		out, _, _ := h.runCmd(ctx, 5*time.Second, false, "ss", "-Hunl", fmt.Sprintf("sport = :%d", port))
		if strings.TrimSpace(out) != "" {
			return ""
		}
	}
	ver, _, _ := h.runCmd(ctx, 10*time.Second, false, "dpkg-query", "-W", "-f", "${Version}", "passt")
	return fmt.Sprintf("this pasta (passt %s) does not forward a UDP port the command binds with the implicit port driver (--udp-ports=auto): a probe's UDP port was never bound on the host, so VXLAN cannot come in", strings.TrimSpace(ver))
}

// freeUDPPort is a UDP port nothing on the host holds now.
func freeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// podRun makes the two hosts, starts a node in each (as root when p is
// nil, else inside p with network driver net and port driver port),
// measures and tears down.
func (h *harness) podRun(ctx context.Context, p *peer, net, port string) (map[string]float64, error) {
	script, err := os.ReadFile(filepath.Join(mustWd(), "test/cluster/testdata/node.sh"))
	if err != nil {
		return nil, fmt.Errorf("read the node script (run from the repository root): %w", err)
	}
	id := strconv.Itoa(os.Getpid())
	ns := []string{"unroot-bench-pa-" + id, "unroot-bench-pb-" + id}
	defer func() {
		h.cleanup()
		for _, n := range ns {
			_, _, _ = h.runCmd(context.Background(), 10*time.Second, false, "ip", "netns", "del", n)
		}
	}()
	if err := h.makePodHosts(ctx, id, ns); err != nil {
		return nil, err
	}
	if err := waitOldPodsGone(); err != nil {
		return nil, err
	}
	for i, n := range ns {
		if err := h.startPodNode(ctx, p, net, port, script, i, n); err != nil {
			return nil, err
		}
	}
	return h.measurePods(ctx)
}

// makePodHosts makes the two simulated hosts: network namespaces ns
// joined by a veth pair, each with its address from podHosts and a
// default route via the other.
func (h *harness) makePodHosts(ctx context.Context, id string, ns []string) error {
	steps := [][]string{
		{"netns", "add", ns[0]},
		{"netns", "add", ns[1]},
		{"link", "add", "ubpa" + id, "netns", ns[0], "type", "veth", "peer", "name", "ubpb" + id, "netns", ns[1]},
	}
	for i, n := range ns {
		dev := []string{"ubpa" + id, "ubpb" + id}[i]
		steps = append(steps,
			[]string{"-n", n, "addr", "add", podHosts[i] + "/24", "dev", dev},
			[]string{"-n", n, "link", "set", dev, "up"},
			[]string{"-n", n, "link", "set", "lo", "up"},
			// pasta copies the host's default route: give it one.
			[]string{"-n", n, "route", "add", "default", "via", podHosts[1-i]})
	}
	for _, s := range steps {
		if _, _, err := h.runCmd(ctx, 10*time.Second, false, "ip", s...); err != nil {
			return fmt.Errorf("make the simulated hosts: %w", err)
		}
	}
	return nil
}

// waitOldPodsGone waits up to 5 s for the pods of the last run, which die
// with their launcher, a moment after it.
func waitOldPodsGone() error {
	for deadline := time.Now().Add(5 * time.Second); pidOf("pod-1-2") != 0 || pidOf("pod-2-3") != 0; {
		if time.Now().After(deadline) {
			return errors.New("pods of an earlier run are still alive after 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// startPodNode starts node i+1 (the node script) in the simulated host n
// and waits up to 30 s for it to be ready.
func (h *harness) startPodNode(ctx context.Context, p *peer, net, port string, script []byte, i int, n string) error {
	dir, err := h.scratch()
	if err != nil {
		return err
	}
	sh := filepath.Join(dir, "node.sh")
	if err := os.WriteFile(sh, script, 0o755); err != nil {
		return err
	}
	st, err := h.start(h.command(ctx, false, "nsenter", h.podNodeArgs(p, net, port, sh, dir, i, n)...))
	if err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for !exists(filepath.Join(dir, "ready")) {
		if st.exited() {
			return fmt.Errorf("node %d exited before it was ready (%v): %s", i+1, st.err, tail(st.stderr.String()+"\n"+st.stdout.String(), 3))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("node %d not ready after 30 s: %s", i+1, tail(st.stderr.String(), 3))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// podNodeArgs is nsenter's command line that runs the node script sh in
// the simulated host n: as root when p is nil, else as the user inside
// p's launcher with network driver net and port driver port.
func (h *harness) podNodeArgs(p *peer, net, port, sh, dir string, i int, n string) []string {
	env := []string{"env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + h.home, "XDG_RUNTIME_DIR=" + filepath.Join(h.work, "run"),
		"TMPDIR=/tmp", "LANG=C.UTF-8", "NODE=" + strconv.Itoa(i+1), "HOSTS=" + strings.Join(podHosts, " "), "DIR=" + dir, "ETCD=0"}
	args := []string{"--net=/run/netns/" + n, "--"}
	if p == nil {
		return append(append(args, env...), "bash", sh)
	}
	args = append(args, "setpriv", "--reuid="+strconv.Itoa(h.uid), "--regid="+strconv.Itoa(h.gid), "--init-groups", "--")
	launcher := []string{p.bin}
	if net == "pasta" && port == "builtin" {
		launcher = []string{filepath.Join(h.o.unroot, "unroot"), "run"}
	}
	return append(append(append(args, env...), launcher...), "--net="+net, "--port-driver="+port, "--copy-up=/etc", "--disable-host-loopback", "--pidns",
		"--state-dir="+filepath.Join(dir, "state"), "-p", "0.0.0.0:8472:8472/udp", "--", "bash", sh)
}

// measurePods runs iperf3 from pod 10.244.1.2 to pod 10.244.2.3 across
// the overlay and returns the goodput.
func (h *harness) measurePods(ctx context.Context) (map[string]float64, error) {
	client, server := pidOf("pod-1-2"), pidOf("pod-2-3")
	if client == 0 || server == 0 {
		return nil, fmt.Errorf("the pods did not start (pod-1-2 pid %d, pod-2-3 pid %d)", client, server)
	}
	if err := h.startPodServer(ctx, server); err != nil {
		return nil, err
	}
	// The first connection may wait for the overlay's first packets.
	var last error
	for try := 0; try < 3; try++ {
		out, _, err := h.runCmd(ctx, h.o.duration+30*time.Second, false, "nsenter", inPod(client, "iperf3", "-c", "10.244.2.3", "-p", "5201", "--connect-timeout", "5000", "-t", strconv.Itoa(h.secs()), "-J")...)
		r, perr := parse.ParseIperf3([]byte(out))
		if err == nil && perr == nil {
			return map[string]float64{"pod-tcp": gbps(r.Goodput())}, nil
		}
		last = errors.Join(err, perr)
	}
	return nil, fmt.Errorf("iperf3 between the pods: %w", last)
}

// startPodServer starts an iperf3 server in the pod whose holder is server
// and waits up to 10 s for it to listen.
func (h *harness) startPodServer(ctx context.Context, server int) error {
	srv, err := h.start(h.command(ctx, false, "nsenter", inPod(server, "iperf3", "-s", "-p", "5201")...))
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		out, _, _ := h.runCmd(ctx, 5*time.Second, false, "nsenter", inPod(server, "ss", "-Hltn", "sport = :5201")...)
		if strings.TrimSpace(out) != "" {
			return nil
		}
		if srv.exited() || time.Now().After(deadline) {
			return fmt.Errorf("iperf3 server in pod 10.244.2.3 did not start: %s", tail(srv.stderr.String(), 2))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// inPod is nsenter's arguments that run args in the network namespace
// of the process pid.
func inPod(pid int, args ...string) []string {
	return append([]string{"-t", strconv.Itoa(pid), "-n", "--"}, args...)
}

// pidOf finds the process whose argv[0] is name (node.sh names each pod's
// holder pod-N-P), or 0.
func pidOf(name string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline"); strings.HasPrefix(string(b), name+"\x00") {
			return pid
		}
	}
	return 0
}
