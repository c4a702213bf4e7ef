//go:build !linux

package content

import "os"

func startWriteback(f *os.File, off, n int64) {}
