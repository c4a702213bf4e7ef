package daemon

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/berth/berth/internal/engine/distribution"
	"github.com/berth/berth/internal/errdefs"
)

func TestProgressMessageShape(t *testing.T) {
	for _, tc := range []struct {
		p    distribution.Progress
		want string
	}{
		{distribution.Progress{ID: "latest", Status: "Pulling from library/busybox", Message: true},
			`{"status":"Pulling from library/busybox","id":"latest"}`},
		{distribution.Progress{ID: "abc123def456", Status: "Pulling fs layer"},
			`{"status":"Pulling fs layer","progressDetail":{},"id":"abc123def456"}`},
		{distribution.Progress{ID: "abc123def456", Status: "Downloading", Current: 1000, Total: 4000},
			`{"status":"Downloading","progressDetail":{"current":1000,"total":4000},"id":"abc123def456","progress":"[============\u003e                                      ]      1kB/4kB"}`},
		{distribution.Progress{Aux: &distribution.PushResult{Tag: "v1", Digest: "sha256:x", Size: 527}},
			`{"progressDetail":{},"aux":{"Tag":"v1","Digest":"sha256:x","Size":527}}`},
	} {
		b, _ := json.Marshal(progressMessage(tc.p))
		if string(b) != tc.want {
			t.Errorf("progressMessage(%+v) =\n %s\nwant\n %s", tc.p, b, tc.want)
		}
	}
}

func TestRegistryAuthHeader(t *testing.T) {
	for h, want := range map[string]string{
		"":     "",
		"e30=": "",
		// {"username":"a?b","password":"p>q"} in base64url, with and without padding
		"eyJ1c2VybmFtZSI6ImE_YiIsInBhc3N3b3JkIjoicD5xIn0=": "a?b:p>q",
		"eyJ1c2VybmFtZSI6ImE_YiIsInBhc3N3b3JkIjoicD5xIn0":  "a?b:p>q",
	} {
		r := httptest.NewRequest(http.MethodPost, "/images/create", nil)
		r.Header.Set("X-Registry-Auth", h)
		a, err := registryAuth(r)
		if err != nil {
			t.Errorf("registryAuth(%q): %v", h, err)
			continue
		}
		got := ""
		if a != nil && a.Username != "" {
			got = a.Username + ":" + a.Password
		}
		if got != want {
			t.Errorf("registryAuth(%q) = %q, want %q", h, got, want)
		}
	}
	r := httptest.NewRequest(http.MethodPost, "/images/create", nil)
	r.Header.Set("X-Registry-Auth", "bm90IGpzb24=") // "not json"
	if _, err := registryAuth(r); !errdefs.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "X-Registry-Auth") {
		t.Errorf("invalid header: %v", err)
	}
}

// A failure before the first progress line keeps its status code; one
// after it becomes an errorDetail line.
func TestLazyStream(t *testing.T) {
	w := httptest.NewRecorder()
	(&lazyStream{w: w}).fail(errdefsNotFound("manifest for x:y not found: manifest unknown"))
	if w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), `"message":"manifest for x:y not found: manifest unknown"`) {
		t.Errorf("early failure: %d %s", w.Code, w.Body)
	}
	w = httptest.NewRecorder()
	l := &lazyStream{w: w}
	l.send(progressMessage(distribution.Progress{ID: "v1", Status: "Pulling from x", Message: true}))
	l.fail(errdefsNotFound("layer gone"))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"errorDetail":{"message":"layer gone"`) {
		t.Errorf("late failure: %d %s", w.Code, w.Body)
	}
}

func errdefsNotFound(msg string) error { return &classErr{msg} }

type classErr struct{ msg string }

func (e *classErr) Error() string { return e.msg }
func (e *classErr) Unwrap() error { return errdefs.ErrNotFound }
