package registry

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	digest "github.com/opencontainers/go-digest"
)

// store is the on-disk layout under the registry root:
//
//	blobs/<alg>/<hex[:2]>/<hex>                          content (layers, configs, manifests), shared by all repositories
//	repositories/<name>/_layers/<alg>/<hex>              the repository may serve blob <alg>:<hex> (empty file)
//	repositories/<name>/_manifests/revisions/<alg>/<hex> the repository holds manifest <alg>:<hex> (file: its media type)
//	repositories/<name>/_manifests/tags/<tag>            tag → digest (file: the digest)
//	repositories/<name>/_referrers/<alg>/<hex>/<alg>-<hex> manifests whose subject is <alg>:<hex> (file: descriptor JSON)
//	uploads/<uuid>/data, uploads/<uuid>/repo             blob upload sessions
//	.lock                                                shared by servers, exclusive for gc
//
// Repository path components never start with "_" (the name grammar starts
// each component with [a-z0-9]), so the "_" directories cannot collide with
// a nested repository. Temporary files start with "." and are skipped by
// every listing. Every write is a temporary file renamed into place.
type store struct {
	root string
}

func (s *store) blobPath(d digest.Digest) string {
	h := d.Encoded()
	return filepath.Join(s.root, "blobs", d.Algorithm().String(), h[:2], h)
}

func (s *store) repoDir(name string) string {
	return filepath.Join(s.root, "repositories", filepath.FromSlash(name))
}

func (s *store) layerLink(name string, d digest.Digest) string {
	return filepath.Join(s.repoDir(name), "_layers", d.Algorithm().String(), d.Encoded())
}

func (s *store) revisionLink(name string, d digest.Digest) string {
	return filepath.Join(s.repoDir(name), "_manifests", "revisions", d.Algorithm().String(), d.Encoded())
}

func (s *store) tagsDir(name string) string {
	return filepath.Join(s.repoDir(name), "_manifests", "tags")
}

func (s *store) tagPath(name, tag string) string { return filepath.Join(s.tagsDir(name), tag) }

func (s *store) referrersDir(name string, subject digest.Digest) string {
	return filepath.Join(s.repoDir(name), "_referrers", subject.Algorithm().String(), subject.Encoded())
}

func referrerFile(d digest.Digest) string { return d.Algorithm().String() + "-" + d.Encoded() }

func (s *store) uploadsDir() string          { return filepath.Join(s.root, "uploads") }
func (s *store) uploadDir(id string) string  { return filepath.Join(s.uploadsDir(), id) }
func (s *store) uploadData(id string) string { return filepath.Join(s.uploadDir(id), "data") }

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// repoExists reports whether anything was ever pushed to the repository.
func (s *store) repoExists(name string) bool {
	return exists(filepath.Join(s.repoDir(name), "_manifests")) || exists(filepath.Join(s.repoDir(name), "_layers"))
}

// blobSize returns the size of blob d if repository name may serve it.
func (s *store) blobSize(name string, d digest.Digest) (int64, bool) {
	if !exists(s.layerLink(name, d)) {
		return 0, false
	}
	fi, err := os.Stat(s.blobPath(d))
	if err != nil {
		return 0, false
	}
	return fi.Size(), true
}

// manifestMediaType returns the media type of manifest d in repository
// name, and whether the repository holds it.
func (s *store) manifestMediaType(name string, d digest.Digest) (string, bool) {
	b, err := os.ReadFile(s.revisionLink(name, d))
	if err != nil || !exists(s.blobPath(d)) {
		return "", false
	}
	return string(b), true
}

// readTag returns the digest tag points to.
func (s *store) readTag(name, tag string) (digest.Digest, error) {
	b, err := os.ReadFile(s.tagPath(name, tag))
	if err != nil {
		return "", err
	}
	d, err := digest.Parse(strings.TrimSpace(string(b)))
	if err != nil {
		return "", fmt.Errorf("tag file %s is corrupt (%v); delete the tag and push it again", s.tagPath(name, tag), err)
	}
	return d, nil
}

// tags lists the tags of repository name, sorted.
func (s *store) tags(name string) ([]string, error) {
	ents, err := os.ReadDir(s.tagsDir(name))
	if errors.Is(err, fs.ErrNotExist) {
		return []string{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ents))
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") && e.Type().IsRegular() {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// repositories lists every repository name, sorted.
func (s *store) repositories() ([]string, error) {
	base := filepath.Join(s.root, "repositories")
	var out []string
	err := filepath.WalkDir(base, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == base {
				return filepath.SkipAll
			}
			return err
		}
		if !e.IsDir() || p == base {
			return nil
		}
		if strings.HasPrefix(e.Name(), "_") {
			if e.Name() == "_manifests" || e.Name() == "_layers" {
				rel, _ := filepath.Rel(base, filepath.Dir(p))
				name := filepath.ToSlash(rel)
				if len(out) == 0 || out[len(out)-1] != name {
					out = append(out, name)
				}
			}
			return filepath.SkipDir
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// listDigests lists the digests stored as <dir>/<alg>/<hex> files.
func listDigests(dir string) ([]digest.Digest, error) {
	algs, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []digest.Digest
	for _, a := range algs {
		if !a.IsDir() {
			continue
		}
		ents, err := os.ReadDir(filepath.Join(dir, a.Name()))
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if d, err := digest.Parse(a.Name() + ":" + e.Name()); err == nil && e.Type().IsRegular() {
				out = append(out, d)
			}
		}
	}
	return out, nil
}

// writeFileAtomic writes data to path through a synced temporary file in
// the same directory and a rename, then syncs the directory, so readers
// and crashes see the old content or the new, never a part.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	return syncDir(dir)
}

// commitFile moves a complete, synced file into place at path, unless
// content-addressed content is already there (it is the same bytes).
func commitFile(tmp, path string) error {
	if exists(path) {
		return os.Remove(tmp)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

// removeFile removes path; a missing file is not an error.
func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
