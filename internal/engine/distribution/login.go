package distribution

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/reference"
	"github.com/berth/berth/internal/errdefs"
)

// RegistryHost turns a login server address ("https://index.docker.io/v1/",
// "docker.io", "http://127.0.0.1:5000/", "") into the registry domain as
// references name it ("docker.io", "127.0.0.1:5000").
func RegistryHost(server string) string {
	s := strings.TrimSpace(server)
	s = strings.TrimPrefix(strings.TrimPrefix(s, "https://"), "http://")
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	switch strings.ToLower(s) {
	case "", "docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return reference.DefaultDomain
	}
	return s
}

// Login checks auth's credentials against the registry at
// auth.ServerAddress (Docker Hub when empty): it authenticates (for a
// token-protected registry, a token is fetched with them) and expects
// GET /v2/ to answer 200. It returns the identity token the registry
// issued, if any. Bad credentials are errdefs.ErrUnauthorized.
func (c *Client) Login(ctx context.Context, auth api.AuthConfig) (string, error) {
	domain := RegistryHost(auth.ServerAddress)
	host := apiHost(domain)
	if auth.Username == "" && auth.Auth == "" && auth.IdentityToken == "" {
		return "", fmt.Errorf("login to %s: a username is required: %w", domain, errdefs.ErrInvalidArgument)
	}
	rt, err := c.roundTripper(ctx, host, &auth, nil)
	if err != nil {
		if errdefs.Is(err, errdefs.ErrUnauthorized) || errdefs.Is(err, errdefs.ErrForbidden) {
			return "", fmt.Errorf("login to %s failed: %w", domain, err)
		}
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/v2/", nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return "", c.explain(host, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		class := errdefs.ErrUnavailable
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			class = errdefs.ErrUnauthorized
		}
		return "", fmt.Errorf("login attempt to %s://%s/v2/ failed with status: %d %s: %w",
			resp.Request.URL.Scheme, host, resp.StatusCode, http.StatusText(resp.StatusCode), class)
	}
	return "", nil
}
