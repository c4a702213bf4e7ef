package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// saveManifest is one entry of a docker-save archive's manifest.json.
type saveManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// parseSaveManifest parses a docker-save manifest.json and checks that it
// names exactly one image with at least one layer.
func parseSaveManifest(b []byte) (saveManifest, error) {
	var ms []saveManifest
	if err := json.Unmarshal(b, &ms); err != nil {
		return saveManifest{}, fmt.Errorf("manifest.json: %w", err)
	}
	if len(ms) != 1 {
		return saveManifest{}, fmt.Errorf("manifest.json: %d images, want exactly 1", len(ms))
	}
	if len(ms[0].Layers) == 0 {
		return saveManifest{}, errors.New("manifest.json: image has no layers")
	}
	for _, l := range ms[0].Layers {
		if l == "" || path.IsAbs(l) || strings.HasPrefix(path.Clean(l), "..") {
			return saveManifest{}, fmt.Errorf("manifest.json: layer path %q, want a relative path inside the archive", l)
		}
	}
	return ms[0], nil
}

// extractSaveArchive unpacks the layers of the single image in the
// docker-save archive at archivePath into dir, in order, so that the bare OCI
// runtimes run the very rootfs the engines load. Whiteout files are applied.
// Entries that would land outside dir are refused.
func extractSaveArchive(archivePath, dir string) error {
	f, err := os.Open(archivePath)
	if err != nil {
		return err
	}
	defer f.Close()
	// A docker-save archive is small here (busybox); read its members into
	// memory by name, since manifest.json may come after the layers.
	members := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("archive %s: %w", archivePath, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return fmt.Errorf("archive %s: member %s: %w", archivePath, h.Name, err)
		}
		members[path.Clean(h.Name)] = b
	}
	mb, ok := members["manifest.json"]
	if !ok {
		return fmt.Errorf("archive %s: no manifest.json; want a docker-save archive", archivePath)
	}
	m, err := parseSaveManifest(mb)
	if err != nil {
		return fmt.Errorf("archive %s: %w", archivePath, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, l := range m.Layers {
		b, ok := members[path.Clean(l)]
		if !ok {
			return fmt.Errorf("archive %s: layer %s is named in manifest.json but missing", archivePath, l)
		}
		if err := extractLayer(bytes.NewReader(b), dir); err != nil {
			return fmt.Errorf("archive %s: layer %s: %w", archivePath, l, err)
		}
	}
	return nil
}

// extractLayer unpacks one layer tar (plain or gzip) into dir.
func extractLayer(r io.Reader, dir string) error {
	br := bufio.NewReader(r)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return err
		}
		defer zr.Close()
		r = zr
	} else {
		r = br
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean("/" + h.Name) // rooted, so ".." cannot climb out
		if name == "/" {
			continue
		}
		if slices.Contains(strings.Split(h.Name, "/"), "..") {
			return fmt.Errorf("entry %q: want a path inside the layer, without \"..\"", h.Name)
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		if err := insideNoSymlink(dir, filepath.Dir(target)); err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
		base := path.Base(name)
		if base == ".wh..wh..opq" {
			parent := filepath.Dir(target)
			ents, _ := os.ReadDir(parent)
			for _, e := range ents {
				os.RemoveAll(filepath.Join(parent, e.Name()))
			}
			continue
		}
		if hidden, ok := strings.CutPrefix(base, ".wh."); ok {
			os.RemoveAll(filepath.Join(filepath.Dir(target), hidden))
			continue
		}
		mode := os.FileMode(h.Mode) & os.ModePerm
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, mode|0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			os.RemoveAll(target)
			out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, tr); err != nil {
				out.Close()
				return err
			}
			if err := out.Close(); err != nil {
				return err
			}
		case tar.TypeSymlink:
			os.RemoveAll(target)
			if err := os.Symlink(h.Linkname, target); err != nil {
				return err
			}
		case tar.TypeLink:
			src := filepath.Join(dir, filepath.FromSlash(path.Clean("/"+h.Linkname)))
			if err := insideNoSymlink(dir, filepath.Dir(src)); err != nil {
				return fmt.Errorf("entry %q: link target: %w", h.Name, err)
			}
			os.RemoveAll(target)
			if err := os.Link(src, target); err != nil {
				return err
			}
		default:
			// Device nodes, fifos: not needed by the benchmark's rootfs.
			continue
		}
		if h.Typeflag != tar.TypeSymlink {
			os.Chown(target, h.Uid, h.Gid)
			os.Chmod(target, mode)
		}
	}
}

// insideNoSymlink checks that p is dir or below it and that no existing
// component between dir and p is a symlink (which could lead outside).
func insideNoSymlink(dir, p string) error {
	rel, err := filepath.Rel(dir, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("path %s is outside %s", p, dir)
	}
	if rel == "." {
		return nil
	}
	cur := dir
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		if errors.Is(err, os.ErrNotExist) {
			return os.MkdirAll(p, 0o755)
		}
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("path %s passes through symlink %s", p, cur)
		}
	}
	return nil
}
