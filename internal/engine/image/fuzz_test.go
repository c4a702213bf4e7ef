package image

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/berth/berth/internal/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

type tent struct {
	name, link string
	typ        byte
	body       []byte
}

func tarOf(ents ...tent) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		tw.WriteHeader(h)
		tw.Write(e.body)
	}
	tw.Close()
	return buf.Bytes()
}

// dockerArchive builds a Docker 25 style docker-save archive by hand.
func dockerArchive(tag string, layers ...[]byte) []byte {
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, RootFS: ocispec.RootFS{Type: "layers"}}
	var ents []tent
	var names []string
	for _, l := range layers {
		d := digest.FromBytes(l)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, d)
		ents = append(ents, tent{name: "blobs/sha256/" + d.Encoded(), typ: tar.TypeReg, body: l})
		names = append(names, "blobs/sha256/"+d.Encoded())
	}
	cb, _ := json.Marshal(cfg)
	cd := digest.FromBytes(cb)
	ents = append(ents, tent{name: "blobs/sha256/" + cd.Encoded(), typ: tar.TypeReg, body: cb})
	var tags []string
	if tag != "" {
		tags = []string{tag}
	}
	mb, _ := json.Marshal([]dockerManifestEntry{{Config: "blobs/sha256/" + cd.Encoded(), RepoTags: tags, Layers: names}})
	ents = append(ents, tent{name: "manifest.json", typ: tar.TypeReg, body: mb})
	return tarOf(ents...)
}

func TestLoadHostileLayer(t *testing.T) {
	needRoot(t)
	var before syscall.Stat_t
	syscall.Stat("/etc/passwd", &before)
	tests := []struct {
		name, entry string
		layer       []byte
	}{
		{"symlink escape", "etc/passwd", tarOf(tent{name: "etc", typ: tar.TypeSymlink, link: "/etc"}, tent{name: "etc/passwd", typ: tar.TypeReg, body: []byte("x")})},
		{"dotdot", "../../../../tmp/berth-evil", tarOf(tent{name: "../../../../tmp/berth-evil", typ: tar.TypeReg, body: []byte("x")})},
		{"hardlink out", "h", tarOf(tent{name: "h", typ: tar.TypeLink, link: "../../../../../etc/passwd"})},
		{"device", "dev/mem", tarOf(tent{name: "dev/mem", typ: tar.TypeChar})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			ok := tarOf(tent{name: "good", typ: tar.TypeReg, body: []byte("good")})
			_, err := s.Load(bytes.NewReader(dockerArchive("evil:1", ok, tt.layer)), nil)
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), `"`+tt.entry+`"`) {
				t.Errorf("got %v, want ErrInvalidArgument naming %q", err, tt.entry)
			}
			if len(s.List()) != 0 {
				t.Errorf("hostile archive stored %d images", len(s.List()))
			}
			if l, _ := s.Snapshots().Layers(); len(l) != 0 {
				t.Errorf("hostile archive left %d layers (the good one must be rolled back)", len(l))
			}
		})
	}
	if _, err := os.Stat("/tmp/berth-evil"); err == nil {
		t.Errorf("/tmp/berth-evil was written")
	}
	var after syscall.Stat_t
	syscall.Stat("/etc/passwd", &after)
	if after.Nlink != before.Nlink || after.Mtim != before.Mtim {
		t.Errorf("/etc/passwd changed")
	}
}

func FuzzLoad(f *testing.F) {
	if os.Geteuid() != 0 {
		f.Skip("skipping: loading images unpacks layers, which needs root")
	}
	layer := tarOf(tent{name: "a", typ: tar.TypeReg, body: []byte("b")}, tent{name: "d/", typ: tar.TypeDir})
	f.Add(dockerArchive("x:1", layer))
	f.Add(dockerArchive("", layer, tarOf(tent{name: "d/.wh.a", typ: tar.TypeReg})))
	f.Add(dockerArchive("x:1", tarOf(tent{name: "l", typ: tar.TypeSymlink, link: "/"}, tent{name: "l/x", typ: tar.TypeReg})))
	f.Add(tarOf(tent{name: "index.json", typ: tar.TypeReg, body: []byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2}]}`)}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Load(bytes.NewReader(data), nil); err != nil {
			if len(s.List()) != 0 {
				t.Fatalf("failed load stored %d images", len(s.List()))
			}
			if l, _ := s.Snapshots().Layers(); len(l) != 0 {
				t.Fatalf("failed load left %d layers", len(l))
			}
		}
	})
}
