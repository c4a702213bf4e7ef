//go:build !linux

package archive

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/berth/berth/internal/errdefs"
)

// PathStat describes one path of a container's file system.
type PathStat struct {
	Name       string      `json:"name"`
	Size       int64       `json:"size"`
	Mode       os.FileMode `json:"mode"`
	Mtime      time.Time   `json:"mtime"`
	LinkTarget string      `json:"linkTarget"`
}

// ExtractOptions tune Root.Extract.
type ExtractOptions struct {
	NoOverwriteDirNonDir bool
	Owner                *[2]int
	SpoolDir             string
}

// Root needs Linux (openat2).
type Root struct{}

// OpenRoot fails: container file systems exist only on Linux.
func OpenRoot(dir string) (*Root, error) {
	return nil, fmt.Errorf("container file access: %w on this OS", errdefs.ErrNotImplemented)
}

func (r *Root) Close() error                               { return nil }
func (r *Root) Stat(p string) (PathStat, error)            { return PathStat{}, errdefs.ErrNotImplemented }
func (r *Root) Resolve(p string) (string, error)           { return "", errdefs.ErrNotImplemented }
func (r *Root) WriteTar(w io.Writer, p, name string) error { return errdefs.ErrNotImplemented }
func (r *Root) Extract(dst string, rd io.Reader, o ExtractOptions) error {
	return errdefs.ErrNotImplemented
}

// SameDir reports false: needs Linux.
func (r *Root) SameDir(dir string) bool { return false }
