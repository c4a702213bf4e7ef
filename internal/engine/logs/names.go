package logs

import "github.com/berth/berth/internal/engine/logs/crilog"

// Stream names as they appear in records; package crilog writes them.
const (
	Stdout = crilog.Stdout
	Stderr = crilog.Stderr
)
