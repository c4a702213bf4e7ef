package distribution

import (
	"fmt"
	"runtime"
	"sort"
	"strings"

	"github.com/berth/berth/internal/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// HostPlatform is the platform this engine runs images of.
func HostPlatform() ocispec.Platform {
	p := ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
	switch runtime.GOARCH {
	case "arm":
		p.Variant = "v7"
	}
	return p
}

// ParsePlatform parses "os/arch[/variant]" or "arch" (os linux), as
// Docker's --platform takes them, normalising architecture aliases
// (x86_64 → amd64, aarch64 → arm64, armhf → arm/v7).
func ParsePlatform(s string) (ocispec.Platform, error) {
	parts := strings.Split(strings.ToLower(strings.TrimSpace(s)), "/")
	var p ocispec.Platform
	switch len(parts) {
	case 1:
		p.OS, p.Architecture = "linux", parts[0]
	case 2:
		p.OS, p.Architecture = parts[0], parts[1]
	case 3:
		p.OS, p.Architecture, p.Variant = parts[0], parts[1], parts[2]
	default:
		return p, fmt.Errorf("invalid platform %q: expected os/arch[/variant], such as linux/amd64 or linux/arm64/v8: %w", s, errdefs.ErrInvalidArgument)
	}
	for _, x := range parts {
		if x == "" {
			return p, fmt.Errorf("invalid platform %q: expected os/arch[/variant], such as linux/amd64 or linux/arm64/v8: %w", s, errdefs.ErrInvalidArgument)
		}
	}
	return normalize(p), nil
}

func normalize(p ocispec.Platform) ocispec.Platform {
	p.OS = strings.ToLower(p.OS)
	p.Architecture = strings.ToLower(p.Architecture)
	p.Variant = strings.ToLower(p.Variant)
	switch p.Architecture {
	case "x86_64", "x86-64":
		p.Architecture = "amd64"
	case "aarch64":
		p.Architecture = "arm64"
	case "armhf":
		p.Architecture, p.Variant = "arm", "v7"
	case "armel":
		p.Architecture, p.Variant = "arm", "v6"
	case "i386", "i686":
		p.Architecture = "386"
	}
	switch p.Architecture {
	case "arm64":
		// v8 is arm64's baseline: like containerd, leave it unsaid.
		if p.Variant == "8" || p.Variant == "v8" || p.Variant == "v8.0" {
			p.Variant = ""
		}
	case "arm":
		if p.Variant == "" {
			p.Variant = "v7"
		}
		if len(p.Variant) == 1 {
			p.Variant = "v" + p.Variant
		}
	case "amd64":
		if p.Variant == "v1" {
			p.Variant = ""
		}
	}
	return p
}

// FormatPlatform writes p as os/arch[/variant].
func FormatPlatform(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// rank scores how well have serves want: 0 means not at all; higher is
// better. An arm image of an older variant runs on a newer CPU; an
// amd64 image of a higher microarchitecture level is left out unless
// asked for by name.
func rank(want, have ocispec.Platform) int {
	want, have = normalize(want), normalize(have)
	if want.OS != have.OS || want.Architecture != have.Architecture {
		return 0
	}
	if want.Variant == have.Variant {
		return 100
	}
	if want.Architecture == "arm" || (want.Architecture == "amd64" && want.Variant != "") {
		// lower variants run on higher ones: v7 serves v6, v5 …
		w, h := variantLevel(want.Variant), variantLevel(have.Variant)
		if h > 0 && h < w {
			return 50 + h
		}
		if want.Architecture == "amd64" && have.Variant == "" {
			return 50
		}
	}
	return 0
}

func variantLevel(v string) int {
	var n int
	if _, err := fmt.Sscanf(v, "v%d", &n); err != nil {
		return 0
	}
	return n
}

// pickManifest chooses the manifest of an index for want, or says which
// platforms the index offers.
func pickManifest(idx []ocispec.Descriptor, want ocispec.Platform) (ocispec.Descriptor, error) {
	best, bestRank := -1, 0
	var offered []string
	for i, d := range idx {
		if d.Platform == nil {
			continue
		}
		if d.Platform.OS == "unknown" || d.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
			continue // attestations, not images
		}
		offered = append(offered, FormatPlatform(normalize(*d.Platform)))
		if r := rank(want, *d.Platform); r > bestRank {
			best, bestRank = i, r
		}
	}
	if best < 0 {
		sort.Strings(offered)
		have := "none"
		if len(offered) > 0 {
			have = strings.Join(offered, ", ")
		}
		return ocispec.Descriptor{}, fmt.Errorf("no matching manifest for %s in the manifest list entries (the image offers: %s; pick one with --platform): %w",
			FormatPlatform(want), have, errdefs.ErrNotFound)
	}
	return idx[best], nil
}
