//go:build !linux

package volumes

import (
	"errors"
	"os"
)

var errNoTmpfs = errors.New("tmpfs volumes need Linux")

func ensureTmpfs(dir string, size int64, mode os.FileMode) error { return errNoTmpfs }

func unmountAll(dir string) error { return nil }

func mountedBelow(dir string) ([]string, error) { return nil, nil }
