// Package distribution owns talking to image registries: pull, push and
// login over the Docker Registry HTTP API V2 / OCI distribution protocol,
// storing what it fetches in berth's image store (internal/engine/image)
// so that every layer lands once.
//
// go-containerregistry provides the authentication handshake (the ping,
// basic auth and the bearer-token exchange); the protocol requests, the
// verification and the storage are berth's, so that a pull streams each
// layer once (the compressed bytes are hashed and kept, the gunzipped tar
// is hashed, kept and unpacked as it arrives) and errors speak Docker's
// language.
//
// Vocabulary: a reference names an image (docker.io/library/busybox:latest);
// its domain is the registry; the manifest lists a config blob (whose
// digest is the image ID) and layer blobs (compressed tars, whose
// uncompressed digests are the config's diff IDs); an index (manifest
// list) picks a manifest per platform.
package distribution

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/berth/berth/internal/engine/image"
	"github.com/berth/berth/internal/errdefs"
)

// Config configures a Client.
type Config struct {
	// InsecureRegistries are registries (host, host:port or a CIDR) that
	// may be reached over plain HTTP, and over HTTPS without verifying
	// their certificate, as Docker's --insecure-registry. Loopback
	// registries (127.0.0.0/8, ::1, localhost) always may.
	InsecureRegistries []string
	// MaxConcurrentDownloads and MaxConcurrentUploads bound the layers
	// moved at once by one pull or push (default 3).
	MaxConcurrentDownloads int
	MaxConcurrentUploads   int
	// Transport is the base HTTP transport (default: a clone of
	// http.DefaultTransport). Tests use it to count requests.
	Transport http.RoundTripper
	// UserAgent names berth to registries.
	UserAgent string
	// RetryDelay is the wait before the first retry of a layer whose
	// transfer broke (doubled for the second; default 1s).
	RetryDelay time.Duration
}

// Client pulls and pushes images between registries and one image store.
// It is safe for concurrent use.
type Client struct {
	cfg      Config
	store    *image.Store
	insecure []insecureEntry
	secure   http.RoundTripper // verifies certificates
	skipTLS  http.RoundTripper // for insecure registries

	mu       sync.Mutex
	inflight map[string]*sync.Mutex // per layer blob, across concurrent pulls
}

type insecureEntry struct {
	host string     // host or host:port, lower case
	cidr *net.IPNet // or a network
}

// New returns a client storing into store. An entry of
// cfg.InsecureRegistries that is neither a host[:port] nor a CIDR is an
// errdefs.ErrInvalidArgument.
func New(store *image.Store, cfg Config) (*Client, error) {
	if cfg.MaxConcurrentDownloads <= 0 {
		cfg.MaxConcurrentDownloads = 3
	}
	if cfg.MaxConcurrentUploads <= 0 {
		cfg.MaxConcurrentUploads = 3
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "berth"
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = time.Second
	}
	c := &Client{cfg: cfg, store: store, inflight: map[string]*sync.Mutex{}}
	for _, e := range cfg.InsecureRegistries {
		e = strings.TrimSpace(strings.ToLower(e))
		e = strings.TrimPrefix(strings.TrimPrefix(e, "http://"), "https://")
		e = strings.TrimSuffix(e, "/")
		if e == "" {
			continue
		}
		if strings.Contains(e, "/") {
			_, n, err := net.ParseCIDR(e)
			if err != nil {
				return nil, fmt.Errorf("insecure registry %q: expected host, host:port or a CIDR such as 10.0.0.0/8: %w", e, errdefs.ErrInvalidArgument)
			}
			c.insecure = append(c.insecure, insecureEntry{cidr: n})
			continue
		}
		if strings.ContainsAny(e, " \t@?#") {
			return nil, fmt.Errorf("insecure registry %q: expected host, host:port or a CIDR such as 10.0.0.0/8: %w", e, errdefs.ErrInvalidArgument)
		}
		c.insecure = append(c.insecure, insecureEntry{host: e})
	}
	base := cfg.Transport
	if base == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 8
		base = t
		skip := t.Clone()
		skip.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // only for --insecure-registry and loopback, as Docker
		c.skipTLS = skip
	} else if t, ok := base.(*http.Transport); ok {
		skip := t.Clone()
		skip.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // as above
		c.skipTLS = skip
	} else {
		c.skipTLS = base
	}
	c.secure = base
	return c, nil
}

// layerLock serialises work on one layer blob across concurrent pulls, so
// that two pulls sharing a layer download it once.
func (c *Client) layerLock(key string) func() {
	c.mu.Lock()
	m := c.inflight[key]
	if m == nil {
		m = &sync.Mutex{}
		c.inflight[key] = m
	}
	c.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// Progress is one step of a pull or push, in the vocabulary of Docker's
// progress streams ("Pulling fs layer", "Downloading", "Pull complete",
// "Pushed", …).
type Progress struct {
	// ID is the short ID of the layer the step is about, or the tag for
	// "Pulling from", or "" for a line about the whole image.
	ID     string
	Status string
	// Current and Total count bytes, for Downloading, Extracting and
	// Pushing.
	Current, Total int64
	// Message marks a line that is not a layer's progress (Docker sends
	// it without progressDetail).
	Message bool
	// Aux carries the result that ends a push of one tag.
	Aux *PushResult
}

// PushResult is what a push of one tag did.
type PushResult struct {
	Tag    string
	Digest string
	Size   int
}

type progressFunc func(Progress)

// safe serialises calls to f (nil is a no-op).
func safe(f func(Progress)) progressFunc {
	if f == nil {
		return func(Progress) {}
	}
	var mu sync.Mutex
	return func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		f(p)
	}
}
