package distribution

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/reference"
	"github.com/berth/berth/internal/errdefs"
)

// dockerHubAPI is the host that serves Docker Hub's registry API.
const dockerHubAPI = "registry-1.docker.io"

// apiHost is the host serving the registry API of domain.
func apiHost(domain string) string {
	if domain == reference.DefaultDomain {
		return dockerHubAPI
	}
	return domain
}

// AllowHTTP reports whether registry host (host or host:port) may be
// reached over plain HTTP: loopback registries and the insecure ones.
func (c *Client) AllowHTTP(host string) bool {
	h := strings.ToLower(host)
	hostname := h
	if hn, _, err := net.SplitHostPort(h); err == nil {
		hostname = hn
	}
	hostname = strings.Trim(hostname, "[]")
	if hostname == "localhost" || strings.HasSuffix(hostname, ".localhost") {
		return true
	}
	ip := net.ParseIP(hostname)
	if ip != nil && ip.IsLoopback() {
		return true
	}
	for _, e := range c.insecure {
		switch {
		case e.host != "" && (e.host == h || e.host == hostname):
			return true
		case e.cidr != nil && ip != nil && e.cidr.Contains(ip):
			return true
		case e.cidr != nil && ip == nil:
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			addrs, _ := net.DefaultResolver.LookupIPAddr(ctx, hostname)
			cancel()
			for _, a := range addrs {
				if e.cidr.Contains(a.IP) {
					return true
				}
			}
		}
	}
	return false
}

// httpRefused is the guard's error for plain HTTP to a registry that must
// be reached over HTTPS.
type httpRefused struct{ host string }

func (e *httpRefused) Error() string {
	return fmt.Sprintf("plain HTTP to registry %s is not allowed", e.host)
}

// guard refuses plain HTTP requests to the registry host unless allowed
// (go-containerregistry would fall back to HTTP for private addresses).
type guard struct {
	inner http.RoundTripper
	host  string
	allow bool
}

func (g *guard) RoundTrip(r *http.Request) (*http.Response, error) {
	if !g.allow && r.URL.Scheme == "http" && strings.EqualFold(r.URL.Host, g.host) {
		return nil, &httpRefused{host: g.host}
	}
	return g.inner.RoundTrip(r)
}

// session is an authenticated connection to one repository.
type session struct {
	c      *Client
	domain string // as in references: docker.io, 127.0.0.1:5000
	host   string // serving the API: registry-1.docker.io, 127.0.0.1:5000
	repo   string // path: library/busybox
	http   *http.Client
}

func authenticator(a *api.AuthConfig) authn.Authenticator {
	if a == nil || (a.Username == "" && a.Password == "" && a.Auth == "" && a.IdentityToken == "" && a.RegistryToken == "") {
		return authn.Anonymous
	}
	return authn.FromConfig(authn.AuthConfig{Username: a.Username, Password: a.Password, Auth: a.Auth,
		IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken})
}

// roundTripper returns an authenticated transport to registry host with
// the given token scopes.
func (c *Client) roundTripper(ctx context.Context, host string, auth *api.AuthConfig, scopes []string) (http.RoundTripper, error) {
	allow := c.AllowHTTP(host)
	var opts []name.Option
	base := c.secure
	if allow {
		opts = append(opts, name.Insecure)
		base = c.skipTLS
	}
	reg, err := name.NewRegistry(host, opts...)
	if err != nil {
		return nil, fmt.Errorf("registry %q: not a valid host[:port]: %w", host, errdefs.ErrInvalidArgument)
	}
	rt := transport.NewUserAgent(&guard{inner: base, host: host, allow: allow}, c.cfg.UserAgent)
	t, err := transport.NewWithContext(ctx, reg, authenticator(auth), rt, scopes)
	if err != nil {
		return nil, c.explain(host, err)
	}
	return t, nil
}

// open authenticates to ref's repository with scopes ("pull", "pull,push").
func (c *Client) open(ctx context.Context, ref reference.Named, auth *api.AuthConfig, actions string, extraScopes ...string) (*session, error) {
	host := apiHost(ref.Domain())
	scopes := append([]string{"repository:" + ref.Path() + ":" + actions}, extraScopes...)
	rt, err := c.roundTripper(ctx, host, auth, scopes)
	if err != nil {
		return nil, err
	}
	return &session{c: c, domain: ref.Domain(), host: host, repo: ref.Path(), http: &http.Client{Transport: rt}}, nil
}

// url is the https URL of the repository's path p ("/manifests/latest");
// the transport switches it to http where the registry speaks that.
func (s *session) url(p string) string {
	return "https://" + s.host + "/v2/" + s.repo + p
}

// do sends req, translating transport failures.
func (s *session) do(req *http.Request) (*http.Response, error) {
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, s.c.explain(s.host, err)
	}
	return resp, nil
}

// check turns a response whose status is not one of codes into an error
// (and closes its body).
func (s *session) check(resp *http.Response, codes ...int) error {
	for _, c := range codes {
		if resp.StatusCode == c {
			return nil
		}
	}
	defer resp.Body.Close()
	return s.c.explain(s.host, transport.CheckError(resp, codes...))
}

// registryMessage renders a registry's error body as Docker does:
// "manifest unknown: manifest unknown".
func registryMessage(e *transport.Error) string {
	var parts []string
	for _, d := range e.Errors {
		code := strings.ToLower(strings.ReplaceAll(string(d.Code), "_", " "))
		if d.Message == "" {
			parts = append(parts, code)
		} else {
			parts = append(parts, code+": "+d.Message)
		}
	}
	if len(parts) > 0 {
		return strings.Join(parts, "; ")
	}
	msg := strings.ToLower(http.StatusText(e.StatusCode))
	if full := e.Error(); strings.Contains(full, "unexpected status code") {
		if i := strings.Index(full, ": {"); i >= 0 {
			msg += ": " + strings.TrimSpace(full[i+2:])
		}
	}
	return msg
}

// hasCode reports whether the registry error carries code.
func hasCode(e *transport.Error, code transport.ErrorCode) bool {
	for _, d := range e.Errors {
		if d.Code == code {
			return true
		}
	}
	return false
}

// explain turns a failure to talk to registry host into one clear line
// with an error class.
func (c *Client) explain(host string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		msg := registryMessage(terr)
		switch terr.StatusCode {
		case http.StatusUnauthorized:
			if msg == "unauthorized" { // no body (a HEAD request)
				msg = "unauthorized: authentication required"
			}
			return fmt.Errorf("%s: %w", msg, errdefs.ErrUnauthorized)
		case http.StatusForbidden:
			return fmt.Errorf("%s: %w", msg, errdefs.ErrForbidden)
		case http.StatusNotFound:
			return fmt.Errorf("%s: %w", msg, errdefs.ErrNotFound)
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return fmt.Errorf("registry %s: %s: %w", host, msg, errdefs.ErrUnavailable)
		case http.StatusBadRequest:
			return fmt.Errorf("registry %s: %s: %w", host, msg, errdefs.ErrInvalidArgument)
		}
		return fmt.Errorf("registry %s: %s", host, msg)
	}
	// net/http reports this case only as text.
	if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return fmt.Errorf("registry %s answers plain HTTP, but berth talks to it over HTTPS: plain HTTP is allowed only for loopback registries and those given to the daemon's --insecure-registry (add --insecure-registry %s if you trust it): %w", host, host, errdefs.ErrUnavailable)
	}
	var dns *net.DNSError
	if errors.As(err, &dns) && dns.IsNotFound {
		return fmt.Errorf("registry %s: unknown host %q (lookup failed: no such host; check the image name: a first component with a dot or a port names a registry): %w", host, dns.Name, errdefs.ErrNotFound)
	}
	var unk x509.UnknownAuthorityError
	var hn x509.HostnameError
	var inv x509.CertificateInvalidError
	var cv *tls.CertificateVerificationError
	if errors.As(err, &unk) || errors.As(err, &hn) || errors.As(err, &inv) || errors.As(err, &cv) {
		return fmt.Errorf("registry %s: TLS certificate not trusted: %v (install the registry's CA certificate on this host, or give the daemon --insecure-registry %s): %w", host, rootCause(err), host, errdefs.ErrUnavailable)
	}
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		return fmt.Errorf("registry %s does not answer TLS: %v: %w", host, rootCause(err), errdefs.ErrUnavailable)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("registry %s: connection refused (is a registry listening there?): %w", host, errdefs.ErrUnavailable)
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return fmt.Errorf("registry %s: timed out: %v: %w", host, rootCause(err), errdefs.ErrUnavailable)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
		return fmt.Errorf("registry %s: connection broken: %w: %w", host, err, errdefs.ErrUnavailable)
	}
	var refused *httpRefused
	if errors.As(err, &refused) {
		return fmt.Errorf("registry %s: %v (plain HTTP is allowed only for loopback registries and those given to the daemon's --insecure-registry): %w", host, rootCause(err), errdefs.ErrUnavailable)
	}
	return fmt.Errorf("registry %s: %w", host, err)
}

// rootCause drops the URL wrapping of an *url.Error.
func rootCause(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}
