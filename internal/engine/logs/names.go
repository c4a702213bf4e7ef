// Package logs reads container log files: the CRI log format (one record
// per line, "<RFC3339Nano UTC> <stdout|stderr> <F|P> <content>") with tail,
// since/until and a follow that continues across rotation (path, path.1 …
// path.N-1). The writing half, which the per-container monitor links, is
// package crilog.
package logs

import "github.com/berth/berth/internal/engine/logs/crilog"

// Stream names as they appear in records; package crilog writes them.
const (
	Stdout = crilog.Stdout
	Stderr = crilog.Stderr
)
