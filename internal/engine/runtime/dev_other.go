//go:build !linux

package runtime

import specs "github.com/opencontainers/runtime-spec/specs-go"

func deviceInfo(string) (specs.LinuxDevice, bool) { return specs.LinuxDevice{}, false }
