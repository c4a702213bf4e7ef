package runtime

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// openInRoot opens path inside rootfs, resolving symlinks and ".." as if
// rootfs were "/" (openat2 RESOLVE_IN_ROOT), so nothing outside it can be
// reached. flags are open flags (O_PATH to only stat).
func openInRoot(rootfs, path string, flags int) (*os.File, error) {
	root, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: rootfs, Err: err}
	}
	defer unix.Close(root)
	how := &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	for {
		fd, err := unix.Openat2(root, path, how)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return os.NewFile(uintptr(fd), path), nil
	}
}

// statInRoot stats path inside rootfs (following in-root symlinks).
func statInRoot(rootfs, path string) (os.FileInfo, error) {
	f, err := openInRoot(rootfs, path, unix.O_PATH)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Stat()
}
