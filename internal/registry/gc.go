package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// GCOptions configure a garbage collection.
type GCOptions struct {
	// DryRun reports what would be removed and removes nothing.
	DryRun bool
	// DeleteUntagged also removes manifests no tag reaches: not tagged,
	// not in a kept index, not a referrer of a kept manifest.
	DeleteUntagged bool
	// UploadMaxAge is how old an unfinished upload must be to be removed;
	// default 24h.
	UploadMaxAge time.Duration
	// Out receives one line per removed item; nil discards.
	Out io.Writer
}

// GCStats count what a garbage collection removed (or would remove).
type GCStats struct {
	Manifests  int   // manifest revisions unlinked (with DeleteUntagged)
	Blobs      int   // blobs removed from the store
	BlobBytes  int64 // their total size
	Uploads    int   // stale upload sessions removed
	Repository int   // repositories scanned
}

// GC collects garbage in the registry at root by mark and sweep: it marks
// every blob a manifest of any repository references (the manifest itself,
// its config and layers), then removes every other blob from the store and
// the repository links to it. The registry must not be serving root (GC
// takes the root's lock and fails if a registry holds it).
func GC(root string, opts GCOptions) (GCStats, error) {
	var st GCStats
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.UploadMaxAge <= 0 {
		opts.UploadMaxAge = 24 * time.Hour
	}
	if _, err := os.Stat(filepath.Join(root, "blobs")); err != nil {
		return st, fmt.Errorf("%s is not a registry root (no blobs directory): %w", root, err)
	}
	lock, err := lockRoot(root, true)
	if err != nil {
		return st, err
	}
	defer unlockRoot(lock)
	s := &store{root: root}
	verb := "removed"
	if opts.DryRun {
		verb = "would remove"
	}

	repos, err := s.repositories()
	if err != nil {
		return st, err
	}
	st.Repository = len(repos)
	marked := map[digest.Digest]bool{}
	for _, name := range repos {
		revs, err := listDigests(filepath.Join(s.repoDir(name), "_manifests", "revisions"))
		if err != nil {
			return st, err
		}
		parsed := map[digest.Digest]*manifest{}
		for _, d := range revs {
			b, err := os.ReadFile(s.blobPath(d))
			if err != nil {
				fmt.Fprintf(opts.Out, "warning: manifest %s@%s has no content (%v)\n", name, d, err)
				continue
			}
			var m manifest
			if err := json.Unmarshal(b, &m); err != nil {
				fmt.Fprintf(opts.Out, "warning: manifest %s@%s is not valid JSON (%v); keeping what it is\n", name, d, err)
			}
			parsed[d] = &m
		}
		keep := map[digest.Digest]bool{}
		if opts.DeleteUntagged {
			keep = reachable(s, name, parsed)
		} else {
			for d := range parsed {
				keep[d] = true
			}
		}
		for _, d := range revs {
			m, ok := parsed[d]
			if !keep[d] && ok {
				fmt.Fprintf(opts.Out, "%s manifest %s@%s (untagged)\n", verb, name, d)
				st.Manifests++
				if !opts.DryRun {
					if m.Subject != nil {
						if sd, err := digest.Parse(string(m.Subject.Digest)); err == nil {
							removeFile(filepath.Join(s.referrersDir(name, sd), referrerFile(d)))
						}
					}
					if err := removeFile(s.revisionLink(name, d)); err != nil {
						return st, err
					}
				}
				continue
			}
			marked[d] = true
			if !ok {
				continue
			}
			if m.Config != nil {
				marked[m.Config.Digest] = true
			}
			for _, l := range m.Layers {
				marked[l.Digest] = true
			}
			for _, c := range m.Manifests {
				marked[c.Digest] = true
			}
		}
	}

	// Sweep the store.
	swept := map[digest.Digest]bool{}
	blobs := filepath.Join(root, "blobs")
	err = filepath.WalkDir(blobs, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(blobs, p)
		parts := strings.Split(filepath.ToSlash(rel), "/")
		if len(parts) != 3 || strings.HasPrefix(parts[2], ".") {
			return nil
		}
		d, err := digest.Parse(parts[0] + ":" + parts[2])
		if err != nil || marked[d] {
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(opts.Out, "%s blob %s (%d bytes)\n", verb, d, fi.Size())
		st.Blobs++
		st.BlobBytes += fi.Size()
		swept[d] = true
		if opts.DryRun {
			return nil
		}
		return removeFile(p)
	})
	if err != nil {
		return st, err
	}
	if !opts.DryRun {
		removeEmptyDirs(blobs)
		for _, name := range repos {
			links, err := listDigests(filepath.Join(s.repoDir(name), "_layers"))
			if err != nil {
				return st, err
			}
			for _, d := range links {
				if swept[d] || !exists(s.blobPath(d)) {
					if err := removeFile(s.layerLink(name, d)); err != nil {
						return st, err
					}
				}
			}
		}
	}

	// Unfinished uploads nobody touched for a while.
	ents, err := os.ReadDir(s.uploadsDir())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return st, err
	}
	for _, e := range ents {
		fi, err := os.Stat(filepath.Join(s.uploadDir(e.Name()), "data"))
		if err == nil && time.Since(fi.ModTime()) < opts.UploadMaxAge {
			continue
		}
		fmt.Fprintf(opts.Out, "%s upload %s\n", verb, e.Name())
		st.Uploads++
		if !opts.DryRun {
			if err := os.RemoveAll(s.uploadDir(e.Name())); err != nil {
				return st, err
			}
		}
	}
	return st, nil
}

// reachable returns the manifests of a repository that its tags reach:
// tagged manifests, the manifests their indexes list, and the referrers
// (signatures, SBOMs) of any of these, transitively.
func reachable(s *store, name string, parsed map[digest.Digest]*manifest) map[digest.Digest]bool {
	keep := map[digest.Digest]bool{}
	var queue []digest.Digest
	add := func(d digest.Digest) {
		if _, ok := parsed[d]; ok && !keep[d] {
			keep[d] = true
			queue = append(queue, d)
		}
	}
	tags, _ := s.tags(name)
	for _, t := range tags {
		if d, err := s.readTag(name, t); err == nil {
			add(d)
		}
	}
	// referrers by subject, from the manifests themselves
	bySubject := map[digest.Digest][]digest.Digest{}
	for d, m := range parsed {
		if m.Subject != nil {
			bySubject[m.Subject.Digest] = append(bySubject[m.Subject.Digest], d)
		}
	}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		for _, c := range parsed[d].Manifests {
			add(c.Digest)
		}
		refs := bySubject[d]
		sort.Slice(refs, func(i, j int) bool { return refs[i] < refs[j] })
		for _, r := range refs {
			add(r)
		}
	}
	return keep
}

// removeEmptyDirs removes the empty <alg>/<prefix> directories under dir.
func removeEmptyDirs(dir string) {
	algs, _ := os.ReadDir(dir)
	for _, a := range algs {
		prefixes, _ := os.ReadDir(filepath.Join(dir, a.Name()))
		for _, p := range prefixes {
			os.Remove(filepath.Join(dir, a.Name(), p.Name())) // fails unless empty
		}
	}
}
