package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/unroot/unroot/internal/notify"
	"github.com/unroot/unroot/internal/systemdunit"
)

func newSystemdCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "systemd",
		Short: "Run a command as a systemd user service under unroot",
		Args:  cobra.NoArgs,
	}
	c.AddCommand(newSystemdInstallCommand())
	return c
}

func newSystemdInstallCommand() *cobra.Command {
	var (
		dryRun  bool
		force   bool
		ready   string
		restart string
	)
	c := &cobra.Command{
		Use:   "install NAME [--dry-run] [--ready=notify|ports] [--restart=on-failure] -- [RUN FLAGS] COMMAND [ARG...]",
		Short: "Write ~/.config/systemd/user/NAME.service that runs `unroot run … COMMAND`",
		Long: `Write a systemd user unit, ~/.config/systemd/user/NAME.service, whose
ExecStart is this unroot binary's absolute path with "run", then everything
after -- (run flags such as -p 8080:80, then the command).

The unit is Type=notify: with --ready=notify (for commands that speak
sd_notify, such as dockerd and containerd) unroot relays the command's
READY=1; with --ready=ports (the default, for any command) unroot sends it
once the network is up and ports are published. Neither needs
NotifyAccess=all. Delegate=yes passes cgroup controllers down, KillMode=mixed
lets unroot forward SIGTERM and exit with the command's status, and the state
directory is %t/unroot-NAME ($XDG_RUNTIME_DIR/unroot-NAME).`,
		Example: `  unroot systemd install web -- -p 8080:80 python3 -m http.server 80
  unroot systemd install docker --ready=notify -- --net=slirp4netns --copy-up=/etc --copy-up=/run dockerd`,
		RunE: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if len(args) == 0 {
				return errors.New("no unit name: unroot systemd install NAME -- COMMAND…")
			}
			if dash != 1 {
				return errors.New("put the command after --: unroot systemd install NAME -- [RUN FLAGS] COMMAND…")
			}
			name := strings.TrimSuffix(args[0], ".service")
			if err := systemdunit.ValidName(name); err != nil {
				return err
			}
			mode, err := notify.ParseMode(ready)
			if err != nil {
				return err
			}
			runArgs, err := unitRunArgs(name, string(mode), args[1:])
			if err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find the unroot binary: %w", err)
			}
			u := systemdunit.Unit{Name: name, Unroot: self, Args: runArgs, Restart: restart,
				Description: name + " (unroot: " + strings.Join(args[1:], " ") + ")"}
			if p := os.Getenv("PATH"); p != "" {
				// The user manager's PATH often lacks /usr/sbin (iptables).
				u.Env = []string{"PATH=" + p}
			}
			text, err := u.Render()
			if err != nil {
				return err
			}
			if dryRun {
				_, err := fmt.Fprint(os.Stdout, text)
				return err
			}
			path, err := unitPath(name)
			if err != nil {
				return err
			}
			if err := writeUnit(path, text, force); err != nil {
				return err
			}
			fmt.Printf("wrote %s\n", path)
			fmt.Printf("start it now and at every login: systemctl --user daemon-reload && systemctl --user enable --now %s.service\n", name)
			if hint := lingerHint(); hint != "" {
				fmt.Println(hint)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print the unit instead of writing it")
	c.Flags().BoolVar(&force, "force", false, "replace an existing unit file")
	c.Flags().StringVar(&ready, "ready", string(notify.ModePorts), "who sends READY=1: notify (the command, relayed by unroot) or ports (unroot, once ports are published)")
	c.Flags().StringVar(&restart, "restart", "on-failure", "systemd Restart= (no, on-failure, on-abnormal, always, …)")
	return c
}

// unitRunArgs checks the words after -- with `unroot run`'s own parser and
// returns them with --ready and the state directory added and the command
// made absolute (the unit runs with systemd's PATH, not the shell's).
func unitRunArgs(name, ready string, after []string) ([]string, error) {
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.SetOutput(nopWriter{})
	var o opts
	register(fs, &o, asUnroot)
	command, err := parse(fs, after)
	if err != nil {
		return nil, fmt.Errorf("after --: %v (see unroot run --help)", err)
	}
	if len(command) == 0 {
		return nil, errors.New("no command after the run flags: unroot systemd install NAME -- [RUN FLAGS] COMMAND…")
	}
	if fs.Changed("ready") && o.ready != ready {
		return nil, fmt.Errorf("--ready=%s after -- contradicts --ready=%s: give it once, before --", o.ready, ready)
	}
	bin := command[0]
	if !strings.Contains(bin, "/") {
		p, err := exec.LookPath(bin)
		if err != nil {
			return nil, fmt.Errorf("command %q is not in PATH: give its absolute path", bin)
		}
		bin = p
	}
	if abs, err := filepath.Abs(bin); err == nil {
		bin = abs
	}
	flags := after[:len(after)-len(command)]
	out := []string{"--ready=" + ready}
	if !fs.Changed("state-dir") {
		out = append(out, "--state-dir=%t/unroot-"+name)
	}
	out = append(out, flags...)
	out = append(out, bin)
	return append(out, command[1:]...), nil
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

func unitPath(name string) (string, error) {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find the unit directory: %w: set HOME or XDG_CONFIG_HOME", err)
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "systemd", "user", name+".service"), nil
}

// writeUnit writes atomically, so systemd never reads half a unit.
func writeUnit(path, text string, force bool) error {
	if _, err := os.Stat(path); err == nil && !force {
		return fmt.Errorf("%s exists: pass --force to replace it (or --dry-run to compare)", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".unroot-unit-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(text); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// lingerHint says how to keep the service alive without a login session,
// unless lingering is already on.
func lingerHint() string {
	u, err := user.Current()
	if err != nil {
		return ""
	}
	if _, err := os.Stat(filepath.Join("/var/lib/systemd/linger", u.Username)); err == nil {
		return ""
	}
	return fmt.Sprintf("keep it running after you log out, and start it at boot: sudo loginctl enable-linger %s", u.Username)
}
