package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// drResult mirrors doctor.Result as `unroot doctor --json` prints it.
type drResult struct {
	Name, Status, Detail, Fix string
}

func drParse(t *testing.T, r Result) map[string]drResult {
	t.Helper()
	var list []drResult
	if err := json.Unmarshal([]byte(r.Stdout), &list); err != nil {
		t.Fatalf("doctor --json: %v\nstdout: %s\nstderr: %s", err, r.Stdout, r.Stderr)
	}
	m := map[string]drResult{}
	for _, x := range list {
		m[x.Name] = x
	}
	return m
}

// drAsRoot turns a UserCmd into one that starts as root with prefix (which
// sets up the breakage, then drops to the test user itself).
func drAsRoot(cmd *exec.Cmd, prefix ...string) *exec.Cmd {
	cmd.Args = append(append(prefix, cmd.Path), cmd.Args[1:]...)
	cmd.Path = prefix[0]
	if p, err := exec.LookPath(prefix[0]); err == nil {
		cmd.Path = p
	}
	cmd.SysProcAttr.Credential = nil
	return cmd
}

func drExpect(t *testing.T, r drResult, status string, detail, fix []string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("%s: status %q, want %q: %s", r.Name, r.Status, status, r.Detail)
	}
	for _, d := range detail {
		if !strings.Contains(r.Detail, d) {
			t.Errorf("%s: detail %q lacks %q", r.Name, r.Detail, d)
		}
	}
	for _, f := range fix {
		if !strings.Contains(r.Fix, f) {
			t.Errorf("%s: fix %q lacks %q", r.Name, r.Fix, f)
		}
	}
}

// drNoTrace fails if output carries a Go panic or stack instead of a message.
func drNoTrace(t *testing.T, s string) {
	t.Helper()
	if strings.Contains(s, "goroutine ") || strings.Contains(s, "panic:") {
		t.Errorf("stack trace in output:\n%s", s)
	}
}

// The CI host is set up as the project needs: every check that decides
// whether unroot runs must pass; only advisory ones may warn.
func TestDoctorHealthy(t *testing.T) {
	r := RunUser(t, time.Minute, "unroot", "doctor", "--json")
	if r.Code != 0 {
		t.Fatalf("doctor exit %d on the healthy host\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	res := drParse(t, r)
	for _, name := range []string{"userns", "apparmor", "subid", "newuidmap", "tun", "net-drivers", "iptables", "xdg-runtime-dir", "bypass"} {
		if res[name].Status != "ok" {
			t.Errorf("%s: %q, want ok: %s\nfix: %s", name, res[name].Status, res[name].Detail, res[name].Fix)
		}
	}
	drExpect(t, res["subid"], "ok", []string{"uids ", "gids ", "(65536)"}, nil)
	drExpect(t, res["newuidmap"], "ok", []string{"setuid root", "mapped a test namespace"}, nil)
	drExpect(t, res["net-drivers"], "ok", []string{"pasta", "slirp4netns 1.", "netstack"}, nil)
	for name, x := range res {
		if x.Status == "fail" {
			t.Errorf("%s failed: %s", name, x.Detail)
		}
		if x.Status == "warn" && x.Fix == "" {
			t.Errorf("%s warns without a fix: %s", name, x.Detail)
		}
	}
	if len(res) != 13 {
		t.Errorf("got %d checks, want 13: %v", len(res), res)
	}

	txt := RunUser(t, time.Minute, "unroot", "doctor")
	lines := regexp.MustCompile(`(?m)^(ok|warn|FAIL) +([a-z0-9-]+) +\S`).FindAllStringSubmatch(txt.Stdout, -1)
	if txt.Code != 0 || len(lines) != 13 {
		t.Errorf("text output: exit %d, %d check lines, want 0 and 13:\n%s", txt.Code, len(lines), txt.Stdout)
	}
}

// A user with no /etc/subuid entry: doctor fails with the usermod command;
// running that command repairs it; unroot run warns with the same fix.
func TestDoctorNoSubIDs(t *testing.T) {
	const name = "unroot-nosub"
	if _, err := user.Lookup(name); err != nil {
		// -K …=0: useradd would otherwise allocate ranges itself.
		out, err := exec.Command("useradd", "--create-home", "--shell", "/bin/sh", "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", name).CombinedOutput()
		if err != nil {
			t.Fatalf("useradd %s: %v: %s", name, err, out)
		}
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	drStripSubIDs(t, name)
	used := drAllRanges(t)
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	as := func(args ...string) Result {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := UserCmd(t, ctx, "unroot", args...)
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		cmd.Dir = "/"
		for i, kv := range cmd.Env {
			switch {
			case strings.HasPrefix(kv, "HOME="):
				cmd.Env[i] = "HOME=" + u.HomeDir
			case strings.HasPrefix(kv, "USER="), strings.HasPrefix(kv, "LOGNAME="):
				cmd.Env[i] = kv[:strings.IndexByte(kv, '=')+1] + name
			case strings.HasPrefix(kv, "XDG_RUNTIME_DIR="):
				cmd.Env[i] = "XDG_RUNTIME_DIR="
			}
		}
		return Run(t, cmd)
	}

	r := as("doctor", "--json")
	if r.Code != 1 {
		t.Errorf("doctor exit %d, want 1 (blocked)", r.Code)
	}
	sub := drParse(t, r)["subid"]
	drExpect(t, sub, "fail", []string{"user " + name + " has no subordinate ids", "/etc/subuid and /etc/subgid"},
		[]string{"sudo usermod --add-subuids ", " --add-subgids ", " " + name})
	m := regexp.MustCompile(`^sudo usermod --add-subuids (\d+)-(\d+) --add-subgids (\d+)-(\d+) ` + name + `$`).FindStringSubmatch(sub.Fix)
	if m == nil || m[1] != m[3] || m[2] != m[4] {
		t.Fatalf("fix is not one usermod command with one range for both: %q", sub.Fix)
	}
	start, _ := strconv.Atoi(m[1])
	end, _ := strconv.Atoi(m[2])
	if end-start+1 != 65536 {
		t.Errorf("suggested range %d-%d: want 65536 ids", start, end)
	}
	for _, r := range used {
		if start < r[1] && r[0] < end+1 {
			t.Errorf("suggested range %d-%d overlaps %d-%d already in use", start, end, r[0], r[1]-1)
		}
	}

	// unroot run still runs (only uid 0 mapped) but says why and how to fix.
	run := as("run", "--net=host", "--port-driver=none", "cat", "/proc/self/uid_map")
	drNoTrace(t, run.Stderr)
	if !strings.Contains(run.Stderr, "no subordinate ids") || !strings.Contains(run.Stderr, "usermod --add-subuids") {
		t.Errorf("unroot run without subordinate ids: exit %d, stderr lacks the cause and fix:\n%s", run.Code, run.Stderr)
	}

	// Apply the printed fix (we are root: no sudo) and check it repairs.
	fix := strings.Fields(strings.TrimPrefix(sub.Fix, "sudo "))
	if out, err := exec.Command(fix[0], fix[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("running the fix %q: %v: %s", sub.Fix, err, out)
	}
	t.Cleanup(func() {
		exec.Command("usermod", "--del-subuids", m[1]+"-"+m[2], "--del-subgids", m[1]+"-"+m[2], name).Run()
	})
	r = as("doctor", "--json")
	res := drParse(t, r)
	drExpect(t, res["subid"], "ok", []string{m[1] + "-" + m[2] + " (65536)"}, nil)
	drExpect(t, res["newuidmap"], "ok", []string{"mapped a test namespace"}, nil)
	if r.Code != 0 {
		t.Errorf("doctor after the fix: exit %d\n%s", r.Code, r.Stdout)
	}
}

// drStripSubIDs removes every range the test-only user holds.
func drStripSubIDs(t *testing.T, name string) {
	t.Helper()
	for _, f := range []struct{ file, flag string }{{"/etc/subuid", "--del-subuids"}, {"/etc/subgid", "--del-subgids"}} {
		b, _ := os.ReadFile(f.file)
		for _, m := range regexp.MustCompile(`(?m)^`+name+`:(\d+):(\d+)$`).FindAllStringSubmatch(string(b), -1) {
			start, _ := strconv.Atoi(m[1])
			n, _ := strconv.Atoi(m[2])
			if out, err := exec.Command("usermod", f.flag, fmt.Sprintf("%d-%d", start, start+n-1), name).CombinedOutput(); err != nil {
				t.Fatalf("usermod %s: %v: %s", f.flag, err, out)
			}
		}
	}
}

// drAllRanges lists [start, end) of every subordinate range on the host.
func drAllRanges(t *testing.T) [][2]int {
	var out [][2]int
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		b, _ := os.ReadFile(f)
		for _, m := range regexp.MustCompile(`(?m)^[^:#]+:(\d+):(\d+)$`).FindAllStringSubmatch(string(b), -1) {
			start, _ := strconv.Atoi(m[1])
			n, _ := strconv.Atoi(m[2])
			out = append(out, [2]int{start, start + n})
		}
	}
	return out
}

// drWithBind runs unroot as the test user in a private mount namespace where
// src is bind-mounted over dst: the breakage is seen by that process tree
// only, never by the rest of the host.
func drWithBind(t *testing.T, src, dst string, args ...string) Result {
	t.Helper()
	uid, gid := testIDs(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := drAsRoot(UserCmd(t, ctx, "unroot", args...),
		"unshare", "-m", "--propagation", "private", "--", "sh", "-c",
		`mount --bind "$1" "$2" && u=$3 g=$4 && shift 4 && exec setpriv --reuid="$u" --regid="$g" --clear-groups -- "$@"`,
		"sh", src, dst, strconv.Itoa(uid), strconv.Itoa(gid))
	return Run(t, cmd)
}

// newuidmap without its setuid bit (a copy bind-mounted over it): the start
// fails with "newuidmap: write to uid_map failed" and must say why.
func TestDoctorNewuidmapNotSetuid(t *testing.T) {
	real, err := exec.LookPath("newuidmap")
	if err != nil {
		t.Fatal(err)
	}
	real, _ = filepath.EvalSymlinks(real)
	b, err := os.ReadFile(real)
	if err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(t.TempDir(), "newuidmap")
	if err := os.WriteFile(plain, b, 0o755); err != nil {
		t.Fatal(err)
	}
	r := drWithBind(t, plain, real, "doctor", "--json")
	if r.Code != 1 {
		t.Errorf("doctor exit %d, want 1", r.Code)
	}
	m := drParse(t, r)["newuidmap"]
	drExpect(t, m, "fail", []string{real + " has neither the setuid bit nor cap_setuid"},
		[]string{"sudo chmod u+s " + real, "sudo setcap cap_setuid+ep " + real})

	run := drWithBind(t, plain, real, "run", "--net=host", "--port-driver=none", "true")
	drNoTrace(t, run.Stderr)
	if run.Code != 1 || !strings.HasPrefix(run.Stderr, "unroot: "+m.Detail) || !strings.Contains(run.Stderr, "write to uid_map failed") ||
		!strings.Contains(run.Stderr, "\nfix: sudo chmod u+s "+real) {
		t.Errorf("unroot run with a plain newuidmap: exit %d, want 1 with the doctor's cause, the original error and the fix:\n%s", run.Code, run.Stderr)
	}
}

// /dev/net/tun unreadable (an unreadable file bind-mounted over it in a
// private mount namespace, so nothing else on the host sees it).
func TestDoctorTunUnreadable(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "tun")
	if err := os.WriteFile(fake, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	broken := func(args ...string) Result { return drWithBind(t, fake, "/dev/net/tun", args...) }
	r := broken("doctor", "--json")
	if r.Code != 1 {
		t.Errorf("doctor exit %d, want 1", r.Code)
	}
	tun := drParse(t, r)["tun"]
	drExpect(t, tun, "fail", []string{"cannot open /dev/net/tun", "permission denied", "mode 0600"}, []string{"sudo chmod 0666 /dev/net/tun"})

	for _, net := range []string{"slirp4netns", "pasta", "netstack"} {
		run := broken("run", "--net="+net, "--port-driver=none", "true")
		drNoTrace(t, run.Stderr)
		if run.Code != 1 || !strings.Contains(run.Stderr, "unroot: "+tun.Detail) || !strings.Contains(run.Stderr, "\nfix: sudo chmod 0666 /dev/net/tun") {
			t.Errorf("unroot run --net=%s with an unreadable tun: exit %d, want 1 and the doctor's cause and fix:\n%s", net, run.Code, run.Stderr)
		}
	}

	// Repaired: the real device.
	res := drParse(t, RunUser(t, time.Minute, "unroot", "doctor", "--json"))
	drExpect(t, res["tun"], "ok", []string{"a tap device can be created inside a user+net namespace"}, nil)
}

// slirp4netns missing from PATH: a PATH that has everything in /usr/bin
// but it.
func TestDoctorSlirp4netnsMissing(t *testing.T) {
	dir := TempDir(t)
	ents, err := os.ReadDir("/usr/bin")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "slirp4netns" {
			os.Symlink(filepath.Join("/usr/bin", e.Name()), filepath.Join(dir, e.Name()))
		}
	}
	withPath := func(args ...string) Result {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := UserCmd(t, ctx, "unroot", args...)
		for i, kv := range cmd.Env {
			if strings.HasPrefix(kv, "PATH=") {
				cmd.Env[i] = "PATH=" + Bin + ":" + dir + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin"
			}
		}
		return Run(t, cmd)
	}
	r := withPath("doctor", "--json", "--net=slirp4netns")
	if r.Code != 1 {
		t.Errorf("doctor --net=slirp4netns exit %d, want 1", r.Code)
	}
	nd := drParse(t, r)["net-drivers"]
	drExpect(t, nd, "fail", []string{"--net=slirp4netns was asked for, but slirp4netns is not found in PATH", "pasta"},
		[]string{"sudo apt-get install slirp4netns", "--net=pasta"})

	any := drParse(t, withPath("doctor", "--json"))["net-drivers"]
	drExpect(t, any, "ok", []string{"not found: slirp4netns"}, nil)

	run := withPath("run", "--net=slirp4netns", "--port-driver=none", "true")
	drNoTrace(t, run.Stderr)
	if run.Code != 1 || !strings.Contains(run.Stderr, "slirp4netns") || !strings.Contains(run.Stderr, "not found in PATH") || !strings.Contains(run.Stderr, "apt-get install slirp4netns") {
		t.Errorf("unroot run --net=slirp4netns without slirp4netns: exit %d, want 1 with the cause and fix:\n%s", run.Code, run.Stderr)
	}

	// Repaired: the normal PATH.
	ok := drParse(t, RunUser(t, time.Minute, "unroot", "doctor", "--json", "--net=slirp4netns"))["net-drivers"]
	drExpect(t, ok, "ok", []string{"slirp4netns 1."}, nil)
}

// An AppArmor-like EACCES on creating user namespaces (Ubuntu 24.04's
// kernel.apparmor_restrict_unprivileged_userns=1): a seccomp filter set up
// by testdata/eacces returns exactly that errno to clone(CLONE_NEWUSER).
func TestDoctorAppArmorEACCES(t *testing.T) {
	helper := filepath.Join(TempDir(t), "eacces")
	if out, err := exec.Command("go", "build", "-o", helper, "./testdata/eacces").CombinedOutput(); err != nil {
		t.Fatalf("build eacces helper: %v\n%s", err, out)
	}
	uid, gid := testIDs(t)
	denied := func(args ...string) Result {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return Run(t, drAsRoot(UserCmd(t, ctx, "unroot", args...), helper, strconv.Itoa(uid), strconv.Itoa(gid)))
	}
	real, err := filepath.EvalSymlinks(filepath.Join(Bin, "unroot"))
	if err != nil {
		t.Fatal(err)
	}
	profile := `'profile unroot` + strings.ReplaceAll(real, "/", ".") + ` "` + real + `" flags=(unconfined) {' '  userns,'`
	r := denied("doctor", "--json")
	if r.Code != 1 {
		t.Errorf("doctor exit %d, want 1", r.Code)
	}
	res := drParse(t, r)
	for _, name := range []string{"userns", "apparmor"} {
		drExpect(t, res[name], "fail", []string{"denied (EACCES)"},
			[]string{profile, "| sudo tee /etc/apparmor.d/unroot", "sudo apparmor_parser -r /etc/apparmor.d/unroot" + strings.ReplaceAll(real, "/", ".")})
	}

	run := denied("run", "--net=host", "--port-driver=none", "true")
	drNoTrace(t, run.Stderr)
	first, _, _ := strings.Cut(run.Stderr, "\n")
	if run.Code != 1 || !strings.HasPrefix(first, "unroot: "+res["userns"].Detail) || !strings.Contains(first, "permission denied") ||
		!strings.Contains(run.Stderr, "\nfix: printf") || !strings.Contains(run.Stderr, profile) {
		t.Errorf("unroot run under the userns denial: exit %d, want 1 with the doctor's cause, the original error and the profile:\n%s", run.Code, run.Stderr)
	}

	// Repaired: without the filter.
	ok := drParse(t, RunUser(t, time.Minute, "unroot", "doctor", "--json"))
	drExpect(t, ok["userns"], "ok", nil, nil)
	drExpect(t, ok["apparmor"], "ok", nil, nil)
}
