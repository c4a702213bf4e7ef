// Package content owns berth's content-addressed blob store: immutable
// blobs kept under <root>/blobs/sha256/<hex>, written through a Writer that
// hashes while it writes and only commits a blob whose digest was verified.
package content

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/berth/berth/internal/errdefs"
	"github.com/opencontainers/go-digest"
)

// Info describes a stored blob.
type Info struct {
	Digest    digest.Digest
	Size      int64
	CreatedAt time.Time
}

// ReaderAt reads a stored blob.
type ReaderAt interface {
	io.ReaderAt
	io.Reader
	io.Closer
	Size() int64
}

// Store is a content-addressed blob store. It is safe for concurrent use:
// blobs are immutable and appear atomically (rename) once verified.
type Store struct {
	root string
}

// New opens (creating if needed) a store under root.
func New(root string) (*Store, error) {
	for _, d := range []string{filepath.Join(root, "blobs", "sha256"), filepath.Join(root, "ingest")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("content store %s: %w", root, err)
		}
	}
	// Ingests left by a crash are garbage.
	if ents, err := os.ReadDir(filepath.Join(root, "ingest")); err == nil {
		for _, e := range ents {
			os.Remove(filepath.Join(root, "ingest", e.Name()))
		}
	}
	return &Store{root: root}, nil
}

func validate(d digest.Digest) error {
	if err := d.Validate(); err != nil || d.Algorithm() != digest.SHA256 {
		return fmt.Errorf("digest %q: expected sha256:<64 hex digits>: %w", d, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Path is the file holding blob d (which may not exist).
func (s *Store) Path(d digest.Digest) string {
	return filepath.Join(s.root, "blobs", d.Algorithm().String(), d.Encoded())
}

type blob struct {
	*os.File
	size int64
}

func (b blob) Size() int64 { return b.size }

// Open opens blob d for reading.
func (s *Store) Open(d digest.Digest) (ReaderAt, error) {
	if err := validate(d); err != nil {
		return nil, err
	}
	f, err := os.Open(s.Path(d))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("content %s: %w", d, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("content %s: %w", d, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return blob{f, st.Size()}, nil
}

// ReadAll returns the contents of blob d.
func (s *Store) ReadAll(d digest.Digest) ([]byte, error) {
	r, err := s.Open(d)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// Info describes blob d.
func (s *Store) Info(d digest.Digest) (Info, error) {
	if err := validate(d); err != nil {
		return Info{}, err
	}
	st, err := os.Stat(s.Path(d))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Info{}, fmt.Errorf("content %s: %w", d, errdefs.ErrNotFound)
		}
		return Info{}, fmt.Errorf("content %s: %w", d, err)
	}
	return Info{Digest: d, Size: st.Size(), CreatedAt: st.ModTime()}, nil
}

// Exists reports whether blob d is stored.
func (s *Store) Exists(d digest.Digest) bool {
	_, err := s.Info(d)
	return err == nil
}

// Delete removes blob d.
func (s *Store) Delete(d digest.Digest) error {
	if err := validate(d); err != nil {
		return err
	}
	if err := os.Remove(s.Path(d)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("content %s: %w", d, errdefs.ErrNotFound)
		}
		return fmt.Errorf("content %s: %w", d, err)
	}
	return nil
}

// Walk calls fn for every stored blob, in lexical order of digest.
func (s *Store) Walk(fn func(Info) error) error {
	dir := filepath.Join(s.root, "blobs", "sha256")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if d.Validate() != nil || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // deleted meanwhile
		}
		if err := fn(Info{Digest: d, Size: info.Size(), CreatedAt: info.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}

// Writer hashes what is written to it into a temporary file; Commit
// verifies the digest and moves the file into the store.
type Writer struct {
	s        *Store
	f        *os.File
	digester digest.Digester
	size     int64
	flushed  int64 // bytes whose writeback was started
	done     bool
}

// writebackEvery is how many written bytes a Writer lets pile up before it
// starts their writeback: a big blob then reaches the disk while it is
// still being written, and Commit's fsync waits for the last bit only.
const writebackEvery = 8 << 20

// Writer starts a new blob.
func (s *Store) Writer() (*Writer, error) {
	f, err := os.CreateTemp(filepath.Join(s.root, "ingest"), "blob-")
	if err != nil {
		return nil, fmt.Errorf("content store: %w", err)
	}
	return &Writer{s: s, f: f, digester: digest.SHA256.Digester()}, nil
}

func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.digester.Hash().Write(p[:n])
	w.size += int64(n)
	if w.size-w.flushed >= writebackEvery {
		startWriteback(w.f, w.flushed, w.size-w.flushed)
		w.flushed = w.size
	}
	return n, err
}

// Digest is the digest of what was written so far.
func (w *Writer) Digest() digest.Digest { return w.digester.Digest() }

// Size is the number of bytes written so far.
func (w *Writer) Size() int64 { return w.size }

// Commit verifies that what was written has digest expected (if expected
// is not empty) and size (if size >= 0), syncs it and moves it into the
// store. On a mismatch nothing is stored and the error says what was wrong.
// Committing a blob that is already stored is not an error.
func (w *Writer) Commit(expected digest.Digest, size int64) (digest.Digest, error) {
	if w.done {
		return "", fmt.Errorf("content writer: already committed or closed: %w", errdefs.ErrConflict)
	}
	defer w.Close()
	got := w.Digest()
	if expected != "" && got != expected {
		return "", fmt.Errorf("content digest mismatch: got %s, want %s: %w", got, expected, errdefs.ErrInvalidArgument)
	}
	if size >= 0 && w.size != size {
		return "", fmt.Errorf("content %s: size mismatch: got %d bytes, want %d: %w", got, w.size, size, errdefs.ErrInvalidArgument)
	}
	if err := w.f.Sync(); err != nil {
		return "", fmt.Errorf("content %s: %w", got, err)
	}
	if err := w.f.Chmod(0o444); err != nil {
		return "", err
	}
	if err := os.Rename(w.f.Name(), w.s.Path(got)); err != nil {
		return "", fmt.Errorf("content %s: %w", got, err)
	}
	if d, err := os.Open(filepath.Dir(w.s.Path(got))); err == nil {
		d.Sync()
		d.Close()
	}
	return got, nil
}

// Close discards an uncommitted blob. It is safe to call after Commit.
func (w *Writer) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	os.Remove(w.f.Name())
	return nil
}

// Put stores what r yields as one blob, verified against expected (if not
// empty). It returns the blob's digest and size.
func (s *Store) Put(r io.Reader, expected digest.Digest) (Info, error) {
	if expected != "" {
		if err := validate(expected); err != nil {
			return Info{}, err
		}
	}
	w, err := s.Writer()
	if err != nil {
		return Info{}, err
	}
	defer w.Close()
	if _, err := io.Copy(w, r); err != nil {
		return Info{}, fmt.Errorf("content: %w", err)
	}
	d, err := w.Commit(expected, -1)
	if err != nil {
		return Info{}, err
	}
	return Info{Digest: d, Size: w.size, CreatedAt: time.Now()}, nil
}
