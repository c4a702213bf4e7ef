package registry

import (
	_ "crypto/sha256" // register the digest algorithms the registry accepts
	_ "crypto/sha512"
	"strings"

	digest "github.com/opencontainers/go-digest"

	"github.com/berth/berth/internal/lazyre"
)

var (
	// nameRE and tagRE are the distribution spec's grammar for repository
	// names and tags ("Pulling manifests").
	nameRE = lazyre.New(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagRE  = lazyre.New(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

// maxNameLen bounds a repository name as distribution does (the spec
// recommends hostname + name stay within 255 characters).
const maxNameLen = 255

func checkName(name string) error {
	if len(name) > maxNameLen {
		return newErr(errNameInvalid, "repository name %.40q… is %d characters long; the limit is %d", name, len(name), maxNameLen).withDetail(map[string]string{"name": name})
	}
	if !nameRE.MatchString(name) {
		return newErr(errNameInvalid, "invalid repository name %q: use lowercase letters, digits and separators (. _ __ -), path components joined by /", name).withDetail(map[string]string{"name": name})
	}
	return nil
}

func checkTag(tag string) error {
	if !tagRE.MatchString(tag) {
		return newErr(errTagInvalid, "invalid tag %q: a tag is 1 to 128 of [A-Za-z0-9_.-] and does not start with . or -", tag).withDetail(map[string]string{"tag": tag})
	}
	return nil
}

// parseDigest parses a digest the registry can verify: sha256, sha384 or
// sha512 with a well-formed hex part.
func parseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		alg, _, _ := strings.Cut(s, ":")
		if !digest.Algorithm(alg).Available() && strings.Contains(s, ":") {
			return "", newErr(errDigestInvalid, "digest %q: unsupported algorithm %q (use sha256 or sha512)", s, alg).withDetail(map[string]string{"digest": s})
		}
		return "", newErr(errDigestInvalid, "invalid digest %q: want <algorithm>:<hex>, e.g. sha256:<64 hex digits> (%v)", s, err).withDetail(map[string]string{"digest": s})
	}
	return d, nil
}

// isDigestRef reports whether a manifest reference is meant as a digest (a
// tag can never contain a colon).
func isDigestRef(ref string) bool { return strings.Contains(ref, ":") }
