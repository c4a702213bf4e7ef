package volume

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth/berth/internal/errdefs"
)

// MountPoint is one of a container's mounts as inspect shows it (Docker's
// "Mounts" entries).
type MountPoint struct {
	Type        MountType `json:"Type"`
	Name        string    `json:"Name,omitempty"`
	Source      string    `json:"Source"`
	Destination string    `json:"Destination"`
	Driver      string    `json:"Driver,omitempty"`
	Mode        string    `json:"Mode"`
	RW          bool      `json:"RW"`
	Propagation string    `json:"Propagation"`
}

// plan validates a container's mount specs, refuses two mounts on one
// target, adds an anonymous volume for every image VOLUME no spec covers,
// and orders the result parents first.
func plan(imageVolumes map[string]struct{}, mounts []MountSpec) ([]MountSpec, error) {
	out := make([]MountSpec, 0, len(mounts)+len(imageVolumes))
	seen := map[string]bool{}
	for _, m := range mounts {
		v, err := m.Validate()
		if err != nil {
			return nil, err
		}
		if seen[v.Target] {
			return nil, invalidf("duplicate mount point: %s", v.Target)
		}
		seen[v.Target] = true
		out = append(out, v)
	}
	for _, dst := range slices.Sorted(maps.Keys(imageVolumes)) {
		t, err := checkTarget(TypeVolume, dst)
		if err != nil {
			return nil, fmt.Errorf("image VOLUME %q: %w", dst, err)
		}
		if seen[t] {
			continue
		}
		seen[t] = true
		out = append(out, MountSpec{Type: TypeVolume, Target: t})
	}
	sortByDepth(out, func(m MountSpec) string { return m.Target })
	return out, nil
}

func depth(p string) int { return strings.Count(path.Clean(p), "/") }

func sortByDepth[T any](s []T, key func(T) string) {
	sort.SliceStable(s, func(i, j int) bool { return depth(key(s[i])) < depth(key(s[j])) })
}

// claimed is what claimLocked did, so that a failure can undo it.
type claimed struct {
	vols     []*Volume // per plan entry; nil for binds and tmpfs
	created  []string
	acquired []string
}

// claimLocked gets or creates the volumes of p and records containerID as
// their user.
func (s *Store) claimLocked(containerID string, p []MountSpec) (*claimed, error) {
	c := &claimed{vols: make([]*Volume, len(p))}
	for i, m := range p {
		if m.Type != TypeVolume {
			continue
		}
		var v *Volume
		var created bool
		var err error
		if m.Source == "" {
			v = s.anonymousForLocked(containerID, m.Target)
			if v == nil {
				v, created, err = s.createLocked("", m.VolumeLabels, m.VolumeOptions, containerID, m.Target)
			}
		} else {
			v, created, err = s.createLocked(m.Source, m.VolumeLabels, m.VolumeOptions, "", "")
		}
		if err != nil {
			s.undoLocked(containerID, c)
			return nil, err
		}
		if created {
			c.created = append(c.created, v.Name)
		}
		if !slices.Contains(v.UsedBy, containerID) {
			if err := s.acquireLocked(v, containerID); err != nil {
				s.undoLocked(containerID, c)
				return nil, err
			}
			c.acquired = append(c.acquired, v.Name)
		}
		c.vols[i] = v
	}
	return c, nil
}

func (s *Store) undoLocked(containerID string, c *claimed) {
	for _, n := range c.acquired {
		if v, ok := s.vols[n]; ok {
			s.releaseLocked(v, containerID)
		}
	}
	for _, n := range c.created {
		if v, ok := s.vols[n]; ok && len(v.UsedBy) == 0 {
			s.removeLocked(v)
		}
	}
}

// Claim validates a container's mounts and, for its volumes, creates the
// missing ones (named, and anonymous ones for "-v /path" specs and image
// VOLUMEs) and records the container as their user, so that they cannot be
// removed while it exists. Call it at container create; it needs no root
// file system. It is idempotent: a container keeps its anonymous volumes
// (found by container ID and target) across calls. On error nothing is
// left created or acquired by this call.
func (s *Store) Claim(containerID string, imageVolumes map[string]struct{}, mounts []MountSpec) error {
	if err := validContainerID(containerID); err != nil {
		return err
	}
	p, err := plan(imageVolumes, mounts)
	if err != nil {
		return err
	}
	if err := checkBindSources(p); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err = s.claimLocked(containerID, p)
	return err
}

// checkBindSources refuses a missing bind source that may not be created
// (--mount type=bind), before anything is created.
func checkBindSources(p []MountSpec) error {
	for _, m := range p {
		if m.Type != TypeBind || m.CreateHostPath {
			continue
		}
		if _, err := os.Stat(m.Source); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return invalidf("invalid mount config for type \"bind\": bind source path does not exist: %s", m.Source)
			}
			return fmt.Errorf("invalid mount config for type \"bind\": bind source path %s: %w", m.Source, err)
		}
	}
	return nil
}

// Resolve turns a container's mounts into the OCI mounts to append to its
// spec (runtime.SpecOpts.Mounts) and the mount points inspect shows. Call
// it at every start, with the container's root file system mounted at
// rootfs. It does what Claim does, then for each mount, parents first:
//
//   - resolves the target inside rootfs as the container will see it,
//     following symlinks with "/" meaning rootfs and refusing a symlink
//     whose ".." climbs above the root; missing directories (or, for a
//     file bind, the file) are created inside rootfs without following
//     any symlink; the OCI destination is the resolved, symlink-free path;
//   - for a volume, on the container's first start and only if the volume
//     is empty, copies the image's content at the target into it,
//     preserving ownership, modes, times, symlinks, hard links, devices and
//     extended attributes (unless nocopy);
//   - for a bind, checks the source exists (creating a missing directory
//     only for -v specs);
//   - for tmpfs, builds the mount options.
//
// Everything is checked before anything is created.
func (s *Store) Resolve(containerID, rootfs string, imageVolumes map[string]struct{}, mounts []MountSpec) ([]specs.Mount, []MountPoint, error) {
	if err := validContainerID(containerID); err != nil {
		return nil, nil, err
	}
	if !filepath.IsAbs(rootfs) {
		return nil, nil, fmt.Errorf("rootfs %q: %w: want an absolute path", rootfs, errdefs.ErrInvalidArgument)
	}
	p, err := plan(imageVolumes, mounts)
	if err != nil {
		return nil, nil, err
	}
	if err := checkBindSources(p); err != nil {
		return nil, nil, err
	}
	// Resolve every target before creating anything.
	dests := make([]string, len(p))
	byDest := map[string]string{}
	for i, m := range p {
		d, err := resolveInRoot(rootfs, m.Target)
		if err != nil {
			return nil, nil, err
		}
		if prev, ok := byDest[d]; ok {
			return nil, nil, invalidf("duplicate mount point: %s and %s both resolve to %s", prev, m.Target, d)
		}
		byDest[d] = m.Target
		dests[i] = d
	}
	s.mu.Lock()
	c, err := s.claimLocked(containerID, p)
	s.mu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) ([]specs.Mount, []MountPoint, error) {
		s.mu.Lock()
		s.undoLocked(containerID, c)
		s.mu.Unlock()
		return nil, nil, err
	}
	type entry struct {
		m  specs.Mount
		mp MountPoint
	}
	var entries []entry
	for i, m := range p {
		dst := dests[i]
		mode := m.Mode
		if mode == "" && m.ReadOnly {
			mode = "ro"
		}
		mp := MountPoint{Type: m.Type, Destination: m.Target, Mode: mode, RW: !m.ReadOnly}
		var om specs.Mount
		switch m.Type {
		case TypeBind:
			fi, err := os.Stat(m.Source)
			if errors.Is(err, fs.ErrNotExist) && m.CreateHostPath {
				if err = os.MkdirAll(m.Source, 0o755); err == nil {
					fi, err = os.Stat(m.Source)
				}
			}
			if err != nil {
				return fail(fmt.Errorf("bind source %s: %w", m.Source, err))
			}
			if err := ensureTarget(rootfs, dst, !fi.IsDir()); err != nil {
				return fail(err)
			}
			prop := m.Propagation
			if prop == "" {
				prop = "rprivate"
			}
			bind := "rbind"
			if m.NonRecursive {
				bind = "bind"
			}
			om = specs.Mount{Destination: dst, Type: "bind", Source: m.Source, Options: []string{bind, prop}}
			mp.Source, mp.Propagation = m.Source, prop
		case TypeVolume:
			v := c.vols[i]
			if err := ensureTarget(rootfs, dst, false); err != nil {
				return fail(err)
			}
			if err := s.populate(v.Name, containerID, filepath.Join(rootfs, dst), m.NoCopy); err != nil {
				return fail(err)
			}
			om = specs.Mount{Destination: dst, Type: "bind", Source: v.Mountpoint, Options: []string{"rbind", "rprivate"}}
			mp.Name, mp.Source, mp.Driver = v.Name, v.Mountpoint, v.Driver
			if mp.Mode == "" {
				mp.Mode = "z"
			}
		case TypeTmpfs:
			if err := ensureTarget(rootfs, dst, false); err != nil {
				return fail(err)
			}
			om = specs.Mount{Destination: dst, Type: "tmpfs", Source: "tmpfs", Options: tmpfsOptions(m)}
		}
		if m.ReadOnly {
			om.Options = append(om.Options, "ro")
		} else if m.Type != TypeTmpfs {
			om.Options = append(om.Options, "rw")
		}
		entries = append(entries, entry{om, mp})
	}
	sortByDepth(entries, func(e entry) string { return e.m.Destination })
	oci := make([]specs.Mount, len(entries))
	mps := make([]MountPoint, len(entries))
	for i, e := range entries {
		oci[i], mps[i] = e.m, e.mp
	}
	return oci, mps, nil
}

// tmpfsOptions builds a tmpfs mount's options: nosuid, nodev and noexec
// unless the spec asks for suid, dev or exec, then its other flags, size
// and mode.
func tmpfsOptions(m MountSpec) []string {
	opts := []string{}
	for _, d := range []struct{ on, off string }{{"suid", "nosuid"}, {"dev", "nodev"}, {"exec", "noexec"}} {
		if !slices.Contains(m.TmpfsFlags, d.on) {
			opts = append(opts, d.off)
		}
	}
	for _, f := range m.TmpfsFlags {
		switch f {
		case "suid", "nosuid", "dev", "nodev", "exec", "noexec", "ro", "rw":
		default:
			opts = append(opts, f)
		}
	}
	if m.TmpfsSize > 0 {
		opts = append(opts, "size="+strconv.FormatInt(m.TmpfsSize, 10))
	}
	if m.TmpfsMode != 0 {
		opts = append(opts, "mode="+strconv.FormatUint(uint64(m.TmpfsMode), 8))
	}
	return opts
}

const maxSymlinks = 40

// resolveInRoot resolves target (absolute, clean, without "..") inside
// root the way the container will see it: every symlink is followed with
// an absolute link meaning root. It returns the resolved path, relative to
// root and free of symlinks as far as it exists; components that do not
// exist yet are kept as given. A symlink whose ".." would climb above the
// root is refused: followed on the host it would leave the container, and
// no honest image needs it. So are targets resolving to "/" or into /proc.
func resolveInRoot(root, target string) (string, error) {
	escape := func(link, dest string) error {
		return invalidf("mount target %s: symlink %s -> %s leads outside the container's root file system", target, link, dest)
	}
	pending := strings.Split(strings.TrimPrefix(target, "/"), "/")
	var resolved []string
	links := 0
	missing := false
	lastLink, lastDest := "", ""
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if missing {
				return "", invalidf("mount target %s: symlink %s -> %s climbs out of a directory that does not exist", target, lastLink, lastDest)
			}
			if len(resolved) == 0 {
				return "", escape(lastLink, lastDest)
			}
			resolved = resolved[:len(resolved)-1]
			continue
		}
		if missing {
			resolved = append(resolved, c)
			continue
		}
		rel := "/" + path.Join(append(resolved, c)...)
		fi, err := os.Lstat(filepath.Join(root, rel))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			missing = true
			resolved = append(resolved, c)
			continue
		case err != nil:
			return "", fmt.Errorf("mount target %s: %w", target, err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			links++
			if links > maxSymlinks {
				return "", invalidf("mount target %s: too many levels of symbolic links", target)
			}
			dest, err := os.Readlink(filepath.Join(root, rel))
			if err != nil {
				return "", fmt.Errorf("mount target %s: %w", target, err)
			}
			lastLink, lastDest = rel, dest
			if strings.HasPrefix(dest, "/") {
				resolved = resolved[:0]
			}
			pending = append(strings.Split(dest, "/"), pending...)
			continue
		}
		if !fi.IsDir() && len(pending) > 0 {
			return "", invalidf("mount target %s: %s is not a directory", target, rel)
		}
		resolved = append(resolved, c)
	}
	out := "/" + path.Join(resolved...)
	if out == "/" {
		return "", invalidf("mount target %s resolves to the container's root: destination can't be '/'", target)
	}
	if out == "/proc" || strings.HasPrefix(out, "/proc/") {
		return "", invalidf("mount target %s resolves to %s: mounts over /proc are not allowed", target, out)
	}
	return out, nil
}

// populate copies src (the image's content at a volume's target, inside
// the container's root file system) into the volume on containerID's first
// start, if the volume is empty and noCopy is not set. A failed copy leaves
// the volume empty so the next start tries again.
func (s *Store) populate(name, containerID, src string, noCopy bool) error {
	l := s.copyLock(name)
	l.Lock()
	defer l.Unlock()
	s.mu.Lock()
	v, ok := s.vols[name]
	var done bool
	var mp string
	if ok {
		done, mp = slices.Contains(v.Copied, containerID), v.Mountpoint
	}
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("volume %s: %w", name, errdefs.ErrNotFound)
	}
	if done {
		return nil
	}
	if !noCopy {
		ents, err := os.ReadDir(mp)
		if err != nil {
			return fmt.Errorf("volume %s: %w", name, err)
		}
		if len(ents) == 0 {
			if err := copyTree(src, mp); err != nil {
				emptyDir(mp)
				return fmt.Errorf("populating volume %s from the image: %w", name, err)
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok = s.vols[name]; !ok {
		return fmt.Errorf("volume %s: %w", name, errdefs.ErrNotFound)
	}
	if slices.Contains(v.Copied, containerID) {
		return nil
	}
	return s.updateLocked(v, func(c *Volume) { c.Copied = append(c.Copied, containerID) })
}

// emptyDir removes dir's content, keeping dir.
func emptyDir(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}
