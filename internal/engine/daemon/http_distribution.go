package daemon

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/distribution"
	"github.com/berth/berth/internal/engine/reference"
	"github.com/berth/berth/internal/errdefs"
	"github.com/berth/berth/internal/units"
)

// lazyStream starts a JSON progress stream with the first message, so
// that a failure before it (a missing image, bad credentials) is still
// answered with its status code, as dockerd does.
type lazyStream struct {
	w http.ResponseWriter
	s *streamJSON
}

func (l *lazyStream) send(m api.JSONMessage) {
	if l.s == nil {
		l.s = newStreamJSON(l.w)
	}
	l.s.send(m)
}

func (l *lazyStream) fail(err error) {
	if l.s == nil {
		writeError(l.w, err)
		return
	}
	l.s.fail(err)
}

// progressMessage renders a pull or push step as Docker's JSON message.
func progressMessage(p distribution.Progress) api.JSONMessage {
	if p.Aux != nil {
		return api.JSONMessage{ProgressDetail: &api.ProgressDetail{},
			Aux: api.PushResult{Tag: p.Aux.Tag, Digest: p.Aux.Digest, Size: p.Aux.Size}}
	}
	m := api.JSONMessage{ID: p.ID, Status: p.Status}
	if !p.Message {
		m.ProgressDetail = &api.ProgressDetail{Current: p.Current, Total: p.Total}
		if p.Total > 0 {
			m.Progress = progressBar(p.Current, p.Total)
		}
	}
	return m
}

// progressBar draws Docker's 50-column bar and byte counts:
// "[=====>      ]  1.05MB/2.1MB".
func progressBar(cur, total int64) string {
	n := int(cur * 50 / total)
	if n > 50 {
		n = 50
	}
	if n < 0 {
		n = 0
	}
	return fmt.Sprintf("[%s>%s] %8s/%s", strings.Repeat("=", n), strings.Repeat(" ", 50-n), units.HumanSize(cur), units.HumanSize(total))
}

// decodeBase64 decodes a header value clients encode as base64url,
// padded or not (and some as standard base64).
func decodeBase64(h string) ([]byte, error) {
	var b []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.URLEncoding, base64.RawURLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
		if b, err = enc.DecodeString(h); err == nil {
			return b, nil
		}
	}
	return nil, err
}

// registryAuth decodes the X-Registry-Auth header (base64url JSON; "e30="
// or absent means none).
func registryAuth(r *http.Request) (*api.AuthConfig, error) {
	h := strings.TrimSpace(r.Header.Get("X-Registry-Auth"))
	if h == "" {
		return nil, nil
	}
	b, err := decodeBase64(h)
	if err != nil {
		return nil, fmt.Errorf("invalid X-Registry-Auth header: not base64url: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	var a api.AuthConfig
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("invalid X-Registry-Auth header: expected base64url-encoded JSON credentials: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	return &a, nil
}

// postImagesPull is POST /images/create?fromImage=&tag=&platform=.
func (d *Daemon) postImagesPull(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ref := q.Get("fromImage")
	if tag := q.Get("tag"); tag != "" {
		if _, err := digest.Parse(tag); err == nil {
			ref += "@" + tag
		} else {
			ref += ":" + tag
		}
	}
	named, err := reference.Parse(ref)
	if err != nil {
		writeError(w, err)
		return
	}
	var platform *ocispec.Platform
	if p := q.Get("platform"); p != "" {
		pl, err := distribution.ParsePlatform(p)
		if err != nil {
			writeError(w, err)
			return
		}
		platform = &pl
	}
	auth, err := registryAuth(r)
	if err != nil {
		writeError(w, err)
		return
	}
	out := &lazyStream{w: w}
	if isPauseImage(named.String()) {
		// Built in: made from the engine's own shim, never pulled.
		img, err := d.ensurePauseImage()
		if err != nil {
			out.fail(err)
			return
		}
		out.send(api.JSONMessage{Status: "Status: Image is up to date for " + PauseImage})
		d.log.Debug("pull of the built-in pause image", "id", img.ID)
		return
	}
	img, err := d.dist.Pull(r.Context(), ref, distribution.PullOptions{Platform: platform, Auth: auth,
		Progress: func(p distribution.Progress) { out.send(progressMessage(p)) }})
	if err != nil {
		d.log.Info("pull failed", "image", ref, "err", err)
		out.fail(err)
		return
	}
	d.events.publish("image", "pull", named.FamiliarString(), map[string]string{"name": named.FamiliarName()})
	d.log.Info("pulled image", "image", named.String(), "id", img.ID)
}

// postImagePush is POST /images/{name}/push?tag=.
func (d *Daemon) postImagePush(w http.ResponseWriter, r *http.Request, name string) {
	ref := name
	if tag := r.URL.Query().Get("tag"); tag != "" {
		ref += ":" + tag
	}
	named, err := reference.ParseNamed(ref)
	if err != nil {
		writeError(w, err)
		return
	}
	auth, err := registryAuth(r)
	if err != nil {
		writeError(w, err)
		return
	}
	out := &lazyStream{w: w}
	res, err := d.dist.Push(r.Context(), ref, distribution.PushOptions{Auth: auth,
		Progress: func(p distribution.Progress) { out.send(progressMessage(p)) }})
	for _, x := range res {
		t, _ := named.WithTag(x.Tag)
		d.events.publish("image", "push", t.FamiliarString(), map[string]string{"name": named.FamiliarName()})
	}
	if err != nil {
		d.log.Info("push failed", "image", ref, "err", err)
		out.fail(err)
	}
}

// postAuth is POST /auth: check credentials against a registry.
func (d *Daemon) postAuth(w http.ResponseWriter, r *http.Request) {
	var a api.AuthConfig
	if err := decodeBody(r, &a); err != nil {
		writeError(w, err)
		return
	}
	token, err := d.dist.Login(r.Context(), a)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSONResponse(w, http.StatusOK, api.AuthResponse{Status: "Login Succeeded", IdentityToken: token})
}
