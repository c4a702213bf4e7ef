package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/internal/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// bigLayer is a layer tar of several MiB (many pipeline chunks): files of
// random bytes and of text, and a directory, gzip-compressed.
type bigLayer struct {
	tar, gz []byte
	files   map[string][]byte
}

func (l bigLayer) src() LayerSource {
	diffID := digest.FromBytes(l.tar)
	return LayerSource{
		Compressed: Compressed{Digest: digest.FromBytes(l.gz), Size: int64(len(l.gz)), MediaType: MediaTypeDockerLayer},
		DiffID:     diffID, ChainID: diffID,
	}
}

// makeBigLayer writes the files (in order), plus an entry named hostile
// after the first half of them when hostile is not "".
func makeBigLayer(t *testing.T, hostile string) bigLayer {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 9))
	l := bigLayer{files: map[string][]byte{}}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	if err := tw.WriteHeader(&tar.Header{Name: "data/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		if i == 4 && hostile != "" {
			if err := tw.WriteHeader(&tar.Header{Name: hostile, Typeflag: tar.TypeReg, Mode: 0o644}); err != nil {
				t.Fatal(err)
			}
		}
		body := make([]byte, 700<<10+i*1000)
		if i%2 == 0 {
			for j := range body {
				body[j] = byte(rng.Uint32())
			}
		} else {
			line := fmt.Sprintf("file %d: the quick brown fox jumps over the lazy dog\n", i)
			for j := 0; j < len(body); j += len(line) {
				copy(body[j:], line)
			}
		}
		name := fmt.Sprintf("data/f%d", i)
		l.files[name] = body
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	l.tar = tb.Bytes()
	var gb bytes.Buffer
	zw := gzip.NewWriter(&gb)
	zw.Write(l.tar)
	zw.Close()
	l.gz = gb.Bytes()
	if len(l.tar) < 8*chunkSize {
		t.Fatalf("test layer of %d bytes spans too few chunks", len(l.tar))
	}
	return l
}

// trickle yields at most n bytes per Read, so that the pipeline sees
// partial reads everywhere.
type trickle struct {
	r io.Reader
	n int
}

func (t *trickle) Read(p []byte) (int, error) {
	if len(p) > t.n {
		p = p[:t.n]
	}
	return t.r.Read(p)
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// failAfter yields n bytes of r, then err.
type failAfter struct {
	r   io.Reader
	n   int
	err error
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

// noGoroutinesLeft fails when more goroutines run than before (the
// pipeline's stages must all have ended when IngestLayer returns).
func noGoroutinesLeft(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines running, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// storesNothing fails when anything of src is in s: the layer, the kept
// blob, a half-unpacked directory or an ingest file.
func storesNothing(t *testing.T, s *Store, src LayerSource) {
	t.Helper()
	if s.HasLayer(src.DiffID, src.ChainID) || s.snaps.HasLayer(src.ChainID) {
		t.Error("the layer is stored")
	}
	for _, d := range []digest.Digest{src.Digest, src.DiffID} {
		if s.content.Exists(d) {
			t.Errorf("blob %s is stored", d)
		}
	}
	for _, dir := range []string{filepath.Join(s.root, "snapshots", "layers"), filepath.Join(s.root, "content", "ingest")} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			t.Errorf("%s left in %s", e.Name(), dir)
		}
	}
}

func TestIngestBigLayer(t *testing.T) {
	needRoot(t)
	l := makeBigLayer(t, "")
	for _, tc := range []struct {
		name string
		src  func() LayerSource
		blob []byte
	}{
		{"gzip", l.src, l.gz},
		{"uncompressed", func() LayerSource {
			src := l.src()
			src.Compressed = Compressed{Digest: src.DiffID, Size: int64(len(l.tar)), MediaType: ocispec.MediaTypeImageLayer}
			return src
		}, l.tar},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			src := tc.src()
			before := runtime.NumGoroutine()
			if err := s.IngestLayer(&trickle{bytes.NewReader(tc.blob), 3000}, src); err != nil {
				t.Fatal(err)
			}
			noGoroutinesLeft(t, before)
			if !s.HasLayer(src.DiffID, src.ChainID) {
				t.Fatal("the layer is not stored")
			}
			for name, want := range l.files {
				got, err := os.ReadFile(filepath.Join(s.snaps.LayerDir(src.ChainID), name))
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s: %d bytes (%v), want %d", name, len(got), err, len(want))
				}
			}
			r, size, err := s.OpenLayer(src.DiffID)
			if err != nil {
				t.Fatal(err)
			}
			kept, err := io.ReadAll(r)
			r.Close()
			if err != nil || size != int64(len(l.tar)) || !bytes.Equal(kept, l.tar) {
				t.Errorf("kept tar: %d bytes (size %d, %v), want %d", len(kept), size, err, len(l.tar))
			}
			// Again: everything is here, nothing changes.
			if err := s.IngestLayer(bytes.NewReader(tc.blob), src); err != nil {
				t.Fatal(err)
			}
			noGoroutinesLeft(t, before)
		})
	}
}

func TestIngestBigLayerFailuresStoreNothing(t *testing.T) {
	needRoot(t)
	l := makeBigLayer(t, "")
	hostile := makeBigLayer(t, "../escape")
	broken := errors.New("connection reset by the test")
	for _, tc := range []struct {
		name  string
		blob  func() io.Reader
		src   func() LayerSource
		want  string
		is    error
		whole bool // the blob is read to its end (to tell a bad blob by its digest)
	}{
		{"flipped byte in the middle", func() io.Reader {
			b := append([]byte(nil), l.gz...)
			b[len(b)/2] ^= 0xff
			return bytes.NewReader(b)
		}, l.src, "digest mismatch", errdefs.ErrInvalidArgument, true},
		{"flipped byte near the end", func() io.Reader {
			b := append([]byte(nil), l.gz...)
			b[len(b)-20] ^= 0xff
			return bytes.NewReader(b)
		}, l.src, "digest mismatch", errdefs.ErrInvalidArgument, true},
		{"truncated", func() io.Reader { return bytes.NewReader(l.gz[:len(l.gz)-100]) }, l.src, "manifest says", errdefs.ErrInvalidArgument, true},
		{"longer than the manifest says", func() io.Reader {
			return io.MultiReader(bytes.NewReader(l.gz), strings.NewReader("trailing"))
		}, l.src, "manifest says", errdefs.ErrInvalidArgument, false},
		{"wrong diff_id", func() io.Reader { return bytes.NewReader(l.gz) }, func() LayerSource {
			src := l.src()
			src.DiffID = digest.FromString("another tar")
			src.ChainID = src.DiffID
			return src
		}, "diff_id", errdefs.ErrInvalidArgument, true},
		{"hostile entry in the middle", func() io.Reader { return bytes.NewReader(hostile.gz) }, hostile.src,
			"climbs out", errdefs.ErrInvalidArgument, true},
		{"broken transfer", func() io.Reader { return &failAfter{bytes.NewReader(l.gz), len(l.gz) / 2, broken} }, l.src,
			"reading the blob", broken, false},
		{"zstd", func() io.Reader {
			return io.MultiReader(bytes.NewReader([]byte{0x28, 0xb5, 0x2f, 0xfd}), bytes.NewReader(l.gz))
		}, func() LayerSource {
			src := l.src()
			src.Size += 4
			return src
		}, "zstd", errdefs.ErrNotImplemented, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			src := tc.src()
			before := runtime.NumGoroutine()
			cr := &countingReader{r: &trickle{tc.blob(), 7000}}
			err := s.IngestLayer(cr, src)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.is) {
				t.Fatalf("IngestLayer: %v; want an error with %q that is %v", err, tc.want, tc.is)
			}
			noGoroutinesLeft(t, before)
			storesNothing(t, s, src)
			if n, _ := cr.r.Read(make([]byte, 1)); tc.whole && n > 0 {
				t.Errorf("read %d bytes of the blob, not all of it", cr.n)
			}
		})
	}
}

// panicAfter yields n bytes of r, then panics: from a goroutine of the
// pipeline, not the caller's.
type panicAfter struct {
	r io.Reader
	n int
}

func (p *panicAfter) Read(b []byte) (int, error) {
	if p.n <= 0 {
		panic("reader panics")
	}
	if len(b) > p.n {
		b = b[:p.n]
	}
	n, err := p.r.Read(b)
	p.n -= n
	return n, err
}

// A panic in a stage's goroutine comes out of IngestLayer in the caller's
// goroutine (as it did before the work was split in stages), with nothing
// stored and no stage left.
func TestIngestStagePanicReachesCaller(t *testing.T) {
	needRoot(t)
	l := makeBigLayer(t, "")
	s := newStore(t)
	src := l.src()
	before := runtime.NumGoroutine()
	func() {
		defer func() {
			r := recover()
			if msg, _ := r.(string); !strings.Contains(msg, "reader panics") {
				t.Errorf("recovered %v, want the reader's panic", r)
			}
		}()
		err := s.IngestLayer(&panicAfter{bytes.NewReader(l.gz), len(l.gz) / 2}, src)
		t.Errorf("IngestLayer returned %v, want a panic", err)
	}()
	noGoroutinesLeft(t, before)
	storesNothing(t, s, src)
}
