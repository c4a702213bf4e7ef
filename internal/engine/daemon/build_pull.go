package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/distribution"
	"github.com/berth/berth/internal/engine/image"
	"github.com/berth/berth/internal/engine/reference"
	"github.com/berth/berth/internal/errdefs"
)

// buildPuller lets a build pull the base images it does not have, with the
// credentials the client sent for the image's registry.
type buildPuller struct{ d *Daemon }

type buildAuthKey struct{}

// withBuildAuth returns ctx carrying the registry credentials of a /build
// request: X-Registry-Config, base64 JSON of registry address → AuthConfig,
// as the docker CLI sends it.
func withBuildAuth(ctx context.Context, r *http.Request) (context.Context, error) {
	h := strings.TrimSpace(r.Header.Get("X-Registry-Config"))
	if h == "" {
		return ctx, nil
	}
	b, err := decodeBase64(h)
	if err != nil {
		return ctx, fmt.Errorf("invalid X-Registry-Config header: not base64: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	var auths map[string]api.AuthConfig
	if err := json.Unmarshal(b, &auths); err != nil {
		return ctx, fmt.Errorf("invalid X-Registry-Config header: expected a JSON object of registry credentials: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	return context.WithValue(ctx, buildAuthKey{}, auths), nil
}

// authFor picks the credentials for domain from what the client sent,
// keyed as Docker's config.json keys them (Docker Hub's by its v1 URL).
func authFor(ctx context.Context, domain string) *api.AuthConfig {
	auths, _ := ctx.Value(buildAuthKey{}).(map[string]api.AuthConfig)
	for k, a := range auths {
		host := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(k, "https://"), "http://"), "/")
		host, _, _ = strings.Cut(host, "/")
		if host == "index.docker.io" {
			host = "docker.io"
		}
		if host == domain {
			return &a
		}
	}
	return nil
}

// Pull pulls ref, writing one plain line per step to progress (no byte
// counts: the build output is a log).
func (p buildPuller) Pull(ctx context.Context, ref string, progress io.Writer) (*image.Image, error) {
	named, err := reference.Parse(ref)
	if err != nil {
		return nil, err
	}
	img, err := p.d.dist.Pull(ctx, ref, distribution.PullOptions{Auth: authFor(ctx, named.Domain()),
		Progress: func(pr distribution.Progress) {
			if pr.Status == "Downloading" || pr.Status == "Extracting" {
				return
			}
			if pr.ID != "" {
				fmt.Fprintf(progress, "%s: %s\n", pr.ID, pr.Status)
			} else {
				fmt.Fprintln(progress, pr.Status)
			}
		}})
	if err != nil {
		return nil, err
	}
	p.d.events.publish("image", "pull", named.FamiliarString(), map[string]string{"name": named.FamiliarName()})
	return img, nil
}
