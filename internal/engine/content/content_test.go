package content

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/berth/berth/internal/errdefs"
	"github.com/opencontainers/go-digest"
)

func TestWriteOpenInfoDelete(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("hello blob")
	want := digest.FromBytes(data)
	info, err := s.Put(bytes.NewReader(data), want)
	if err != nil {
		t.Fatal(err)
	}
	if info.Digest != want || info.Size != int64(len(data)) {
		t.Errorf("got %v %d, want %v %d", info.Digest, info.Size, want, len(data))
	}
	if _, err := os.Stat(filepath.Join(s.root, "blobs", "sha256", want.Encoded())); err != nil {
		t.Errorf("blob file: %v", err)
	}
	r, err := s.Open(want)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := r.ReadAt(buf, 6); err != nil || string(buf) != "blob" || r.Size() != int64(len(data)) {
		t.Errorf("ReadAt got %q size %d, want \"blob\" size %d (%v)", buf, r.Size(), len(data), err)
	}
	r.Close()
	var walked []digest.Digest
	s.Walk(func(i Info) error { walked = append(walked, i.Digest); return nil })
	if len(walked) != 1 || walked[0] != want {
		t.Errorf("Walk got %v, want [%v]", walked, want)
	}
	if err := s.Delete(want); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Info(want); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Info after delete: got %v, want ErrNotFound", err)
	}
	if _, err := s.Open(want); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Open after delete: got %v, want ErrNotFound", err)
	}
	if _, err := s.Open("sha256:nothex"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Open(bad digest): got %v, want ErrInvalidArgument", err)
	}
}

func TestCommitMismatchStoresNothing(t *testing.T) {
	s, _ := New(t.TempDir())
	wrong := digest.FromString("something else")
	_, err := s.Put(bytes.NewReader([]byte("data")), wrong)
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("got %v, want ErrInvalidArgument", err)
	}
	w, _ := s.Writer()
	io.WriteString(w, "abc")
	if _, err := w.Commit(digest.FromString("abc"), 4); err == nil {
		t.Errorf("size mismatch: got no error")
	}
	n := 0
	s.Walk(func(Info) error { n++; return nil })
	ents, _ := os.ReadDir(filepath.Join(s.root, "ingest"))
	if n != 0 || len(ents) != 0 {
		t.Errorf("got %d blobs and %d ingest files, want 0 and 0", n, len(ents))
	}
}

func TestConcurrentPuts(t *testing.T) {
	s, _ := New(t.TempDir())
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			data := []byte(fmt.Sprintf("blob %d", i%5)) // same blobs written concurrently
			if _, err := s.Put(bytes.NewReader(data), digest.FromBytes(data)); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	n := 0
	s.Walk(func(i Info) error {
		b, err := s.ReadAll(i.Digest)
		if err != nil || digest.FromBytes(b) != i.Digest {
			t.Errorf("blob %s corrupt: %v", i.Digest, err)
		}
		n++
		return nil
	})
	if n != 5 {
		t.Errorf("got %d blobs, want 5", n)
	}
}

// A blob bigger than writebackEvery, written in odd pieces (its writeback
// starts while it is written), is stored whole.
func TestBigBlobWrittenInPieces(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 2*writebackEvery+12345)
	for i := range data {
		data[i] = byte(i * 13)
	}
	w, err := s.Writer()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for off := 0; off < len(data); off += 99999 {
		if _, err := w.Write(data[off:min(off+99999, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	if w.flushed == 0 {
		t.Error("no writeback was started")
	}
	want := digest.FromBytes(data)
	if _, err := w.Commit(want, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadAll(want)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAll: %d bytes (%v), want %d", len(got), err, len(data))
	}
}
