package daemon

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/berth/berth/internal/engine/archive"
	"github.com/berth/berth/internal/engine/container"
	"github.com/berth/berth/internal/engine/runtime"
	"github.com/berth/berth/internal/errdefs"
)

// containerFS is a container's file system opened for docker cp. A
// running container's is its processes' view (/proc/PID/root: volumes
// and tmpfs mounts included); a stopped one's is its snapshot, mounted
// for the copy, with its volumes and binds found by path.
type containerFS struct {
	root    *archive.Root
	rootDir string // the root as a path (for user lookups)
	mounts  []fsMount
	release func()
}

type fsMount struct {
	dest string
	root *archive.Root // nil for a running container (its root has it)
	rw   bool
}

// at returns the Root holding container path p, p's path inside it, and
// the mount destination that Root stands for ("/" for the container's).
func (f *containerFS) at(p string) (*archive.Root, string, string) {
	clean := path.Clean("/" + p)
	for _, m := range f.mounts {
		if m.root == nil {
			continue
		}
		if rest, ok := strings.CutPrefix(clean, m.dest); ok && (rest == "" || rest[0] == '/') {
			rel := "/" + strings.TrimPrefix(rest, "/")
			if archive.FollowsLast(p) && rel != "/" {
				rel += "/"
			}
			return m.root, rel, m.dest
		}
	}
	return f.root, p, "/"
}

// writable reports whether p may be written: inside a read-write mount,
// or anywhere when the root file system is not read-only.
func (f *containerFS) writable(c *container.Container, p string) error {
	clean := path.Clean("/" + p)
	for _, m := range f.mounts {
		if clean == m.dest || strings.HasPrefix(clean, m.dest+"/") {
			if !m.rw {
				return fmt.Errorf("mounted volume %s is marked read-only: %w", m.dest, errdefs.ErrInvalidArgument)
			}
			return nil
		}
	}
	c.Mu.Lock()
	ro := c.HostConfig.ReadonlyRootfs
	c.Mu.Unlock()
	if ro {
		return fmt.Errorf("container rootfs is marked read-only: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}

func (d *Daemon) openContainerFS(c *container.Container) (*containerFS, error) {
	c.Mu.Lock()
	running, pid := c.State.Running, c.State.Pid
	var mounts []fsMount
	for _, mp := range c.MountPoints {
		mounts = append(mounts, fsMount{dest: path.Clean(mp.Destination), rw: mp.RW})
	}
	var sources []string
	for _, mp := range c.MountPoints {
		sources = append(sources, mp.Source)
	}
	c.Mu.Unlock()
	// Longest destination first, so /data/sub wins over /data.
	idx := make([]int, len(mounts))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return len(mounts[idx[a]].dest) > len(mounts[idx[b]].dest) })
	sorted := make([]fsMount, len(mounts))
	sortedSrc := make([]string, len(mounts))
	for i, j := range idx {
		sorted[i], sortedSrc[i] = mounts[j], sources[j]
	}
	mounts = sorted

	merged := filepath.Join(d.snaps.Root(), "containers", c.ID, "merged")
	if running && pid > 0 {
		dir := fmt.Sprintf("/proc/%d/root", pid)
		root, err := archive.OpenRoot(dir)
		if err == nil && !root.SameDir(merged) {
			// The container exited and its PID went to another process.
			root.Close()
			err = fmt.Errorf("container %s is not running any more", c.ShortID())
		}
		if err == nil {
			return &containerFS{root: root, rootDir: dir, mounts: mounts, release: func() { root.Close() }}, nil
		}
		c.Mu.Lock()
		still := c.State.Running && c.State.Pid == pid
		c.Mu.Unlock()
		if still {
			return nil, fmt.Errorf("opening the file system of container %s: %v: %w", c.ShortID(), err, errdefs.ErrUnavailable)
		}
	}
	dir, releaseMount, err := d.mountRootfs(c)
	if err != nil {
		return nil, err
	}
	root, err := archive.OpenRoot(dir)
	if err != nil {
		releaseMount()
		return nil, err
	}
	f := &containerFS{root: root, rootDir: dir}
	var opened []*archive.Root
	for i, m := range mounts {
		if sortedSrc[i] != "" {
			if st, err := os.Stat(sortedSrc[i]); err == nil && st.IsDir() {
				if mr, err := archive.OpenRoot(sortedSrc[i]); err == nil {
					m.root = mr
					opened = append(opened, mr)
				}
			}
		}
		f.mounts = append(f.mounts, m)
	}
	f.release = func() {
		for _, r := range opened {
			r.Close()
		}
		root.Close()
		releaseMount()
	}
	return f, nil
}

// mountRootfs mounts a container's snapshot for a copy or an export and
// returns its root directory. release unmounts it again unless the
// container runs by then. While any user holds it, an exit does not
// unmount it (handleExit checks live.fsUsers).
func (d *Daemon) mountRootfs(c *container.Container) (string, func(), error) {
	c.Mu.Lock()
	defer c.Mu.Unlock()
	l := d.live(c.ID)
	if l.removing {
		return "", nil, fmt.Errorf("container %s is being removed: %w", c.ShortID(), errdefs.ErrConflict)
	}
	dir, err := d.snaps.Mount(c.ID)
	if errdefs.Is(err, errdefs.ErrNotFound) {
		// Never started: the snapshot is made at the first start.
		img, ierr := d.images.Get(c.ImageID)
		if ierr != nil {
			return "", nil, fmt.Errorf("image %s of container %s: %w", c.ImageRef, c.ShortID(), ierr)
		}
		lowers, lerr := d.images.LayerDirs(img)
		if lerr != nil {
			return "", nil, lerr
		}
		dir, err = d.snaps.Prepare(c.ID, lowers)
	}
	if err != nil {
		return "", nil, fmt.Errorf("mounting the file system of container %s: %w", c.ShortID(), err)
	}
	l.fsUsers++
	var once sync.Once
	return dir, func() {
		once.Do(func() {
			c.Mu.Lock()
			defer c.Mu.Unlock()
			l.fsUsers--
			if l.fsUsers == 0 && !c.State.Running && !l.removing {
				if err := d.snaps.Unmount(c.ID); err != nil {
					d.log.Warn("unmounting rootfs after a copy", "id", c.ID, "err", err)
				}
			}
		})
	}, nil
}

func archiveNotFound(c *container.Container, p string, err error) error {
	if errdefs.Is(err, errdefs.ErrNotFound) {
		return fmt.Errorf("Could not find the file %s in container %s: %w", p, c.Name, errdefs.ErrNotFound)
	}
	return err
}

// archiveTarget resolves the container and the path= parameter of an
// archive request and opens the container's file system; on failure it has
// answered. what says what the path names, for the error.
func (d *Daemon) archiveTarget(w http.ResponseWriter, r *http.Request, what string) (*container.Container, string, *containerFS, bool) {
	c, err := d.ctrs.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return nil, "", nil, false
	}
	p := r.URL.Query().Get("path")
	if p == "" {
		writeError(w, fmt.Errorf("path is required (%s): %w", what, errdefs.ErrInvalidArgument))
		return nil, "", nil, false
	}
	fs, err := d.openContainerFS(c)
	if err != nil {
		writeError(w, err)
		return nil, "", nil, false
	}
	return c, p, fs, true
}

// headArchive and getArchive serve HEAD and GET /containers/{id}/archive:
// the stat header, and a tar of the path.
func (d *Daemon) getContainerArchive(w http.ResponseWriter, r *http.Request) {
	c, p, fs, ok := d.archiveTarget(w, r, "the file or directory in the container, e.g. path=/etc/hosts")
	if !ok {
		return
	}
	defer fs.release()
	root, rel, dest := fs.at(p)
	st, err := root.Stat(rel)
	if err != nil {
		writeError(w, archiveNotFound(c, p, err))
		return
	}
	st.Name = archive.BaseName(p)
	if st.LinkTarget != "" && dest != "/" {
		st.LinkTarget = path.Join(dest, st.LinkTarget)
	}
	b, _ := json.Marshal(st)
	w.Header().Set("X-Docker-Container-Path-Stat", base64.StdEncoding.EncodeToString(b))
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.WriteHeader(http.StatusOK)
	if err := root.WriteTar(w, rel, archive.BaseName(p)); err != nil {
		d.log.Warn("archiving a container path", "id", c.ID, "path", p, "err", err)
		// The status is gone; break the stream so the client sees a failure.
		panic(http.ErrAbortHandler)
	}
	d.containerEvent(c, "archive-path", map[string]string{"name": c.Name, "path": p})
}

// putContainerArchive serves PUT /containers/{id}/archive: it extracts a
// tar into a directory of the container.
func (d *Daemon) putContainerArchive(w http.ResponseWriter, r *http.Request) {
	c, p, fs, ok := d.archiveTarget(w, r, "the directory in the container to extract into")
	if !ok {
		return
	}
	defer fs.release()
	root, rel, _ := fs.at(p)
	resolved, err := fs.root.Resolve(p)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := fs.writable(c, resolved); err != nil {
		writeError(w, err)
		return
	}
	o := archive.ExtractOptions{NoOverwriteDirNonDir: boolParam(r, "noOverwriteDirNonDir"), SpoolDir: filepath.Join(d.cfg.Root, "tmp")}
	if boolParam(r, "copyUIDGID") {
		// docker cp -a: owned by the container's user.
		c.Mu.Lock()
		user := c.Config.User
		c.Mu.Unlock()
		if user != "" {
			uid, gid, _, err := runtime.ResolveUser(fs.rootDir, user)
			if err != nil {
				writeError(w, fmt.Errorf("copyUIDGID: unable to find user %s in container %s: %w", user, c.Name, err))
				return
			}
			o.Owner = &[2]int{int(uid), int(gid)}
		} else {
			o.Owner = &[2]int{0, 0}
		}
	}
	if err := os.MkdirAll(o.SpoolDir, 0o700); err != nil {
		writeError(w, err)
		return
	}
	if err := root.Extract(rel, r.Body, o); err != nil {
		writeError(w, archiveNotFound(c, p, err))
		return
	}
	d.containerEvent(c, "extract-to-dir", map[string]string{"name": c.Name, "path": p})
	w.WriteHeader(http.StatusOK)
}

// getContainerExport serves GET /containers/{id}/export: the container's
// root file system (its snapshot; volumes are not included, as in Docker)
// as one tar.
func (d *Daemon) getContainerExport(w http.ResponseWriter, r *http.Request) {
	c, err := d.ctrs.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	dir, release, err := d.mountRootfs(c)
	if err != nil {
		writeError(w, err)
		return
	}
	defer release()
	root, err := archive.OpenRoot(dir)
	if err != nil {
		writeError(w, err)
		return
	}
	defer root.Close()
	w.Header().Set("Content-Type", "application/x-tar")
	w.WriteHeader(http.StatusOK)
	if err := root.WriteTar(w, "/", ""); err != nil {
		d.log.Warn("exporting a container", "id", c.ID, "err", err)
		panic(http.ErrAbortHandler)
	}
	d.containerEvent(c, "export", map[string]string{"name": c.Name})
}
