package build

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/opencontainers/go-digest"
)

// The build cache maps a step's key to the image config the step produced.
//
// A key is content-addressed: sha256 of the previous step's key and the
// step's descriptor (the instruction after variable expansion, plus for
// RUN the build arguments in its environment, plus for COPY and ADD the
// digests and metadata of every source file). The first key of a stage is
// derived from its base image's ID. A record holds the config JSON byte
// for byte, so a rebuild that hits every step produces the very same
// image ID. Records are written atomically without fsync: losing one to a
// crash only costs a rebuild of that step. A record whose layers were
// removed since (rmi) is ignored.

// cacheKey chains descriptor onto prev.
func cacheKey(prev digest.Digest, descriptor any) digest.Digest {
	b, err := json.Marshal(descriptor)
	if err != nil {
		panic(err) // descriptors are plain data
	}
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write([]byte{0})
	h.Write(b)
	return digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.Sum(nil)))
}

type cache struct {
	dir string
}

func (c *cache) path(key digest.Digest) string {
	return filepath.Join(c.dir, key.Encoded())
}

// get returns the config recorded for key, or nil.
func (c *cache) get(key digest.Digest) []byte {
	b, err := os.ReadFile(c.path(key))
	if err != nil {
		return nil
	}
	return b
}

func (c *cache) put(key digest.Digest, config []byte) error {
	tmp, err := os.CreateTemp(c.dir, ".tmp-")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(config); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	tmp.Close()
	if err := os.Rename(tmp.Name(), c.path(key)); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

func (c *cache) drop(key digest.Digest) { os.Remove(c.path(key)) }

// all returns every record's config.
func (c *cache) all() [][]byte {
	ents, _ := os.ReadDir(c.dir)
	var out [][]byte
	for _, e := range ents {
		if b, err := os.ReadFile(filepath.Join(c.dir, e.Name())); err == nil {
			out = append(out, b)
		}
	}
	return out
}

// prune removes every record and returns how many there were.
func (c *cache) prune() (int, error) {
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		return 0, err
	}
	n := 0
	for _, e := range ents {
		if os.Remove(filepath.Join(c.dir, e.Name())) == nil {
			n++
		}
	}
	return n, nil
}

// sortedEnv returns the K=V pairs of m sorted by key.
func sortedEnv(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
