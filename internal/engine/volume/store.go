// Package volume owns the engine's volumes and container mounts: the store
// of named and anonymous volumes (driver "local", one directory each under
// the store's root, metadata and container references persisted atomically
// so they survive daemon restarts), the parsers for Docker's -v, --mount and
// --tmpfs syntax, and Resolve, which turns a container's mount specs into OCI
// mounts: volumes created and populated from the image on first use, bind
// mounts checked, tmpfs mounts built, and every mount target resolved inside
// the container's root file system so that no symlink can lead it outside.
//
// Layout on disk:
//
//	<root>/<name>/_data       the volume's content (its Mountpoint)
//	<root>/<name>/volume.json metadata: driver, labels, options, creation
//	                          time, anonymous owner, container references
package volume

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/berth/berth/internal/errdefs"
	"github.com/berth/berth/internal/lazyre"
)

// DriverLocal is the only volume driver berth has.
const DriverLocal = "local"

const (
	metaFile = "volume.json"
	dataDir  = "_data"
)

// Volume is a volume as the store records and inspect shows it. Values
// returned by the Store are copies: changing them changes nothing stored.
type Volume struct {
	Name       string            `json:"Name"`
	Driver     string            `json:"Driver"`
	Mountpoint string            `json:"Mountpoint"`
	CreatedAt  time.Time         `json:"CreatedAt"`
	Labels     map[string]string `json:"Labels"`
	Options    map[string]string `json:"Options"`
	Scope      string            `json:"Scope"`
	// Anonymous volumes have a generated 64-hex name. Those a container
	// got for an image VOLUME or a "-v /path" spec record the container
	// (Owner) and the path (Target); `rm -v` removes them with it.
	Anonymous bool   `json:"Anonymous,omitempty"`
	Owner     string `json:"Owner,omitempty"`
	Target    string `json:"Target,omitempty"`
	// UsedBy lists the IDs of the containers that reference the volume,
	// sorted. A volume with any user cannot be removed.
	UsedBy []string `json:"UsedBy"`
	// Copied lists the containers whose first start already considered
	// copying the image's content into the volume (Docker copies once per
	// container, and only into an empty volume).
	Copied []string `json:"Copied,omitempty"`
}

func (v *Volume) clone() *Volume {
	c := *v
	c.Labels = maps.Clone(v.Labels)
	c.Options = maps.Clone(v.Options)
	c.UsedBy = slices.Clone(v.UsedBy)
	c.Copied = slices.Clone(v.Copied)
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	if c.Options == nil {
		c.Options = map[string]string{}
	}
	return &c
}

// Store keeps the volumes under one root directory. It is safe for
// concurrent use by one process; the engine daemon owns its root.
type Store struct {
	root string

	mu   sync.Mutex
	vols map[string]*Volume
	// copyMu serialises populating a volume from an image.
	copyMu map[string]*sync.Mutex
}

// New opens (creating if needed) the store at root and loads the volumes
// recorded there. A volume directory whose metadata is missing or
// unreadable is skipped and reported in the returned error list; the store
// is still usable.
func New(root string) (*Store, []error, error) {
	if !filepath.IsAbs(root) {
		return nil, nil, fmt.Errorf("volume root %q: %w: want an absolute path", root, errdefs.ErrInvalidArgument)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, nil, fmt.Errorf("volume root: %w", err)
	}
	s := &Store{root: filepath.Clean(root), vols: map[string]*Volume{}, copyMu: map[string]*sync.Mutex{}}
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, nil, fmt.Errorf("volume root: %w", err)
	}
	var warns []error
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, e.Name(), metaFile))
		if err != nil {
			warns = append(warns, fmt.Errorf("volume %q: %w", e.Name(), err))
			continue
		}
		var v Volume
		if err := json.Unmarshal(b, &v); err != nil || v.Name != e.Name() {
			warns = append(warns, fmt.Errorf("volume %q: corrupt metadata %s", e.Name(), filepath.Join(root, e.Name(), metaFile)))
			continue
		}
		v.Mountpoint = s.mountpoint(v.Name)
		s.vols[v.Name] = &v
	}
	return s, warns, nil
}

// Root returns the store's root directory.
func (s *Store) Root() string { return s.root }

func (s *Store) mountpoint(name string) string { return filepath.Join(s.root, name, dataDir) }

var namePattern = lazyre.New(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// ValidateName checks a volume name as Docker's local driver does: at least
// two characters, [a-zA-Z0-9][a-zA-Z0-9_.-]+.
func ValidateName(name string) error {
	switch {
	case len(name) == 1:
		return fmt.Errorf("volume name %q is too short, names should be at least two alphanumeric characters: %w", name, errdefs.ErrInvalidArgument)
	case len(name) > 255 || !namePattern.MatchString(name):
		return fmt.Errorf("%q includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path: %w", name, errdefs.ErrInvalidArgument)
	}
	return nil
}

// validateOptions accepts the options berth's local driver knows. None
// yet: Docker's type/device/o (mounting a device or NFS share as the
// volume) are refused rather than silently ignored.
func validateOptions(opts map[string]string) error {
	for k := range opts {
		switch k {
		case "type", "device", "o":
			return fmt.Errorf("volume option %q: %w: the local driver does not mount devices or remote file systems yet", k, errdefs.ErrNotImplemented)
		default:
			return fmt.Errorf("volume option %q: %w: the local driver takes no options", k, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func newAnonymousName() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b[:])
}

// Create creates the volume name with labels and driver options and returns
// it. An empty name creates an anonymous volume with a random 64-hex name.
// Creating a volume that exists returns the existing one unchanged, as
// Docker does; different options are a conflict (labels are not compared).
func (s *Store) Create(name string, labels, opts map[string]string) (*Volume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, _, err := s.createLocked(name, labels, opts, "", "")
	if err != nil {
		return nil, err
	}
	return v.clone(), nil
}

// createLocked creates or returns the volume; created tells which.
func (s *Store) createLocked(name string, labels, opts map[string]string, owner, target string) (v *Volume, created bool, err error) {
	anon := name == ""
	if anon {
		name = newAnonymousName()
	} else if err := ValidateName(name); err != nil {
		return nil, false, fmt.Errorf("create %s: %w", name, err)
	}
	if err := validateOptions(opts); err != nil {
		return nil, false, fmt.Errorf("create %s: %w", name, err)
	}
	if v, ok := s.vols[name]; ok {
		if !maps.Equal(v.Options, opts) && len(v.Options)+len(opts) > 0 {
			return nil, false, fmt.Errorf("create %s: volume exists with different options: %w", name, errdefs.ErrConflict)
		}
		return v, false, nil
	}
	v = &Volume{
		Name: name, Driver: DriverLocal, Mountpoint: s.mountpoint(name),
		CreatedAt: time.Now().UTC().Truncate(time.Second),
		Labels:    maps.Clone(labels), Options: maps.Clone(opts), Scope: "local",
		Anonymous: anon, Owner: owner, Target: target, UsedBy: []string{},
	}
	dir := filepath.Join(s.root, name)
	if err := os.Mkdir(dir, 0o701); err != nil {
		if errors.Is(err, fs.ErrExist) {
			// A directory without (readable) metadata: leave it for the
			// operator rather than adopt or delete it.
			return nil, false, fmt.Errorf("create %s: %s exists but is not a volume berth knows: %w", name, dir, errdefs.ErrConflict)
		}
		return nil, false, fmt.Errorf("create %s: %w", name, err)
	}
	if err := os.Mkdir(v.Mountpoint, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, false, fmt.Errorf("create %s: %w", name, err)
	}
	if err := s.saveLocked(v); err != nil {
		os.RemoveAll(dir)
		return nil, false, fmt.Errorf("create %s: %w", name, err)
	}
	s.vols[name] = v
	return v, true, nil
}

// saveLocked writes v's metadata atomically (temp file, fsync, rename,
// fsync of the directory).
func (s *Store) saveLocked(v *Volume) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Join(s.root, v.Name)
	tmp, err := os.CreateTemp(dir, metaFile+".tmp*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, metaFile))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// update applies fn to a copy of the stored volume and persists the result;
// on a failed write nothing changes.
func (s *Store) updateLocked(v *Volume, fn func(*Volume)) error {
	c := v.clone()
	fn(c)
	if err := s.saveLocked(c); err != nil {
		return fmt.Errorf("volume %s: saving metadata: %w", v.Name, err)
	}
	*v = *c
	return nil
}

// Get returns the volume name.
func (s *Store) Get(name string) (*Volume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vols[name]
	if !ok {
		return nil, fmt.Errorf("get %s: no such volume: %w", name, errdefs.ErrNotFound)
	}
	return v.clone(), nil
}

// ListFilterKeys are the filters List accepts.
var ListFilterKeys = []string{"name", "label", "dangling", "driver"}

// List returns the volumes matching filters, sorted by name. Filters are
// Docker's: "name" (substring of the name), "label" ("key" or "key=value"),
// "dangling" ("true"/"1": used by no container; "false"/"0": used),
// "driver". Values of one key are ORed, keys are ANDed.
func (s *Store) List(filters map[string][]string) ([]*Volume, error) {
	m, err := compileFilters(filters, ListFilterKeys)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Volume
	for _, v := range s.vols {
		if m(v) {
			out = append(out, v.clone())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func compileFilters(filters map[string][]string, allowed []string) (func(*Volume) bool, error) {
	var preds []func(*Volume) bool
	for k, vals := range filters {
		if !slices.Contains(allowed, k) {
			return nil, fmt.Errorf("invalid filter '%s' (supported: %s): %w", k, strings.Join(allowed, ", "), errdefs.ErrInvalidArgument)
		}
		if len(vals) == 0 {
			continue
		}
		switch k {
		case "name":
			preds = append(preds, func(v *Volume) bool {
				return slices.ContainsFunc(vals, func(s string) bool { return strings.Contains(v.Name, s) })
			})
		case "driver":
			preds = append(preds, func(v *Volume) bool { return slices.Contains(vals, v.Driver) })
		case "label":
			preds = append(preds, func(v *Volume) bool {
				return slices.ContainsFunc(vals, func(s string) bool {
					key, val, hasVal := strings.Cut(s, "=")
					got, ok := v.Labels[key]
					return ok && (!hasVal || got == val)
				})
			})
		case "dangling":
			var want []bool
			for _, s := range vals {
				switch strings.ToLower(s) {
				case "true", "1":
					want = append(want, true)
				case "false", "0":
					want = append(want, false)
				default:
					return nil, fmt.Errorf("invalid filter 'dangling=%s': want true or false: %w", s, errdefs.ErrInvalidArgument)
				}
			}
			preds = append(preds, func(v *Volume) bool { return slices.Contains(want, len(v.UsedBy) == 0) })
		}
	}
	return func(v *Volume) bool {
		for _, p := range preds {
			if !p(v) {
				return false
			}
		}
		return true
	}, nil
}

// Remove removes the volume name and its content. A volume used by any
// container is refused with ErrConflict naming the containers; force does
// not override that (as in Docker), it only makes a missing volume no error.
func (s *Store) Remove(name string, force bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vols[name]
	if !ok {
		if force {
			return nil
		}
		return fmt.Errorf("remove %s: no such volume: %w", name, errdefs.ErrNotFound)
	}
	return s.removeLocked(v)
}

func (s *Store) removeLocked(v *Volume) error {
	if len(v.UsedBy) > 0 {
		return fmt.Errorf("remove %s: volume is in use - [%s]: %w", v.Name, strings.Join(v.UsedBy, ", "), errdefs.ErrConflict)
	}
	dir := filepath.Join(s.root, v.Name)
	// Drop the metadata first: a crash half-way through leaves a directory
	// New skips, never a volume whose content is half gone.
	if err := os.Remove(filepath.Join(dir, metaFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", v.Name, err)
	}
	delete(s.vols, v.Name)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: content left in %s: %w", v.Name, dir, err)
	}
	return nil
}

// PruneFilterKeys are the filters Prune accepts.
var PruneFilterKeys = []string{"label", "label!"}

// PruneReport is what Prune removed.
type PruneReport struct {
	Removed        []string
	SpaceReclaimed int64
}

// Prune removes the volumes no container uses: only anonymous ones unless
// all is set (Docker 23+'s `volume prune` and `volume prune -a`). filters
// may hold "label" (key or key=value the volume must have) and "label!"
// (Docker's label!=…: the volume must not have it). Errors removing one
// volume do not stop the others; they are joined in the returned error.
func (s *Store) Prune(all bool, filters map[string][]string) (PruneReport, error) {
	var rep PruneReport
	pos := map[string][]string{"label": filters["label"]}
	for k := range filters {
		if !slices.Contains(PruneFilterKeys, k) {
			return rep, fmt.Errorf("invalid filter '%s' (supported: %s): %w", k, strings.Join(PruneFilterKeys, ", "), errdefs.ErrInvalidArgument)
		}
	}
	match, _ := compileFilters(pos, []string{"label"})
	neg, _ := compileFilters(map[string][]string{"label": filters["label!"]}, []string{"label"})
	s.mu.Lock()
	defer s.mu.Unlock()
	names := slices.Sorted(maps.Keys(s.vols))
	var errs []error
	for _, n := range names {
		v := s.vols[n]
		if len(v.UsedBy) > 0 || (!all && !v.Anonymous) || !match(v) {
			continue
		}
		if len(filters["label!"]) > 0 && neg(v) {
			continue
		}
		size, _ := dirSize(v.Mountpoint)
		if err := s.removeLocked(v); err != nil {
			errs = append(errs, err)
			continue
		}
		rep.Removed = append(rep.Removed, n)
		rep.SpaceReclaimed += size
	}
	return rep, errors.Join(errs...)
}

// Size returns the bytes used by the volume's content (for `system df` and
// inspect's UsageData).
func (s *Store) Size(name string) (int64, error) {
	v, err := s.Get(name)
	if err != nil {
		return 0, err
	}
	return dirSize(v.Mountpoint)
}

func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n, err
}

func validContainerID(id string) error {
	if id == "" || strings.ContainsAny(id, "/\x00") {
		return fmt.Errorf("container ID %q: %w: want a non-empty ID", id, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Acquire records that container containerID uses the volume. It is
// idempotent: a container holds at most one reference to a volume.
func (s *Store) Acquire(name, containerID string) error {
	if err := validContainerID(containerID); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vols[name]
	if !ok {
		return fmt.Errorf("volume %s: %w", name, errdefs.ErrNotFound)
	}
	return s.acquireLocked(v, containerID)
}

func (s *Store) acquireLocked(v *Volume, id string) error {
	if slices.Contains(v.UsedBy, id) {
		return nil
	}
	return s.updateLocked(v, func(c *Volume) {
		c.UsedBy = append(c.UsedBy, id)
		sort.Strings(c.UsedBy)
	})
}

// Release drops containerID's reference to the volume. Releasing a
// reference that is not held, or a volume that is gone, is no error.
func (s *Store) Release(name, containerID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vols[name]
	if !ok {
		return nil
	}
	return s.releaseLocked(v, containerID)
}

func (s *Store) releaseLocked(v *Volume, id string) error {
	if !slices.Contains(v.UsedBy, id) && !slices.Contains(v.Copied, id) {
		return nil
	}
	return s.updateLocked(v, func(c *Volume) {
		c.UsedBy = slices.DeleteFunc(c.UsedBy, func(s string) bool { return s == id })
		c.Copied = slices.DeleteFunc(c.Copied, func(s string) bool { return s == id })
	})
}

// ReleaseAll drops every reference containerID holds (at container
// removal). It returns the names of the volumes it released.
func (s *Store) ReleaseAll(containerID string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	var errs []error
	for _, n := range slices.Sorted(maps.Keys(s.vols)) {
		v := s.vols[n]
		if !slices.Contains(v.UsedBy, containerID) && !slices.Contains(v.Copied, containerID) {
			continue
		}
		if err := s.releaseLocked(v, containerID); err != nil {
			errs = append(errs, err)
			continue
		}
		names = append(names, n)
	}
	return names, errors.Join(errs...)
}

// UsedBy returns the names of the volumes containerID references, sorted.
func (s *Store) UsedBy(containerID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for n, v := range s.vols {
		if slices.Contains(v.UsedBy, containerID) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// RemoveAnonymous removes the anonymous volumes container containerID got
// (for its image's VOLUMEs and "-v /path" specs): `rm -v`. It first drops
// the container's references to them; a volume another container also uses
// (through --volumes-from or by name) is kept. It returns the names removed.
func (s *Store) RemoveAnonymous(containerID string) ([]string, error) {
	if err := validContainerID(containerID); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var removed []string
	var errs []error
	for _, n := range slices.Sorted(maps.Keys(s.vols)) {
		v := s.vols[n]
		if !v.Anonymous || v.Owner != containerID {
			continue
		}
		if err := s.releaseLocked(v, containerID); err != nil {
			errs = append(errs, err)
			continue
		}
		if len(v.UsedBy) > 0 {
			continue
		}
		if err := s.removeLocked(v); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, n)
	}
	return removed, errors.Join(errs...)
}

// anonymousFor returns the anonymous volume containerID owns at target.
func (s *Store) anonymousForLocked(containerID, target string) *Volume {
	for _, v := range s.vols {
		if v.Anonymous && v.Owner == containerID && v.Target == target {
			return v
		}
	}
	return nil
}

func (s *Store) copyLock(name string) *sync.Mutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.copyMu[name]
	if !ok {
		m = &sync.Mutex{}
		s.copyMu[name] = m
	}
	return m
}
