package registry

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// htpasswd holds the users of an htpasswd file with bcrypt entries. A
// bcrypt check costs tens of milliseconds by design, so a password that
// passed once is remembered (as a SHA-256) until the file changes.
type htpasswd struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	users   map[string][]byte
	mod     time.Time
	size    int64
	checked time.Time
	ok      map[string][32]byte
}

func loadHtpasswd(path string, log *slog.Logger) (*htpasswd, error) {
	h := &htpasswd{path: path, log: log}
	if err := h.reload(); err != nil {
		return nil, err
	}
	return h, nil
}

// parseHtpasswd reads "user:hash" lines; only bcrypt hashes are accepted.
func parseHtpasswd(path string, data []byte) (map[string][]byte, error) {
	users := map[string][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("htpasswd %s line %d: want user:hash", path, n)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("htpasswd %s line %d (user %q): not a bcrypt hash; create entries with `htpasswd -B`", path, n, user)
		}
		users[user] = []byte(hash)
	}
	return users, sc.Err()
}

// reload re-reads the file if it changed. The caller holds mu (or owns h).
func (h *htpasswd) reload() error {
	fi, err := os.Stat(h.path)
	if err != nil {
		return fmt.Errorf("htpasswd file: %w", err)
	}
	if h.users != nil && fi.ModTime().Equal(h.mod) && fi.Size() == h.size {
		return nil
	}
	data, err := os.ReadFile(h.path)
	if err != nil {
		return fmt.Errorf("htpasswd file: %w", err)
	}
	users, err := parseHtpasswd(h.path, data)
	if err != nil {
		return err
	}
	h.users, h.mod, h.size, h.ok = users, fi.ModTime(), fi.Size(), map[string][32]byte{}
	return nil
}

// dummyHash keeps the time of a login with an unknown user like that of a
// wrong password. It is made on first use: bcrypt takes tens of
// milliseconds by design, which every berth command would pay at start.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("berth"), bcrypt.DefaultCost)
	return h
})

func (h *htpasswd) verify(user, pass string) bool {
	sum := sha256.Sum256([]byte(user + "\x00" + pass))
	h.mu.Lock()
	if time.Since(h.checked) > time.Second {
		h.checked = time.Now()
		if err := h.reload(); err != nil {
			h.log.Warn("keeping the previous htpasswd users", "err", err)
		}
	}
	hash, known := h.users[user]
	if c, ok := h.ok[user]; ok && subtle.ConstantTimeCompare(c[:], sum[:]) == 1 {
		h.mu.Unlock()
		return true
	}
	h.mu.Unlock()
	if !known {
		bcrypt.CompareHashAndPassword(dummyHash(), []byte(pass))
		return false
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil {
		return false
	}
	h.mu.Lock()
	if cur, ok := h.users[user]; ok && bytes.Equal(cur, hash) {
		h.ok[user] = sum
	}
	h.mu.Unlock()
	return true
}

func (r *Registry) authorized(req *http.Request) bool {
	user, pass, ok := req.BasicAuth()
	return ok && r.auth.verify(user, pass)
}
