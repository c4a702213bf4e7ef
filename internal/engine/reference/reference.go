// Package reference owns image reference parsing: Docker's grammar for
// names such as "busybox", "localhost:5000/a/b:t" and "name@sha256:…",
// their normalised form (docker.io/library/busybox:latest) and the familiar
// form that `docker images` shows (busybox:latest).
package reference

import (
	"fmt"
	"strings"

	"github.com/berth/berth/internal/errdefs"
	"github.com/berth/berth/internal/lazyre"
	"github.com/opencontainers/go-digest"
)

const (
	// DefaultDomain is the registry a name without a domain belongs to.
	DefaultDomain = "docker.io"
	legacyDomain  = "index.docker.io"
	officialRepo  = "library"
	// DefaultTag is the tag a name without tag or digest gets.
	DefaultTag = "latest"
	// NameTotalLengthMax is the longest repository name accepted.
	NameTotalLengthMax = 255
)

var (
	domainComponent = `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])`
	ipv6            = `\[(?:[a-fA-F0-9:]+)\]`
	domainRe        = lazyre.New(`^(?:` + domainComponent + `(?:\.` + domainComponent + `)*|` + ipv6 + `)(?::[0-9]+)?$`)
	pathComponentRe = lazyre.New(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$`)
	tagRe           = lazyre.New(`^[\w][\w.-]{0,127}$`)
	digestRe        = lazyre.New(`^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$`)
	hex64Re         = lazyre.New(`^[a-f0-9]{64}$`)
)

// Named is a parsed, normalised image reference. The zero value is not
// a valid reference.
type Named struct {
	domain string
	path   string
	tag    string
	digest digest.Digest
}

func invalid(s, why string) error {
	return fmt.Errorf("invalid reference format: %s: %q: %w", why, s, errdefs.ErrInvalidArgument)
}

// Parse parses s with Docker's rules and normalises it: a missing domain
// becomes docker.io, a single-component Docker Hub name gets "library/", and
// a reference with neither tag nor digest gets the tag "latest".
func Parse(s string) (Named, error) {
	n, err := ParseNamed(s)
	if err != nil {
		return Named{}, err
	}
	if n.tag == "" && n.digest == "" {
		n.tag = DefaultTag
	}
	return n, nil
}

// ParseNamed is Parse without adding the default tag: "busybox" stays
// docker.io/library/busybox with an empty Tag.
func ParseNamed(s string) (Named, error) {
	if s == "" {
		return Named{}, invalid(s, "repository name must have at least one component")
	}
	if hex64Re.MatchString(s) {
		return Named{}, invalid(s, "cannot specify 64-byte hexadecimal strings as a repository name")
	}
	rest := s
	var n Named
	if i := strings.IndexByte(rest, '@'); i >= 0 {
		d := rest[i+1:]
		rest = rest[:i]
		if !digestRe.MatchString(d) {
			return Named{}, invalid(s, "invalid digest")
		}
		dg := digest.Digest(d)
		if err := dg.Validate(); err != nil {
			return Named{}, invalid(s, "invalid digest")
		}
		n.digest = dg
	}
	// A tag follows the last ':' that comes after the last '/'.
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.Contains(rest[i+1:], "/") {
		t := rest[i+1:]
		rest = rest[:i]
		if !tagRe.MatchString(t) {
			return Named{}, invalid(s, "invalid tag")
		}
		n.tag = t
	}
	if rest == "" {
		return Named{}, invalid(s, "repository name must have at least one component")
	}
	if len(rest) > NameTotalLengthMax {
		return Named{}, invalid(s, fmt.Sprintf("repository name must not be more than %d characters", NameTotalLengthMax))
	}
	domain, path := splitDomain(rest)
	if !domainRe.MatchString(domain) {
		return Named{}, invalid(s, "invalid domain")
	}
	if path == "" {
		return Named{}, invalid(s, "repository name must have at least one component")
	}
	for _, c := range strings.Split(path, "/") {
		if !pathComponentRe.MatchString(c) {
			if strings.ToLower(c) != c && pathComponentRe.MatchString(strings.ToLower(c)) {
				return Named{}, invalid(s, "repository name must be lowercase")
			}
			return Named{}, invalid(s, "invalid repository name")
		}
	}
	if domain == DefaultDomain && !strings.Contains(path, "/") {
		path = officialRepo + "/" + path
	}
	if len(domain)+1+len(path) > NameTotalLengthMax {
		return Named{}, invalid(s, fmt.Sprintf("repository name must not be more than %d characters", NameTotalLengthMax))
	}
	n.domain, n.path = domain, path
	return n, nil
}

// splitDomain splits the first path component off as the domain when it
// looks like one (contains '.' or ':', or is "localhost"), as Docker does.
func splitDomain(name string) (domain, path string) {
	i := strings.IndexByte(name, '/')
	if i == -1 || (!strings.ContainsAny(name[:i], ".:") && name[:i] != "localhost" && strings.ToLower(name[:i]) == name[:i]) {
		return DefaultDomain, name
	}
	domain, path = name[:i], name[i+1:]
	if domain == legacyDomain {
		domain = DefaultDomain
	}
	return domain, path
}

// Domain is the registry host (and port): "docker.io", "localhost:5000".
func (n Named) Domain() string { return n.domain }

// Path is the repository path within the domain: "library/busybox".
func (n Named) Path() string { return n.path }

// Tag is the tag, or "" when the reference has none.
func (n Named) Tag() string { return n.tag }

// Digest is the digest, or "" when the reference has none.
func (n Named) Digest() digest.Digest { return n.digest }

// IsZero reports whether n is the zero value.
func (n Named) IsZero() bool { return n.path == "" }

// Name is the full repository name: "docker.io/library/busybox".
func (n Named) Name() string { return n.domain + "/" + n.path }

// FamiliarName is the repository name as Docker shows it: "busybox",
// "user/app", "localhost:5000/a/b".
func (n Named) FamiliarName() string {
	if n.domain == DefaultDomain {
		return strings.TrimPrefix(n.path, officialRepo+"/")
	}
	return n.Name()
}

func (n Named) suffix() string {
	s := ""
	if n.tag != "" {
		s += ":" + n.tag
	}
	if n.digest != "" {
		s += "@" + n.digest.String()
	}
	return s
}

// String is the full normalised reference: "docker.io/library/busybox:latest".
func (n Named) String() string { return n.Name() + n.suffix() }

// FamiliarString is the reference as `docker images` shows it:
// "busybox:latest", "localhost:5000/a/b:t", "busybox@sha256:…".
func (n Named) FamiliarString() string { return n.FamiliarName() + n.suffix() }

// WithTag returns n with its tag set to tag and its digest cleared.
func (n Named) WithTag(tag string) (Named, error) {
	if !tagRe.MatchString(tag) {
		return Named{}, invalid(tag, "invalid tag")
	}
	n.tag, n.digest = tag, ""
	return n, nil
}

// WithDigest returns n with its digest set to d and its tag cleared.
func (n Named) WithDigest(d digest.Digest) (Named, error) {
	if err := d.Validate(); err != nil {
		return Named{}, invalid(d.String(), "invalid digest")
	}
	n.tag, n.digest = "", d
	return n, nil
}

// Repo returns n without tag or digest.
func (n Named) Repo() Named { n.tag, n.digest = "", ""; return n }
