package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/build"
	"github.com/berth/berth/internal/errdefs"
)

// buildStream is the /build reply: Docker's JSON message stream. The 200
// header goes out with the first message, so a build that fails before
// saying anything (a bad Dockerfile, a missing file) gets a real HTTP
// error status instead.
type buildStream struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	s       *streamJSON
	quiet   bool
	pending []byte // an incomplete UTF-8 sequence held for the next write
}

func (b *buildStream) start() *streamJSON {
	if b.s == nil {
		b.s = newStreamJSON(b.w)
	}
	return b.s
}

// Write sends step output as {"stream": …}. Quiet builds send none.
func (b *buildStream) Write(p []byte) (int, error) {
	if b.quiet {
		return len(p), nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	buf := append(b.pending, p...)
	b.pending = nil
	// Hold back a rune split across writes so JSON does not mangle it.
	cut := len(buf)
	for i := len(buf) - 1; i >= 0 && i >= len(buf)-utf8.UTFMax; i-- {
		if utf8.RuneStart(buf[i]) {
			if !utf8.FullRune(buf[i:]) {
				cut = i
			}
			break
		}
	}
	b.pending = append([]byte(nil), buf[cut:]...)
	if cut > 0 {
		b.start().send(api.JSONMessage{Stream: string(buf[:cut])})
	}
	return len(p), nil
}

// Aux sends the built image's ID, before "Successfully built".
func (b *buildStream) Aux(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.start().send(api.JSONMessage{Aux: map[string]string{"ID": id}})
}

func (b *buildStream) fail(err error, quiet bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	msg := errorMessage(err)
	detail := &api.ErrorDetail{Message: msg, Kind: errdefs.Kind(err)}
	var be *build.Error
	if errors.As(err, &be) {
		detail.Code = be.Code
		if quiet && be.Output != "" {
			msg += "\n" + be.Output
			detail.Message = msg
		}
	}
	if b.s == nil && !b.quiet {
		writeError(b.w, err)
		return
	}
	b.start().send(api.JSONMessage{Error: msg, ErrorDetail: detail})
}

// postBuild is Docker's legacy builder API: the body is the context as a
// tar (plain or gzip), the query the build's options.
func (d *Daemon) postBuild(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("remote") != "" {
		writeError(w, fmt.Errorf("remote build contexts (%s) are not supported: send the context as a tar body (berth build DIR): %w", q.Get("remote"), errdefs.ErrNotImplemented))
		return
	}
	opts := build.Options{
		Dockerfile: q.Get("dockerfile"), Target: q.Get("target"), NoCache: boolParam(r, "nocache"),
		Pull: boolParam(r, "pull"), Quiet: boolParam(r, "q"), Network: q.Get("networkmode"), Platform: q.Get("platform"),
	}
	for _, t := range q["t"] {
		if t = strings.TrimSpace(t); t != "" {
			opts.Tags = append(opts.Tags, t)
		}
	}
	if s := q.Get("buildargs"); s != "" {
		if err := json.Unmarshal([]byte(s), &opts.BuildArgs); err != nil {
			writeError(w, fmt.Errorf("invalid buildargs %q: want a JSON object of strings: %w", s, errdefs.ErrInvalidArgument))
			return
		}
	}
	if s := q.Get("labels"); s != "" {
		if err := json.Unmarshal([]byte(s), &opts.Labels); err != nil {
			writeError(w, fmt.Errorf("invalid labels %q: want a JSON object of strings: %w", s, errdefs.ErrInvalidArgument))
			return
		}
	}
	bc, err := build.ReadContext(r.Body, d.images.TmpDir(), opts.Dockerfile)
	if err != nil {
		writeError(w, err)
		return
	}
	defer bc.Close()
	ctx, err := withBuildAuth(r.Context(), r)
	if err != nil {
		writeError(w, err)
		return
	}
	out := &buildStream{w: w, quiet: opts.Quiet}
	res, err := d.builder.Build(ctx, bc, opts, out)
	if err != nil {
		if r.Context().Err() != nil {
			d.log.Info("build cancelled: the client went away")
			return
		}
		out.fail(err, opts.Quiet)
		return
	}
	if opts.Quiet {
		out.mu.Lock()
		out.start().send(api.JSONMessage{Stream: res.ID + "\n"})
		out.mu.Unlock()
	}
	for _, t := range res.Tags {
		d.events.publish("image", "tag", res.ID, map[string]string{"name": t})
	}
}

// postBuildPrune drops the build cache (Docker's POST /build/prune).
func (d *Daemon) postBuildPrune(w http.ResponseWriter, r *http.Request) {
	n, freed, err := d.builder.Prune()
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSONResponse(w, 200, map[string]any{"CachesDeleted": []string{}, "SpaceReclaimed": freed, "Count": n})
}
