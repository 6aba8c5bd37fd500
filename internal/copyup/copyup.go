// Package copyup makes a read-only host directory writable inside the mount
// namespace with RootlessKit's tmpfs+symlink layout, which scripts such as
// dockerd-rootless.sh rely on: DIR becomes a tmpfs holding one symlink per
// original entry, pointing either to the original symlink's target or into
// DIR/.roNNN, where the original tree stays bind-mounted. Replacing an entry
// (rm, then create or bind-mount) then never touches the host.
package copyup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/unroot/unroot/internal/sys"
)

// Validate rejects directories that cannot be copied up.
func Validate(dir string) error {
	if !filepath.IsAbs(dir) {
		return errors.New("must be an absolute path")
	}
	if filepath.Clean(dir) == "/tmp" {
		return errors.New("/tmp is used for the copy-up itself and cannot be copied up; mount a tmpfs on it inside instead")
	}
	if filepath.Clean(dir) == "/" {
		return errors.New("the root cannot be copied up; name its subdirectories instead")
	}
	return nil
}

// Do copies dir up. It must run in a private mount namespace with
// CAP_SYS_ADMIN over it. scratch is where the original is bind-mounted for
// a moment before it moves under dir ("" means /tmp); a directory that is
// removed anyway when the launcher ends (the state directory) leaves
// nothing behind even if the process is killed half-way.
func Do(dir, scratch string) error {
	dir = filepath.Clean(dir)
	if err := Validate(dir); err != nil {
		return err
	}
	if fi, err := os.Stat(dir); err != nil {
		return fmt.Errorf("copy-up %s: %w (create it on the host, or drop it from --copy-up)", dir, err)
	} else if !fi.IsDir() {
		return fmt.Errorf("copy-up %s: not a directory", dir)
	}
	// The original tree is held detached while the tmpfs covers dir, then
	// put under it. Kernels before 5.2 (no open_tree) park it on a scratch
	// directory instead, which costs a directory made and removed there.
	var place func(bind1 string) error
	if tree, err := sys.CloneTree(dir); err == nil {
		defer tree.Close()
		place = tree.Attach
	} else {
		if scratch == "" {
			scratch = "/tmp"
		}
		bind0, err := os.MkdirTemp(scratch, ".copyup-")
		if err != nil {
			return fmt.Errorf("copy-up %s: create temporary mount point: %w", dir, err)
		}
		defer os.Remove(bind0)
		if err := sys.Mount(dir, bind0, "", sys.MS_BIND|sys.MS_REC, ""); err != nil {
			return fmt.Errorf("copy-up %s: bind to %s: %w", dir, bind0, err)
		}
		place = func(bind1 string) error { return sys.Mount(bind0, bind1, "", sys.MS_MOVE, "") }
	}
	if err := sys.Mount("none", dir, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("copy-up %s: mount tmpfs: %w", dir, err)
	}
	bind1, err := os.MkdirTemp(dir, ".ro")
	if err != nil {
		return fmt.Errorf("copy-up %s: create %s/.roNNN: %w", dir, dir, err)
	}
	if err := place(bind1); err != nil {
		return fmt.Errorf("copy-up %s: put the original under %s: %w (is --propagation shared? use private or slave with --copy-up)", dir, bind1, err)
	}
	ents, err := os.ReadDir(bind1)
	if err != nil {
		return fmt.Errorf("copy-up %s: read original: %w", dir, err)
	}
	rel := filepath.Base(bind1)
	for _, e := range ents {
		name := e.Name()
		target := filepath.Join(rel, name)
		if e.Type()&os.ModeSymlink != 0 {
			if t, err := os.Readlink(filepath.Join(bind1, name)); err == nil {
				target = t
			}
		}
		link := filepath.Join(dir, name)
		if err := os.Symlink(target, link); err != nil {
			return fmt.Errorf("copy-up %s: symlink %s -> %s: %w", dir, link, target, err)
		}
	}
	return nil
}
