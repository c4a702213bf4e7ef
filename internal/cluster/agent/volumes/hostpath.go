package volumes

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
)

// checkHostPath applies the hostPath type's checks (creating the
// directory or file for the ...OrCreate types) and returns the path.
func checkHostPath(hp *corev1.HostPathVolumeSource) (string, error) {
	if !filepath.IsAbs(hp.Path) {
		return "", fmt.Errorf("hostPath %q must be an absolute path", hp.Path)
	}
	path := filepath.Clean(hp.Path)
	var t corev1.HostPathType
	if hp.Type != nil {
		t = *hp.Type
	}
	fi, err := os.Stat(path)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("hostPath %s: %w", path, err)
	}
	want := func(ok bool, what string) (string, error) {
		if !exists {
			return "", fmt.Errorf("hostPath type check failed: %s does not exist (type %s wants %s)", path, t, what)
		}
		if !ok {
			return "", fmt.Errorf("hostPath type check failed: %s is not %s (type %s)", path, what, t)
		}
		return path, nil
	}
	switch t {
	case corev1.HostPathUnset:
		return path, nil
	case corev1.HostPathDirectoryOrCreate:
		if !exists {
			// 0755 as the kubelet does; the parents are created too.
			if err := os.MkdirAll(path, 0o755); err != nil {
				return "", fmt.Errorf("hostPath %s: %w", path, err)
			}
			return path, nil
		}
		return want(fi.IsDir(), "a directory")
	case corev1.HostPathDirectory:
		return want(exists && fi.IsDir(), "a directory")
	case corev1.HostPathFileOrCreate:
		if !exists {
			// Like the kubelet, the parent directory must exist already.
			f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err != nil && !errors.Is(err, fs.ErrExist) {
				return "", fmt.Errorf("hostPath %s (FileOrCreate): %w", path, err)
			}
			if f != nil {
				f.Close()
			}
			return path, nil
		}
		return want(fi.Mode().IsRegular(), "a file")
	case corev1.HostPathFile:
		return want(exists && fi.Mode().IsRegular(), "a file")
	case corev1.HostPathSocket:
		return want(exists && fi.Mode()&fs.ModeSocket != 0, "a socket")
	case corev1.HostPathCharDev:
		return want(exists && fi.Mode()&fs.ModeCharDevice != 0, "a character device")
	case corev1.HostPathBlockDev:
		return want(exists && fi.Mode()&fs.ModeDevice != 0 && fi.Mode()&fs.ModeCharDevice == 0, "a block device")
	}
	return "", fmt.Errorf("hostPath type %q is not one of \"\", DirectoryOrCreate, Directory, FileOrCreate, File, Socket, CharDevice, BlockDevice", t)
}
