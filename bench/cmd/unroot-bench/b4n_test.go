package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// The bundle runc starts for bypass4netns carries the README's seccomp
// profile with bypass4netns's socket as listenerPath (the field Debian's
// Docker 20.10 drops), shares RootlessKit's user namespace, and sees the
// host's /usr and the harness's scratch directory.
func TestB4nBundle(t *testing.T) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		runc = "/usr/sbin/runc"
	}
	if _, err := os.Stat(runc); err != nil {
		t.Fatalf("runc is missing (bench/run.sh installs it; apt-get install runc): %v", err)
	}
	work := t.TempDir()
	h := &harness{o: options{runc: runc}, uid: os.Getuid(), gid: os.Getgid(), work: work}
	bundle := filepath.Join(work, "bundle")
	sock := filepath.Join(work, "bypass4netns.sock")
	if err := h.b4nBundle(context.Background(), bundle, sock, "iperf3 -s"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Process struct {
			Args []string `json:"args"`
		} `json:"process"`
		Mounts []struct {
			Destination string   `json:"destination"`
			Options     []string `json:"options"`
		} `json:"mounts"`
		Linux struct {
			Namespaces []struct {
				Type string `json:"type"`
			} `json:"namespaces"`
			UIDMappings []any `json:"uidMappings"`
			Seccomp     struct {
				DefaultAction string `json:"defaultAction"`
				ListenerPath  string `json:"listenerPath"`
				Syscalls      []struct {
					Names  []string `json:"names"`
					Action string   `json:"action"`
				} `json:"syscalls"`
			} `json:"seccomp"`
		} `json:"linux"`
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	if got := spec.Linux.Seccomp.ListenerPath; got != sock {
		t.Errorf("listenerPath = %q, want %q", got, sock)
	}
	if spec.Linux.Seccomp.DefaultAction != "SCMP_ACT_ALLOW" || len(spec.Linux.Seccomp.Syscalls) != 1 ||
		spec.Linux.Seccomp.Syscalls[0].Action != "SCMP_ACT_NOTIFY" {
		t.Errorf("seccomp profile is not the README's: %+v", spec.Linux.Seccomp)
	} else {
		for _, name := range []string{"bind", "close", "connect", "setsockopt", "fcntl", "_exit", "exit_group", "getpeername"} {
			if !slices.Contains(spec.Linux.Seccomp.Syscalls[0].Names, name) {
				t.Errorf("profile does not trap %s", name)
			}
		}
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == "user" || ns.Type == "network" {
			t.Errorf("container has its own %s namespace; it must share RootlessKit's", ns.Type)
		}
	}
	if len(spec.Linux.UIDMappings) != 0 {
		t.Errorf("uid mappings left in the spec: %v", spec.Linux.UIDMappings)
	}
	if want := []string{"/bin/sh", "-c", "iperf3 -s"}; !slices.Equal(spec.Process.Args, want) {
		t.Errorf("args = %q, want %q", spec.Process.Args, want)
	}
	mounts := map[string][]string{}
	for _, m := range spec.Mounts {
		mounts[m.Destination] = m.Options
	}
	if !slices.Contains(mounts["/usr"], "ro") {
		t.Errorf("/usr not mounted read-only: %v", mounts["/usr"])
	}
	if !slices.Contains(mounts[work], "rw") {
		t.Errorf("scratch directory %s not mounted read-write: %v", work, mounts[work])
	}
	if l, err := os.Readlink(filepath.Join(bundle, "rootfs", "bin")); err != nil || l != "usr/bin" {
		t.Errorf("rootfs/bin = %q, %v; want a link to usr/bin", l, err)
	}
}
