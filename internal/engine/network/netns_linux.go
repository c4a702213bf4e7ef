package network

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/berth/berth/internal/errdefs"
)

var netnsDirOnce sync.Map // dir -> error

// prepareNetNSDir makes dir a shared bind mount (as `ip netns` does for
// /run/netns) so that unmounting a namespace file there propagates to the
// copies other mount namespaces made of it.
func prepareNetNSDir(dir string) error {
	if v, ok := netnsDirOnce.Load(dir); ok && v == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		// Not a mount point yet: bind it onto itself first.
		if err = unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err == nil {
			err = unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
		}
	}
	if err != nil {
		return fmt.Errorf("make %s a shared mount: %w", dir, err)
	}
	netnsDirOnce.Store(dir, nil)
	return nil
}

func validID(id string) error {
	if id == "" || len(id) > 128 || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return fmt.Errorf("container id %q: want a non-empty name without '/': %w", id, errdefs.ErrInvalidArgument)
	}
	return nil
}

// CreateNetNS creates a new network namespace for container id, with its
// loopback up, pinned by a bind mount at StateDir/netns/<id>, and returns
// that path (the OCI spec's NetNSPath). An existing one is an
// errdefs.ErrAlreadyExists error.
func (m *Manager) CreateNetNS(id string) (string, error) {
	if err := validID(id); err != nil {
		return "", err
	}
	dir := filepath.Join(m.cfg.StateDir, "netns")
	if err := prepareNetNSDir(dir); err != nil {
		return "", err
	}
	path := filepath.Join(dir, id)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("network namespace of container %q: %w", id, errdefs.ErrAlreadyExists)
		}
		return "", fmt.Errorf("network namespace of container %q: %w", id, err)
	}
	f.Close()
	if err := newNetNSAt(path); err != nil {
		os.Remove(path)
		return "", fmt.Errorf("network namespace of container %q: %w", id, err)
	}
	ns, err := netns.GetFromPath(path)
	if err == nil {
		var h *netlink.Handle
		if h, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE); err == nil {
			var lo netlink.Link
			if lo, err = h.LinkByName("lo"); err == nil {
				err = h.LinkSetUp(lo)
			}
			h.Close()
		}
		ns.Close()
	}
	if err != nil {
		m.DeleteNetNS(id)
		return "", fmt.Errorf("network namespace of container %q: bring up lo: %w", id, err)
	}
	return path, nil
}

// newNetNSAt unshares a new network namespace on a locked OS thread and
// bind-mounts it at path (which must exist).
func newNetNSAt(path string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		merr := unix.Mount(src, path, "none", unix.MS_BIND, "")
		if err := netns.Set(orig); err != nil {
			// The thread is stuck in the new namespace: leave it locked so
			// the runtime discards it when this goroutine exits.
			errc <- errors.Join(merr, fmt.Errorf("return to the host namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		if merr != nil {
			merr = fmt.Errorf("bind mount: %w", merr)
		}
		errc <- merr
	}()
	return <-errc
}

// DeleteNetNS unmounts and removes the namespace file of container id. A
// missing one is not an error. The kernel frees the namespace once no
// process is left in it.
func (m *Manager) DeleteNetNS(id string) error {
	if err := validID(id); err != nil {
		return err
	}
	path := filepath.Join(m.cfg.StateDir, "netns", id)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("network namespace of container %q: unmount: %w", id, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("network namespace of container %q: %w", id, err)
	}
	return nil
}

// NetNSPath is where CreateNetNS puts container id's namespace.
func (m *Manager) NetNSPath(id string) string {
	return filepath.Join(m.cfg.StateDir, "netns", id)
}

// listNetNS returns the container IDs that have a namespace file.
func (m *Manager) listNetNS() []string {
	ents, _ := os.ReadDir(filepath.Join(m.cfg.StateDir, "netns"))
	var out []string
	for _, e := range ents {
		if !e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}
