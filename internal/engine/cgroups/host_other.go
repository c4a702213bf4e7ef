//go:build !linux

package cgroups

import (
	"fmt"

	"github.com/berth/berth/internal/errdefs"
)

// Detect reports false: cgroups exist only on Linux.
func Detect() bool { return false }

// PrepareHost fails: containers run only on Linux.
func PrepareHost() error {
	return fmt.Errorf("cgroups: %w on this OS (Linux only)", errdefs.ErrNotImplemented)
}

// RestoreMounts does nothing off Linux.
func RestoreMounts() (bool, error) { return false, nil }

// RemoveEverywhere does nothing off Linux.
func RemoveEverywhere(cgroupsPath string) {}
