package doctor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"

	"github.com/unroot/unroot/internal/operr"
)

const (
	sysctlMaxUserNS     = "/proc/sys/user/max_user_namespaces"
	sysctlUsernsClone   = "/proc/sys/kernel/unprivileged_userns_clone"
	sysctlAppArmorUserN = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"
	appArmorEnabled     = "/sys/module/apparmor/parameters/enabled"
)

// sysctlFix is the persistent way to set a sysctl: a drop-in, then reload.
func sysctlFix(file, key, value string) string {
	return fmt.Sprintf("echo '%s = %s' | sudo tee /etc/sysctl.d/%s >/dev/null && sudo sysctl --system", key, value, file)
}

func readSysctl(path string) (int64, bool) {
	s, err := readFile(path)
	if err != nil {
		return 0, false
	}
	v, err := parseSysctlInt(s)
	return v, err == nil
}

// userNSSettings is the first half of the userns check: the host settings
// that disable user namespaces, read without creating one. ok is false
// with the failing result when they do.
func userNSSettings(uid int) (r Result, max int64, haveMax, ok bool) {
	max, haveMax = readSysctl(sysctlMaxUserNS)
	if haveMax && max == 0 {
		return Result{Name: CheckUserNS, Status: Fail,
			Detail: "user namespaces are disabled: user.max_user_namespaces = 0",
			Fix:    sysctlFix("90-unroot-userns.conf", "user.max_user_namespaces", "28633")}, max, haveMax, false
	}
	if v, ok := readSysctl(sysctlUsernsClone); ok && v == 0 && uid != 0 {
		return Result{Name: CheckUserNS, Status: Fail,
			Detail: "unprivileged user namespaces are disabled: kernel.unprivileged_userns_clone = 0",
			Fix:    sysctlFix("90-unroot-userns.conf", "kernel.unprivileged_userns_clone", "1")}, max, haveMax, false
	}
	return Result{}, max, haveMax, true
}

// UserNSSettings is the userns check without its probe: it fails, with an
// explained *Error, when the host's settings disable user namespaces for
// this process, and reads two sysctls to find out (cheap enough for every
// start; the full check creates a namespace).
func UserNSSettings() error {
	r, _, _, ok := userNSSettings(os.Geteuid())
	if ok {
		return nil
	}
	return &Error{Err: operr.Wrap(operr.UserNS, "sysctl", errors.New("every start needs user namespaces")), Result: r}
}

func checkUserNS(ctx context.Context, e *env) Result {
	r, max, haveMax, ok := userNSSettings(e.uid)
	if !ok {
		return r
	}
	err := e.userns(ctx)
	if err == nil {
		if haveMax && max < 1024 {
			return Result{Status: Warn,
				Detail: fmt.Sprintf("user namespaces can be created, but user.max_user_namespaces = %d is low: container engines inside create one per container", max),
				Fix:    sysctlFix("90-unroot-userns.conf", "user.max_user_namespaces", "28633")}
		}
		d := "user namespaces can be created"
		if haveMax {
			d += fmt.Sprintf(" (user.max_user_namespaces = %d)", max)
		}
		return Result{Status: OK, Detail: d}
	}
	en, _ := errnoOf(err)
	switch en {
	case syscall.EACCES:
		r := appArmorDenied(e)
		return r
	case syscall.ENOSPC:
		return Result{Status: Fail,
			Detail: fmt.Sprintf("the user namespace limit is reached (user.max_user_namespaces = %d): %v", max, err),
			Fix:    sysctlFix("90-unroot-userns.conf", "user.max_user_namespaces", "28633")}
	case syscall.EPERM:
		return Result{Status: Fail,
			Detail: "creating a user namespace is not permitted (EPERM): unprivileged user namespaces are off, or a container runtime's seccomp profile blocks unshare",
			Fix: "on the host: " + sysctlFix("90-unroot-userns.conf", "kernel.unprivileged_userns_clone", "1") +
				"\ninside a container: start it with --security-opt seccomp=unconfined (or a profile that allows unshare/clone with CLONE_NEWUSER)"}
	case syscall.EINVAL:
		return Result{Status: Fail,
			Detail: "the kernel refused CLONE_NEWUSER (EINVAL): it was built without CONFIG_USER_NS, or this process runs in a chroot",
			Fix:    "use a kernel with CONFIG_USER_NS=y, and run unroot outside any chroot"}
	}
	return Result{Status: Fail, Detail: fmt.Sprintf("creating a user namespace failed: %v", err),
		Fix: "run `unshare --user true` to see whether any program can create one; unroot needs the same"}
}

// appArmorDenied is the verdict for EACCES on CLONE_NEWUSER. The kernel
// returns EACCES for a user namespace only when a security module says no; on
// Ubuntu 23.10+ that is AppArmor's restriction, lifted per binary by a
// profile.
func appArmorDenied(e *env) Result {
	restrict, ok := readSysctl(sysctlAppArmorUserN)
	detail := "creating a user namespace was denied (EACCES) by a security module"
	if ok && restrict == 1 {
		detail = "AppArmor denies user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1) and no profile allows " + e.exe
	} else if aa, _ := readFile(appArmorEnabled); strings.TrimSpace(aa) == "Y" {
		detail += " (AppArmor is enabled; a profile for " + e.exe + " must allow userns)"
	} else {
		detail += " (AppArmor-style restriction, SELinux policy or a seccomp filter of the calling process)"
	}
	return Result{Status: Fail, Detail: detail, Fix: appArmorFix(e.exe)}
}

// Compiled on first use: every process of this binary, the namespace init
// included, would pay for it at start-up otherwise.
var profileNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`[^A-Za-z0-9_.-]+`) })

// appArmorProfile is a profile that lets exe, and only exe, create user
// namespaces while leaving it otherwise unconfined.
func appArmorProfile(exe string) (name, text string) {
	name = "unroot" + profileNameRE().ReplaceAllString(strings.ReplaceAll(exe, "/", "."), "_")
	text = fmt.Sprintf(`abi <abi/4.0>,
include <tunables/global>

profile %s "%s" flags=(unconfined) {
  userns,

  include if exists <local/%s>
}
`, name, exe, name)
	return name, text
}

// appArmorFix writes the profile with one printf, not a heredoc: the fix is
// printed indented, and an indented heredoc terminator would not end it.
func appArmorFix(exe string) string {
	name, text := appArmorProfile(exe)
	var q []string
	for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		q = append(q, shellQuote(l))
	}
	return fmt.Sprintf("printf '%%s\\n' %s | sudo tee /etc/apparmor.d/%s >/dev/null\nsudo apparmor_parser -r /etc/apparmor.d/%s\n(the profile names the binary's real path: install it again if unroot moves)",
		strings.Join(q, " "), name, name)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func checkAppArmor(ctx context.Context, e *env) Result {
	restrict, ok := readSysctl(sysctlAppArmorUserN)
	err := e.userns(ctx)
	en, _ := errnoOf(err)
	if err != nil && en == syscall.EACCES {
		return appArmorDenied(e)
	}
	switch {
	case !ok:
		if _, statErr := os.Stat(appArmorEnabled); statErr != nil {
			return Result{Status: OK, Detail: "AppArmor is not loaded"}
		}
		return Result{Status: OK, Detail: "this kernel has no AppArmor user-namespace restriction"}
	case restrict == 0:
		return Result{Status: OK, Detail: "kernel.apparmor_restrict_unprivileged_userns = 0"}
	case err == nil:
		return Result{Status: OK, Detail: "AppArmor restricts user namespaces, and a profile allows " + e.exe}
	}
	// Restricted, and the probe failed for another reason: checkUserNS
	// reports that cause; still say what this binary will need.
	return Result{Status: Warn, Detail: "AppArmor restricts user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1); " + e.exe + " needs a profile",
		Fix: appArmorFix(e.exe)}
}
