// Package archive owns the tar streams that cross the engine's file
// systems: it applies one OCI/Docker layer tar into a directory that
// becomes an overlayfs lower dir (translating OCI whiteouts into overlay
// whiteouts and refusing every entry that would write outside it), and it
// copies files out of and into a container's root (docker cp, export)
// without ever leaving that root (Root).
package archive

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/berth/berth/internal/errdefs"
)

// Compression names a layer's compression.
type Compression string

// The compressions Detect knows.
const (
	Uncompressed Compression = ""
	Gzip         Compression = "gzip"
	Zstd         Compression = "zstd"
	Bzip2        Compression = "bzip2"
	Xz           Compression = "xz"
)

var magics = []struct {
	c Compression
	m []byte
}{
	{Gzip, []byte{0x1f, 0x8b}},
	{Zstd, []byte{0x28, 0xb5, 0x2f, 0xfd}},
	{Bzip2, []byte{0x42, 0x5a, 0x68}},
	{Xz, []byte{0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00}},
}

// Detect peeks at the start of br and names its compression.
func Detect(br *bufio.Reader) Compression {
	head, _ := br.Peek(6)
	for _, m := range magics {
		if bytes.HasPrefix(head, m.m) {
			return m.c
		}
	}
	return Uncompressed
}

type gzipReadCloser struct {
	*gzip.Reader
}

// Decompress returns the uncompressed stream of r: gzip is detected by its
// magic and decompressed, anything that is not compressed is returned as
// is. zstd, bzip2 and xz are refused with errdefs.ErrNotImplemented.
func Decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	switch c := Detect(br); c {
	case Uncompressed:
		return io.NopCloser(br), nil
	case Gzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip stream: %w: %w", err, errdefs.ErrInvalidArgument)
		}
		return gzipReadCloser{zr}, nil
	default:
		return nil, fmt.Errorf("%s-compressed stream: only plain and gzip tars are supported: %w", c, errdefs.ErrNotImplemented)
	}
}

// FollowsLast reports whether a path given to docker cp names what a
// final symlink points to: "dir/." and "dir/" do, as in Docker.
func FollowsLast(p string) bool {
	return strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.") || p == "."
}

// BaseName is Docker's name for the copied resource: the last element of
// the path as given ("." for "dir/.").
func BaseName(p string) string {
	if strings.HasSuffix(p, "/.") || p == "." {
		return "."
	}
	b := path.Base(path.Clean("/" + p))
	if b == "/" {
		return "/"
	}
	return b
}
