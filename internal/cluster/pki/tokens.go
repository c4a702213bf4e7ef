package pki

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/berth/berth/internal/errdefs"
)

// Roles a credential can hold.
const (
	RoleAdmin  = "admin"
	RoleNode   = "node"
	RoleViewer = "viewer"
	RoleJoin   = "join" // may join servers to an HA cluster and bootstrap nodes
)

// ValidRole reports whether r names a role.
func ValidRole(r string) bool {
	switch r {
	case RoleAdmin, RoleNode, RoleViewer, RoleJoin:
		return true
	}
	return false
}

// TokenRecord is a stored token: only its hash is kept.
type TokenRecord struct {
	Hash    string    `json:"hash"`
	Role    string    `json:"role"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

var tokMu sync.Mutex

func (d Dir) tokensPath() string { return d.Path("tokens.json") }

// Tokens returns the stored token records.
func (d Dir) Tokens() ([]TokenRecord, error) {
	b, err := os.ReadFile(d.tokensPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var recs []TokenRecord
	if err := json.Unmarshal(b, &recs); err != nil {
		return nil, fmt.Errorf("%s: %v: %w", d.tokensPath(), err, errdefs.ErrInvalidArgument)
	}
	return recs, nil
}

// CreateToken makes a new token for role and name, stores its hash and
// returns the token in clear (the only time it is available).
func (d Dir) CreateToken(role, name string) (string, error) {
	if !ValidRole(role) {
		return "", fmt.Errorf("role %q: want admin, node, viewer or join: %w", role, errdefs.ErrInvalidArgument)
	}
	if role == RoleNode && name == "" {
		return "", fmt.Errorf("node token: a node name is required (--name): %w", errdefs.ErrInvalidArgument)
	}
	if strings.ContainsAny(name, "/ \t\n") {
		return "", fmt.Errorf("token name %q: must not contain '/' or spaces: %w", name, errdefs.ErrInvalidArgument)
	}
	tok := NewToken()
	return tok, d.AddTokenHash(TokenRecord{Hash: HashToken(tok), Role: role, Name: name, Created: time.Now().UTC()})
}

// AddTokenHash stores a token record.
func (d Dir) AddTokenHash(rec TokenRecord) error {
	tokMu.Lock()
	defer tokMu.Unlock()
	recs, err := d.Tokens()
	if err != nil {
		return err
	}
	for _, r := range recs {
		if r.Hash == rec.Hash {
			return nil
		}
	}
	recs = append(recs, rec)
	b, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(d.tokensPath(), b)
}

// TokenStore authenticates bearer tokens against tokens.json, reloading the
// file when it changes so `berth-server token create` takes effect at once.
type TokenStore struct {
	dir   Dir
	mu    sync.Mutex
	mtime time.Time
	size  int64
	byHas map[string]TokenRecord
}

// NewTokenStore returns a store reading d's tokens.
func NewTokenStore(d Dir) *TokenStore { return &TokenStore{dir: d} }

// Lookup returns the record of tok.
func (s *TokenStore) Lookup(tok string) (TokenRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fi, err := os.Stat(s.dir.tokensPath()); err == nil && (!fi.ModTime().Equal(s.mtime) || fi.Size() != s.size || s.byHas == nil) {
		if recs, err := s.dir.Tokens(); err == nil {
			s.byHas = map[string]TokenRecord{}
			for _, r := range recs {
				s.byHas[r.Hash] = r
			}
			s.mtime, s.size = fi.ModTime(), fi.Size()
		}
	}
	r, ok := s.byHas[HashToken(tok)]
	return r, ok
}

// Kubeconfig renders a kubeconfig for server with a client certificate or token.
func Kubeconfig(server string, caPEM, certPEM, keyPEM []byte, token string) []byte {
	b64 := func(b []byte) string { return base64Std(b) }
	var user string
	if token != "" {
		user = "    token: " + token + "\n"
	} else {
		user = "    client-certificate-data: " + b64(certPEM) + "\n    client-key-data: " + b64(keyPEM) + "\n"
	}
	return []byte("apiVersion: v1\nkind: Config\nclusters:\n- name: berth\n  cluster:\n    server: " + server +
		"\n    certificate-authority-data: " + b64(caPEM) + "\ncontexts:\n- name: berth\n  context:\n    cluster: berth\n    user: admin\n    namespace: default\ncurrent-context: berth\nusers:\n- name: admin\n  user:\n" + user)
}
