package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

func inode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// mounted reports whether dir/merged is a mount point: an overlay has its
// own device number.
func mounted(dir string) bool {
	var a, b unix.Stat_t
	if unix.Lstat(dir, &a) != nil || unix.Lstat(filepath.Join(dir, "merged"), &b) != nil {
		return false
	}
	return a.Dev != b.Dev
}

func escape(p string) string {
	return strings.NewReplacer(`\`, `\\`, `:`, `\:`, `,`, `\,`).Replace(p)
}

// mountOverlay mounts dir/merged. When the option string would not fit in
// a page, it mounts from dir with short relative paths (dir/l/<n> symlinks
// to the lower dirs) in a thread whose cwd is dir, so a 100-layer image
// works.
func mountOverlay(dir string, lowers []string) error {
	merged := filepath.Join(dir, "merged")
	esc := make([]string, len(lowers))
	for i, l := range lowers {
		esc[i] = escape(l)
	}
	opts := "lowerdir=" + strings.Join(esc, ":") + ",upperdir=" + escape(filepath.Join(dir, "upper")) +
		",workdir=" + escape(filepath.Join(dir, "work"))
	if len(opts) < os.Getpagesize()-1 {
		return unix.Mount("overlay", merged, "overlay", 0, opts)
	}
	ldir := filepath.Join(dir, "l")
	os.RemoveAll(ldir)
	if err := os.Mkdir(ldir, 0o700); err != nil {
		return err
	}
	short := make([]string, len(lowers))
	for i, l := range lowers {
		n := strconv.Itoa(i)
		if err := os.Symlink(l, filepath.Join(ldir, n)); err != nil {
			return err
		}
		short[i] = "l/" + n
	}
	opts = "lowerdir=" + strings.Join(short, ":") + ",upperdir=upper,workdir=work"
	if len(opts) >= os.Getpagesize()-1 {
		return fmt.Errorf("%d lower dirs do not fit in one mount option string", len(lowers))
	}
	errc := make(chan error, 1)
	go func() {
		// This thread gets a cwd of its own and is never unlocked, so it
		// exits with the goroutine instead of serving others with that cwd.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare fs: %w", err)
			return
		}
		if err := unix.Chdir(dir); err != nil {
			errc <- err
			return
		}
		errc <- unix.Mount("overlay", merged, "overlay", 0, opts)
	}()
	return <-errc
}

func unmount(dir string) error {
	merged := filepath.Join(dir, "merged")
	for mounted(dir) {
		err := unix.Unmount(merged, 0)
		if errors.Is(err, unix.EBUSY) {
			err = unix.Unmount(merged, unix.MNT_DETACH)
		}
		if err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmount %s: %w", merged, err)
		}
		if err != nil {
			break
		}
	}
	return nil
}
