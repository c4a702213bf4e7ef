//go:build !linux

package proxy

import (
	"errors"

	"github.com/berth/berth/internal/errdefs"
)

var errUnsupported = errors.Join(errors.New("the service proxy needs Linux nftables"), errdefs.ErrUnavailable)

// Apply needs Linux.
func Apply(string, Ruleset) error { return errUnsupported }

// Delete needs Linux.
func Delete(string) error { return errUnsupported }

// Exists needs Linux.
func Exists(string) (bool, error) { return false, errUnsupported }

// EnableForwarding needs Linux.
func EnableForwarding() error { return errUnsupported }

// FlushConntrack needs Linux.
func FlushConntrack([]ConntrackFlush) (uint, error) { return 0, errUnsupported }
