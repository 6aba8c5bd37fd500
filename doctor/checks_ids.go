package doctor

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// subIDs are the subordinate ranges of one user and where they came from.
type subIDs struct {
	UID, GID       []idRange
	AllUID, AllGID []idRange // every range on the host, to pick a free one
	Source         string
}

func count(rs []idRange) uint64 {
	var n uint64
	for _, r := range rs {
		n += r.Count
	}
	return n
}

func describe(rs []idRange) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%d-%d", r.Start, r.end()-1))
	}
	return strings.Join(parts, ",")
}

// lookupSubIDs asks getsubids first (it sees sssd/LDAP ranges too, as
// newuidmap does) and falls back to the files, like --subid-source=auto.
func lookupSubIDs(ctx context.Context, name string, uid uint32) (subIDs, error) {
	var s subIDs
	uidFile, errU := readFile("/etc/subuid")
	if errU == nil {
		s.UID, s.AllUID, errU = parseSubIDFile(uidFile, name, uid)
	}
	gidFile, errG := readFile("/etc/subgid")
	if errG == nil {
		s.GID, s.AllGID, errG = parseSubIDFile(gidFile, name, uid)
	}
	s.Source = "/etc/subuid and /etc/subgid"
	if gs, err := exec.LookPath("getsubids"); err == nil {
		du, errDU := runGetsubids(ctx, gs, name)
		dg, errDG := runGetsubids(ctx, gs, "-g", name)
		if errDU == nil && errDG == nil && len(du) > 0 && len(dg) > 0 {
			s.UID, s.GID, s.Source = du, dg, "getsubids"
		}
	}
	if len(s.UID) == 0 && len(s.GID) == 0 && errU != nil && errG != nil {
		return s, fmt.Errorf("read /etc/subuid: %w", errU)
	}
	return s, nil
}

func runGetsubids(ctx context.Context, bin string, args ...string) ([]idRange, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).Output()
	if err != nil {
		return nil, err
	}
	return parseGetsubids(string(out))
}

func usermodFix(e *env, s subIDs) string {
	start := freeSubIDStart(s.AllUID, s.AllGID)
	r := fmt.Sprintf("%d-%d", start, start+65535)
	return fmt.Sprintf("sudo usermod --add-subuids %s --add-subgids %s %s", r, r, e.user.Username)
}

func checkSubID(ctx context.Context, e *env) Result {
	if e.uid == 0 {
		return Result{Status: OK, Detail: "running as root: ids are mapped directly, no subordinate ranges needed"}
	}
	s, err := e.subids(ctx)
	if err != nil {
		return Result{Status: Fail, Detail: fmt.Sprintf("cannot read subordinate ids: %v", err), Fix: usermodFix(e, s)}
	}
	var missing []string
	if len(s.UID) == 0 {
		missing = append(missing, "/etc/subuid")
	}
	if len(s.GID) == 0 {
		missing = append(missing, "/etc/subgid")
	}
	if len(missing) > 0 {
		return Result{Status: Fail,
			Detail: fmt.Sprintf("user %s has no subordinate ids in %s: only uid %d could be mapped, and daemons that change file owners or unpack images fail", e.user.Username, strings.Join(missing, " and "), e.uid),
			Fix:    usermodFix(e, s)}
	}
	nu, ng := count(s.UID), count(s.GID)
	detail := fmt.Sprintf("uids %s (%d), gids %s (%d) from %s", describe(s.UID), nu, describe(s.GID), ng, s.Source)
	if nu < 65536 || ng < 65536 {
		return Result{Status: Warn, Detail: detail + ": fewer than 65536, so images that use ids up to 65535 fail to unpack", Fix: usermodFix(e, s)}
	}
	return Result{Status: OK, Detail: detail}
}

func installHint(pkgs map[string]string) string {
	osr, _ := readFile("/etc/os-release")
	m := parseOSRelease(osr)
	ids := append([]string{m["ID"]}, strings.Fields(m["ID_LIKE"])...)
	for _, id := range ids {
		switch id {
		case "debian", "ubuntu":
			return "sudo apt-get install " + pkgs["debian"]
		case "fedora", "rhel", "centos":
			return "sudo dnf install " + pkgs["fedora"]
		case "arch":
			return "sudo pacman -S " + pkgs["arch"]
		case "suse", "opensuse":
			return "sudo zypper install " + pkgs["suse"]
		case "alpine":
			return "sudo apk add " + pkgs["alpine"]
		}
	}
	return "install " + pkgs["debian"] + " with your distribution's package manager"
}

var uidmapPkgs = map[string]string{"debian": "uidmap", "fedora": "shadow-utils", "arch": "shadow", "suse": "shadow", "alpine": "shadow-uidmap"}

// privileged says how a setuid-style helper gets its power, or "" when it
// has none.
func privileged(path string, capNum uint) (string, error) {
	uid, mode, err := ownerOf(path)
	if err != nil {
		return "", err
	}
	if mode&os.ModeSetuid != 0 && uid == 0 {
		return "setuid root", nil
	}
	c, ok, err := fileCapsOf(path)
	if err == nil && ok && c.has(capNum) {
		return "file capability " + map[uint]string{capSetuid: "cap_setuid", capSetgid: "cap_setgid"}[capNum], nil
	}
	return "", nil
}

func checkIDMap(ctx context.Context, e *env) Result {
	if e.uid == 0 {
		return Result{Status: OK, Detail: "running as root: unroot writes uid_map itself, newuidmap is not needed"}
	}
	var found []string
	paths := map[string]string{}
	for _, t := range []struct {
		name string
		cap  uint
	}{{"newuidmap", capSetuid}, {"newgidmap", capSetgid}} {
		p, err := exec.LookPath(t.name)
		if err != nil {
			return Result{Status: Fail, Detail: t.name + " is not installed (not found in PATH)", Fix: installHint(uidmapPkgs)}
		}
		how, err := privileged(p, t.cap)
		if err != nil {
			return Result{Status: Fail, Detail: fmt.Sprintf("stat %s: %v", p, err), Fix: installHint(uidmapPkgs)}
		}
		if how == "" {
			capName := map[uint]string{capSetuid: "cap_setuid", capSetgid: "cap_setgid"}[t.cap]
			return Result{Status: Fail,
				Detail: p + " has neither the setuid bit nor " + capName + ", so it cannot map subordinate ids",
				Fix:    fmt.Sprintf("sudo chmod u+s %s   (or: sudo setcap %s+ep %s)", p, capName, p)}
		}
		paths[t.name] = p
		found = append(found, fmt.Sprintf("%s (%s)", p, how))
	}
	s, _ := e.subids(ctx)
	if err := tryMap(ctx, e, paths["newuidmap"], paths["newgidmap"], s); err != nil {
		return Result{Status: Fail, Detail: "mapping ids into a test namespace failed: " + err.Error(),
			Fix: "check that the ranges in /etc/subuid and /etc/subgid don't overlap your own uid/gid, and that " + paths["newuidmap"] + " is not on a nosuid mount"}
	}
	return Result{Status: OK, Detail: strings.Join(found, ", ") + "; mapped a test namespace"}
}

// tryMap maps a fresh user namespace the way the launcher does: root to the
// user, then the subordinate ranges from 1 up.
func tryMap(ctx context.Context, e *env, newuidmap, newgidmap string, s subIDs) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	// cat holds the namespace open until its stdin closes.
	cmd := exec.CommandContext(ctx, "cat")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("create user namespace: %w", err)
	}
	defer func() {
		stdin.Close()
		cmd.WaitDelay = time.Second
		_ = cmd.Wait()
	}()
	pid := strconv.Itoa(cmd.Process.Pid)
	run := func(bin string, self int, rs []idRange) error {
		args := []string{pid, "0", strconv.Itoa(self), "1"}
		next := uint64(1)
		for _, r := range rs {
			args = append(args, strconv.FormatUint(next, 10), strconv.FormatUint(r.Start, 10), strconv.FormatUint(r.Count, 10))
			next += r.Count
		}
		var out bytes.Buffer
		c := exec.CommandContext(ctx, bin, args...)
		c.Stdout, c.Stderr = &out, &out
		if err := c.Run(); err != nil {
			return fmt.Errorf("%s %s: %v: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
		}
		return nil
	}
	if err := run(newuidmap, e.uid, s.UID); err != nil {
		return err
	}
	return run(newgidmap, e.gid, s.GID)
}
