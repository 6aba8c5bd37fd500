package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/unroot/unroot/internal/operr"
)

// forceUserNS makes every user-namespace probe fail with err for one test,
// standing in for a security module this kernel doesn't have.
func forceUserNS(t *testing.T, err error) {
	t.Helper()
	old := tryUserNS
	tryUserNS = func(context.Context) error { return err }
	t.Cleanup(func() { tryUserNS = old })
}

func TestExplainAppArmorEACCES(t *testing.T) {
	forceUserNS(t, &fs.PathError{Op: "fork/exec", Path: "/usr/bin/true", Err: syscall.EACCES})
	start := fmt.Errorf("start child: %w", &fs.PathError{Op: "fork/exec", Path: "/proc/self/exe", Err: syscall.EACCES})
	err := Explain(context.Background(), start, Options{Executable: "/opt/my bin/unroot"})
	var de *Error
	if !errors.As(err, &de) {
		t.Fatalf("Explain = %v (%T), want *doctor.Error", err, err)
	}
	if !errors.Is(err, syscall.EACCES) {
		t.Errorf("explained error lost the original errno: %v", err)
	}
	if de.Result.Name != CheckUserNS || de.Result.Status != Fail {
		t.Errorf("cause = %+v, want a userns failure", de.Result)
	}
	msg := err.Error()
	for _, want := range []string{
		"denied (EACCES)",
		`profile unroot.opt.my_bin.unroot "/opt/my bin/unroot" flags=(unconfined)`,
		"userns,",
		"sudo apparmor_parser -r /etc/apparmor.d/unroot.opt.my_bin.unroot",
		"fork/exec /proc/self/exe: permission denied",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if first, _, _ := strings.Cut(msg, "\n"); !strings.Contains(first, "EACCES") || strings.HasPrefix(first, "start child") {
		t.Errorf("first line should lead with the cause, got %q", first)
	}
}

func TestAppArmorCheckReportsEACCES(t *testing.T) {
	forceUserNS(t, &fs.PathError{Op: "fork/exec", Path: "/usr/bin/true", Err: syscall.EACCES})
	res := Run(context.Background(), Select(Options{Executable: "/usr/local/bin/unroot"}, CheckAppArmor, CheckUserNS)...)
	for _, r := range res {
		if r.Status != Fail || !strings.Contains(r.Fix, "/etc/apparmor.d/unroot.usr.local.bin.unroot") {
			t.Errorf("%s = %+v, want Fail with the profile fix", r.Name, r)
		}
	}
	if !Blocking(res) {
		t.Error("Blocking = false with a failing userns check")
	}
}

func TestExplainUserNSErrnos(t *testing.T) {
	for _, tc := range []struct {
		errno syscall.Errno
		want  string
	}{
		{syscall.EPERM, "not permitted (EPERM)"},
		{syscall.ENOSPC, "limit is reached"},
		{syscall.EINVAL, "CONFIG_USER_NS"},
	} {
		t.Run(tc.errno.Error(), func(t *testing.T) {
			forceUserNS(t, &fs.PathError{Op: "fork/exec", Path: "/usr/bin/true", Err: tc.errno})
			err := Explain(context.Background(), &fs.PathError{Op: "fork/exec", Path: "/proc/self/exe", Err: tc.errno}, Options{})
			if !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.errno) {
				t.Errorf("Explain = %v, want it to mention %q and wrap %v", err, tc.want, tc.errno)
			}
		})
	}
}

func TestExplainLeavesUnrelatedErrors(t *testing.T) {
	forceUserNS(t, nil)
	orig := errors.New("parse --mtu: must be <= 65521")
	if got := Explain(context.Background(), orig, Options{}); got != orig {
		t.Errorf("Explain(%v) = %v, want it unchanged unless a start-up essential fails", orig, got)
	}
	if Explain(context.Background(), nil, Options{}) != nil {
		t.Error("Explain(nil) != nil")
	}
	de := &Error{Err: orig, Result: Result{Detail: "x"}}
	if got := Explain(context.Background(), de, Options{}); got != de {
		t.Errorf("Explain re-explained an explained error: %v", got)
	}
}

// diagnosable lists, for every operation of internal/operr and the other
// typed causes, an error made the way its producer makes it, from a
// message: the test calls each with the message as written in the code and
// with a rewording, and wants the same checks either way.
var diagnosable = []struct {
	name     string
	op       operr.Op // "" for a cause that is not an operr operation
	make     func(msg string) error
	want     []string
	specific bool
	net      string
}{
	{"exec slirp4netns", "", func(msg string) error {
		return fmt.Errorf(msg+": %w", &exec.Error{Name: "slirp4netns", Err: exec.ErrNotFound})
	}, []string{CheckNetDrivers}, true, "slirp4netns"},
	{"exec newuidmap", "", func(msg string) error {
		return fmt.Errorf(msg+": %w", &exec.Error{Name: "/usr/bin/newuidmap", Err: syscall.EACCES})
	}, []string{CheckIDMap}, true, ""},
	{"helper not found", operr.Helper, func(msg string) error {
		return fmt.Errorf("start network driver: %w", &operr.Error{Op: operr.Helper, Subject: "pasta", Err: exec.ErrNotFound, Msg: msg})
	}, []string{CheckNetDrivers}, true, "pasta"},
	{"helper override", operr.Helper, func(msg string) error {
		return operr.Errorf(operr.Helper, "slirp4netns", msg+": %w", fs.ErrNotExist)
	}, []string{CheckNetDrivers}, true, ""},
	{"id map", operr.IDMap, func(msg string) error {
		return operr.Wrap(operr.IDMap, "id maps", fmt.Errorf(msg+": %w", &exec.ExitError{}))
	}, []string{CheckSubID, CheckIDMap}, true, ""},
	{"tun in the init", operr.Tun, func(msg string) error {
		return viaInit(fmt.Errorf(msg+": %w", operr.Wrap(operr.Tun, "tap0", syscall.EACCES)))
	}, []string{CheckTun}, true, ""},
	{"tun in a helper", operr.Tun, func(msg string) error {
		return operr.Wrap(operr.Tun, "/dev/net/tun", errors.New(msg))
	}, []string{CheckTun}, true, ""},
	{"iptables in the init", operr.IPTables, func(msg string) error {
		return viaInit(operr.Errorf(operr.IPTables, "iptables", msg+": %w", syscall.ENOENT))
	}, []string{CheckIPTables}, true, ""},
	{"cgroup evacuation", operr.Cgroup, func(msg string) error {
		return operr.Wrap(operr.Cgroup, "evac", fmt.Errorf(msg+": %w", fs.ErrPermission))
	}, []string{CheckCgroup}, true, ""},
	{"privileged port", operr.Listen, func(msg string) error {
		return fmt.Errorf("publish: %w", operr.Wrap(operr.Listen, ":80:80/tcp", fmt.Errorf(msg+": %w", syscall.EACCES)))
	}, []string{CheckPorts}, true, ""},
	{"clone", operr.UserNS, func(msg string) error {
		return operr.Errorf(operr.UserNS, "/proc/self/exe", msg+": %w", &fs.PathError{Op: "fork/exec", Path: "/proc/self/exe", Err: syscall.EPERM})
	}, []string{CheckUserNS, CheckAppArmor}, true, ""},
	{"re-exec in the init", operr.UserNS, func(msg string) error {
		return viaInit(operr.Errorf(operr.UserNS, "/proc/self/exe", msg+": %w", syscall.EACCES))
	}, []string{CheckUserNS, CheckAppArmor}, true, ""},
	{"mount in the init", operr.Mount, func(msg string) error {
		return viaInit(operr.Errorf(operr.Mount, "/proc", msg+": %w", syscall.EPERM))
	}, []string{CheckUserNS, CheckAppArmor}, true, ""},
	{"netlink in the init", operr.Netlink, func(msg string) error {
		return viaInit(operr.Wrap(operr.Netlink, "tap0", fmt.Errorf(msg+": %w", syscall.EEXIST)))
	}, []string{CheckUserNS, CheckAppArmor, CheckIDMap}, false, ""},
	{"bare errno from the init", "", func(msg string) error {
		return viaInit(fmt.Errorf(msg+": %w", syscall.EPERM))
	}, []string{CheckUserNS, CheckAppArmor}, true, ""},
	{"untyped", "", func(msg string) error { return errors.New(msg) }, []string{CheckUserNS, CheckAppArmor, CheckIDMap}, false, ""},
}

// viaInit is err as the launcher receives it from the namespace init.
func viaInit(err error) error {
	op, subject, errno := operr.Fields(err)
	return operr.FromPeer(err.Error(), op, subject, errno)
}

// rewordings are messages that share no word with the code's: the
// diagnosis must not depend on any.
var rewordings = []string{
	"open tap tap0: /dev/net/tun: newuidmap slirp4netns not found in PATH, fork/exec /proc/self/exe, cgroup, iptables, bind",
	"zzz",
	"",
}

func TestRelevant(t *testing.T) {
	covered := map[operr.Op]bool{}
	for _, tc := range diagnosable {
		covered[tc.op] = true
		for _, msg := range rewordings {
			err := tc.make(msg)
			got, specific, net := relevant(err)
			if !reflect.DeepEqual(got, tc.want) || specific != tc.specific || net != tc.net {
				t.Errorf("%s worded %q: relevant(%v) = %v %v %q; want %v %v %q", tc.name, msg, err, got, specific, net, tc.want, tc.specific, tc.net)
			}
		}
	}
	for _, op := range operr.Ops {
		if !covered[op] {
			t.Errorf("operr.%s has no case in diagnosable", op)
		}
	}
}

type fixed struct{ r Result }

func (f fixed) Name() string               { return f.r.Name }
func (f fixed) Run(context.Context) Result { return f.r }

func TestRunKeepsOrderAndWritesOutput(t *testing.T) {
	res := Run(context.Background(),
		fixed{Result{Name: "a", Status: OK, Detail: "fine"}},
		fixed{Result{Name: "bb", Status: Fail, Detail: "broken", Fix: "do x\nthen y"}},
		fixed{Result{Name: "c", Status: Warn, Detail: "meh", Fix: "z"}})
	if res[0].Name != "a" || res[1].Name != "bb" || res[2].Name != "c" || !Blocking(res) {
		t.Fatalf("Run = %+v", res)
	}
	var txt bytes.Buffer
	if err := WriteText(&txt, res); err != nil {
		t.Fatal(err)
	}
	want := "ok    a   fine\nFAIL  bb  broken\n      fix: do x\n           then y\nwarn  c   meh\n      fix: z\n"
	if txt.String() != want {
		t.Errorf("WriteText =\n%s\nwant\n%s", txt.String(), want)
	}
	var js bytes.Buffer
	if err := WriteJSON(&js, res); err != nil {
		t.Fatal(err)
	}
	var back []Result
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || !reflect.DeepEqual(back, res) {
		t.Errorf("JSON round trip = %+v, %v; want %+v\n%s", back, err, res, js.String())
	}
	if !strings.Contains(js.String(), `"status": "fail"`) {
		t.Errorf("JSON status not a word:\n%s", js.String())
	}
}

// The real probes, as whoever runs the tests: root in CI (every namespace
// probe must succeed there) or a developer.
func TestDefaultOnThisHost(t *testing.T) {
	res := Run(context.Background(), Default(Options{})...)
	if len(res) != len(allChecks) {
		t.Fatalf("got %d results, want %d", len(res), len(allChecks))
	}
	for i, r := range res {
		if r.Name != allChecks[i] || r.Detail == "" {
			t.Errorf("result %d = %+v, want name %s and a detail", i, r, allChecks[i])
		}
		if r.Status != OK && r.Fix == "" && r.Name != CheckCgroup {
			t.Errorf("%s is %v without a fix: %s", r.Name, r.Status, r.Detail)
		}
	}
	if res[0].Status != OK {
		t.Errorf("userns probe failed on the test host: %+v", res[0])
	}
}

// Whatever an untyped error says, it gets the start-up essentials only.
func FuzzRelevant(f *testing.F) {
	f.Add("fork/exec /proc/self/exe: permission denied")
	f.Add("slirp4netns not found in PATH, or use --net=pasta")
	f.Fuzz(func(t *testing.T, msg string) {
		names, specific, net := relevant(errors.New(msg))
		if !reflect.DeepEqual(names, []string{CheckUserNS, CheckAppArmor, CheckIDMap}) || specific || net != "" {
			t.Fatalf("relevant(%q) = %v %v %q, want the essentials: the text must not count", msg, names, specific, net)
		}
	})
}
