// Package container owns the engine's container records: their persisted
// configuration and state, the name index, and the on-disk layout of each
// container's directory. It knows nothing of runtimes or shims; the daemon
// drives the lifecycle and uses this package to remember it.
package container

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/network"
	"github.com/berth/berth/internal/engine/volume"
	"github.com/berth/berth/internal/errdefs"
)

// Container is one container's record. Fields are guarded by Mu; the store
// itself never mutates a container after Add.
type Container struct {
	Mu sync.Mutex `json:"-"`

	ID         string         `json:"id"`
	Name       string         `json:"name"` // without the leading "/"
	Created    time.Time      `json:"created"`
	ImageRef   string         `json:"imageRef"` // as the user gave it
	ImageID    string         `json:"imageId"`
	Config     api.Config     `json:"config"` // merged with the image's config
	HostConfig api.HostConfig `json:"hostConfig"`
	Path       string         `json:"path"`
	Args       []string       `json:"args"`
	State      api.State      `json:"state"`
	// RestartCount counts restarts done by the restart policy.
	RestartCount int `json:"restartCount"`
	// ManuallyStopped records that the user stopped the container, which
	// suspends the unless-stopped and always policies until the next start.
	ManuallyStopped bool   `json:"manuallyStopped"`
	Runtime         string `json:"runtime"`
	// CgroupsPath is the cgroup path given to the OCI runtime.
	CgroupsPath string `json:"cgroupsPath"`
	// Mounts are the container's volumes, binds and tmpfs mounts as
	// parsed at create; MountPoints what the last start mounted.
	Mounts      []volume.MountSpec `json:"mounts,omitempty"`
	MountPoints []api.MountPoint   `json:"mountPoints,omitempty"`
	// Networks are the networks the container joins at start, the first
	// one holding the default route; Ports are the ports it publishes.
	Networks []NetworkAttachment   `json:"networks,omitempty"`
	Ports    []network.PortMapping `json:"ports,omitempty"`

	dir string // <root>/containers/<id>
	run string // <exec-root>/<short id>: bundle, shim socket, exit status
}

// NetworkAttachment is a network a container joins, with its options.
type NetworkAttachment struct {
	Name    string   `json:"name"`
	IP      string   `json:"ip,omitempty"`
	Aliases []string `json:"aliases,omitempty"`
}

// ShortID is the first 12 hex digits of the ID, as Docker shows it.
func (c *Container) ShortID() string { return c.ID[:12] }

// Dir is the container's persistent directory (record, logs).
func (c *Container) Dir() string { return c.dir }

// BundleDir is the OCI bundle directory, which also holds the shim's socket
// and exit status. It lives under the daemon's exec root with a short name,
// because unix socket paths are limited to 108 bytes.
func (c *Container) BundleDir() string { return c.run }

// LogPath is the container's log file.
func (c *Container) LogPath() string { return filepath.Join(c.dir, "container.log") }

// Save persists the record atomically. The caller holds Mu.
func (c *Container) Save() error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(c.dir, "container.json"), b)
}

// Store indexes the containers of one daemon by ID and name.
type Store struct {
	root, execRoot string

	mu     sync.RWMutex
	byID   map[string]*Container
	byName map[string]*Container
}

// NewStore opens the records under root/containers and returns the store.
// Records that cannot be read are reported in the returned warnings and
// skipped; nothing is deleted.
func NewStore(root, execRoot string) (*Store, []error, error) {
	s := &Store{root: filepath.Join(root, "containers"), execRoot: execRoot,
		byID: map[string]*Container{}, byName: map[string]*Container{}}
	for _, d := range []string{s.root, execRoot} {
		if err := os.MkdirAll(d, 0o710); err != nil {
			return nil, nil, err
		}
	}
	// What Discard moved aside and a stopping daemon did not delete.
	for _, d := range []string{s.root, execRoot} {
		if old, _ := filepath.Glob(filepath.Join(d, trashPrefix+"*")); len(old) > 0 {
			for _, o := range old {
				os.RemoveAll(o)
			}
		}
	}
	ents, err := os.ReadDir(s.root)
	if err != nil {
		return nil, nil, err
	}
	var warns []error
	for _, e := range ents {
		p := filepath.Join(s.root, e.Name(), "container.json")
		b, err := os.ReadFile(p)
		if err != nil {
			warns = append(warns, fmt.Errorf("container record %s: %w", p, err))
			continue
		}
		c := &Container{}
		if err := json.Unmarshal(b, c); err != nil || c.ID != e.Name() {
			warns = append(warns, fmt.Errorf("container record %s: unreadable (%v)", p, err))
			continue
		}
		s.attachDirs(c)
		s.byID[c.ID] = c
		s.byName[c.Name] = c
	}
	return s, warns, nil
}

func (s *Store) attachDirs(c *Container) {
	c.dir = filepath.Join(s.root, c.ID)
	c.run = filepath.Join(s.execRoot, c.ID[:12])
}

// NewID returns a fresh container ID whose 12-digit prefix is unique.
func (s *Store) NewID() string {
	for {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			panic(err)
		}
		id := hex.EncodeToString(b[:])
		s.mu.RLock()
		_, taken := s.byPrefixLocked(id[:12])
		s.mu.RUnlock()
		if !taken {
			return id
		}
	}
}

func (s *Store) byPrefixLocked(p string) (*Container, bool) {
	for id, c := range s.byID {
		if strings.HasPrefix(id, p) {
			return c, true
		}
	}
	return nil, false
}

// Add registers c, creating its directories, and persists it. A name
// already in use is an errdefs.ErrConflict naming the holder.
func (s *Store) Add(c *Container) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.byName[c.Name]; ok {
		return fmt.Errorf("Conflict. The container name \"/%s\" is already in use by container %q. You have to remove (or rename) that container to be able to reuse that name: %w", c.Name, o.ID, errdefs.ErrConflict)
	}
	s.attachDirs(c)
	if err := os.MkdirAll(c.dir, 0o710); err != nil {
		return err
	}
	if err := os.MkdirAll(c.run, 0o710); err != nil {
		return err
	}
	if err := c.Save(); err != nil {
		os.RemoveAll(c.dir)
		os.RemoveAll(c.run)
		return err
	}
	s.byID[c.ID] = c
	s.byName[c.Name] = c
	return nil
}

// Rename changes c's name, keeping names unique.
func (s *Store) Rename(c *Container, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.byName[name]; ok && o != c {
		return fmt.Errorf("Conflict. The container name \"/%s\" is already in use by container %q: %w", name, o.ID, errdefs.ErrConflict)
	}
	delete(s.byName, c.Name)
	c.Name = name
	s.byName[name] = c
	return nil
}

// Delete forgets c and removes its directories.
func (s *Store) Delete(c *Container) error {
	s.mu.Lock()
	delete(s.byID, c.ID)
	if s.byName[c.Name] == c {
		delete(s.byName, c.Name)
	}
	s.mu.Unlock()
	err1 := os.RemoveAll(c.dir)
	err2 := os.RemoveAll(c.run)
	if err1 != nil {
		return err1
	}
	return err2
}

// trashPrefix names the directories Discard moves aside.
const trashPrefix = ".removed-"

// Discard forgets c and moves its directories aside at once (a rename
// each); remove deletes them, which can take a while (a long log), so a
// caller may run it in the background. A directory moved aside that a
// stopping daemon did not delete goes at the next NewStore. Where a rename
// fails the directory is deleted here instead.
func (s *Store) Discard(c *Container) (remove func() error) {
	s.mu.Lock()
	delete(s.byID, c.ID)
	if s.byName[c.Name] == c {
		delete(s.byName, c.Name)
	}
	s.mu.Unlock()
	var aside []string
	var errs []error
	for _, d := range []string{c.dir, c.run} {
		t := filepath.Join(filepath.Dir(d), trashPrefix+filepath.Base(d))
		if err := os.Rename(d, t); err == nil {
			aside = append(aside, t)
		} else if !errors.Is(err, fs.ErrNotExist) {
			if err := os.RemoveAll(d); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return func() error {
		for _, t := range aside {
			if err := os.RemoveAll(t); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
}

// Get finds a container by full ID, name (with or without "/"), or unique
// ID prefix, as Docker does.
func (s *Store) Get(ref string) (*Container, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if ref == "" {
		return nil, fmt.Errorf("No such container: \"\" (give a name or an ID): %w", errdefs.ErrNotFound)
	}
	if c, ok := s.byID[ref]; ok {
		return c, nil
	}
	if c, ok := s.byName[strings.TrimPrefix(ref, "/")]; ok {
		return c, nil
	}
	var found *Container
	for id, c := range s.byID {
		if strings.HasPrefix(id, ref) {
			if found != nil {
				return nil, fmt.Errorf("multiple IDs found with provided prefix: %s: %w", ref, errdefs.ErrInvalidArgument)
			}
			found = c
		}
	}
	if found == nil {
		return nil, fmt.Errorf("No such container: %s: %w", ref, errdefs.ErrNotFound)
	}
	return found, nil
}

// List returns every container, newest first.
func (s *Store) List() []*Container {
	s.mu.RLock()
	out := make([]*Container, 0, len(s.byID))
	for _, c := range s.byID {
		out = append(out, c)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out
}

// NameTaken reports whether name is in use.
func (s *Store) NameTaken(name string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.byName[name]
	return ok
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	// No fsync: the rename makes the record atomic against a crash of the
	// daemon, and live state is rebuilt from the shims at start; paying a
	// disk flush on every state change of every container is not worth
	// surviving a power loss with the last second of state.
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
