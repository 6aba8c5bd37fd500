package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/unroot/unroot/bench/internal/parse"
)

// The harness is a child subreaper (set in main), so a helper that
// daemonizes (pasta does) is re-parented to the harness instead of init and
// stays in the tree that is measured and then killed.

type proc struct {
	pid int
	parse.Stat
	zombie bool
}

// procs reads every process on the machine.
func procs() map[int]proc {
	out := map[int]proc{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		st, err := parse.ParseStat(string(b))
		if err != nil {
			continue
		}
		out[pid] = proc{pid: pid, Stat: st, zombie: st.State == "Z" || st.State == "X"}
	}
	return out
}

// descendants of the harness, live and zombie.
func descendants() []proc {
	all := procs()
	kids := map[int][]int{}
	for pid, p := range all {
		kids[p.PPid] = append(kids[p.PPid], pid)
	}
	var out []proc
	queue := []int{os.Getpid()}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, k := range kids[pid] {
			out = append(out, all[k])
			queue = append(queue, k)
		}
	}
	return out
}

// workload names the processes that are the measured program or the
// measuring tools, not the launcher or its helpers.
var workload = map[string]bool{
	"iperf3": true, "nginx": true, "wrk": true, "sh": true, "dash": true, "bash": true,
	"sleep": true, "ss": true, "touch": true, "cat": true, "true": true, "unshare": true,
	"ip": true, "setpriv": true, "grep": true,
}

// launcherProcs are the live launcher and helper processes: every
// descendant that is not part of the workload.
func launcherProcs() []proc {
	var out []proc
	for _, p := range descendants() {
		if !p.zombie && !workload[p.Comm] {
			out = append(out, p)
		}
	}
	return out
}

// pss sums the proportional set size of the processes, in bytes.
func pss(ps []proc) (int64, error) {
	var total int64
	for _, p := range ps {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", p.pid))
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			// Gone between the listing and the read: an earlier session's
			// helper still finishing its exit holds no memory of this one.
			// The caller checks that its own launcher is still alive.
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read smaps_rollup of %s (%d): %w", p.Comm, p.pid, err)
		}
		n, err := parse.ParsePss(string(b))
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// cpuTicks maps pid to utime+stime of the launcher processes.
func cpuTicks() map[int]uint64 {
	out := map[int]uint64{}
	for _, p := range launcherProcs() {
		out[p.pid] = p.UTime + p.STime
	}
	return out
}

// clkTck is USER_HZ, 100 on every Linux architecture Go supports here.
const clkTck = 100

// cpuSeconds between two snapshots; a process new in b counts from zero.
func cpuSeconds(a, b map[int]uint64) float64 {
	var d uint64
	for pid, t := range b {
		if t >= a[pid] {
			d += t - a[pid]
		}
	}
	return float64(d) / clkTck
}

// killTree kills every descendant of the harness and reaps the orphans
// re-parented to it. Direct children started through exec.Cmd are left to
// their Wait, listed in keep.
func killTree(keep map[int]bool) int {
	killed := 0
	for i := 0; i < 20; i++ {
		ds := descendants()
		live := 0
		for _, p := range ds {
			if !p.zombie {
				live++
				_ = syscall.Kill(p.pid, syscall.SIGKILL)
				killed++
			}
		}
		reapOrphans(keep)
		if live == 0 {
			return killed
		}
		time.Sleep(20 * time.Millisecond)
	}
	return killed
}

// reapOrphans waits for zombie children of the harness that no exec.Cmd owns.
func reapOrphans(keep map[int]bool) {
	me := os.Getpid()
	for _, p := range descendants() {
		if p.PPid == me && p.zombie && !keep[p.pid] {
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(p.pid, &ws, syscall.WNOHANG, nil)
		}
	}
}
