package daemon

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/container"
	"github.com/berth/berth/internal/engine/image"
	"github.com/berth/berth/internal/errdefs"
)

func TestMergeImageConfig(t *testing.T) {
	img := &image.Image{Config: ocispec.Image{Config: ocispec.ImageConfig{
		Entrypoint: []string{"/ep"}, Cmd: []string{"c1", "c2"}, Env: []string{"A=1", "B=2"},
		WorkingDir: "/w", User: "u", StopSignal: "SIGUSR1", Labels: map[string]string{"l": "img", "k": "img"},
	}}}
	for _, tc := range []struct {
		name string
		in   api.Config
		want api.Config
	}{
		{"image defaults", api.Config{},
			api.Config{Entrypoint: []string{"/ep"}, Cmd: []string{"c1", "c2"}, Env: []string{"A=1", "B=2", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
				WorkingDir: "/w", User: "u", StopSignal: "SIGUSR1", Labels: map[string]string{"l": "img", "k": "img"}}},
		{"cmd replaces cmd, keeps entrypoint", api.Config{Cmd: []string{"x"}, Env: []string{"B=3", "C=4", "PATH=/p"}, Labels: map[string]string{"k": "ctr"}},
			api.Config{Entrypoint: []string{"/ep"}, Cmd: []string{"x"}, Env: []string{"A=1", "B=3", "C=4", "PATH=/p"},
				WorkingDir: "/w", User: "u", StopSignal: "SIGUSR1", Labels: map[string]string{"l": "img", "k": "ctr"}}},
		{"entrypoint drops image cmd", api.Config{Entrypoint: []string{"/other"}, WorkingDir: "/x", User: "0"},
			api.Config{Entrypoint: []string{"/other"}, Env: []string{"A=1", "B=2", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
				WorkingDir: "/x", User: "0", StopSignal: "SIGUSR1", Labels: map[string]string{"l": "img", "k": "img"}}},
		{"empty entrypoint resets it", api.Config{Entrypoint: []string{}, Cmd: []string{"sh"}},
			api.Config{Cmd: []string{"sh"}, Env: []string{"A=1", "B=2", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
				WorkingDir: "/w", User: "u", StopSignal: "SIGUSR1", Labels: map[string]string{"l": "img", "k": "img"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := mergeImageConfig(tc.in, img)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestValidateHostConfig(t *testing.T) {
	d := &Daemon{}
	pids := int64(5)
	for _, tc := range []struct {
		name string
		hc   api.HostConfig
		ok   bool
	}{
		{"defaults", api.HostConfig{}, true},
		{"memory ok", api.HostConfig{Resources: api.Resources{Memory: 64 << 20}}, true},
		{"memory too small", api.HostConfig{Resources: api.Resources{Memory: 1 << 20}}, false},
		{"swap below memory", api.HostConfig{Resources: api.Resources{Memory: 64 << 20, MemorySwap: 32 << 20}}, false},
		{"cpus and quota", api.HostConfig{Resources: api.Resources{NanoCPUs: 5e8, CPUQuota: 1000}}, false},
		{"too many cpus", api.HostConfig{Resources: api.Resources{NanoCPUs: 1e15}}, false},
		{"pids", api.HostConfig{Resources: api.Resources{PidsLimit: &pids}}, true},
		{"on-failure:3", api.HostConfig{RestartPolicy: api.RestartPolicy{Name: "on-failure", MaximumRetryCount: 3}}, true},
		{"always with count", api.HostConfig{RestartPolicy: api.RestartPolicy{Name: "always", MaximumRetryCount: 3}}, false},
		{"unknown policy", api.HostConfig{RestartPolicy: api.RestartPolicy{Name: "sometimes"}}, false},
		{"autoremove with restart", api.HostConfig{AutoRemove: true, RestartPolicy: api.RestartPolicy{Name: "always"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hc := tc.hc
			err := d.validateHostConfig(&hc)
			if (err == nil) != tc.ok {
				t.Fatalf("got %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errdefs.Is(err, errdefs.ErrInvalidArgument) && !errdefs.Is(err, errdefs.ErrNotFound) {
				t.Errorf("error class: got %v, want invalid argument or not found", err)
			}
		})
	}
}

func TestRestartDelay(t *testing.T) {
	d := &Daemon{}
	l := &live{}
	now := time.Now()
	c := &container.Container{HostConfig: api.HostConfig{RestartPolicy: api.RestartPolicy{Name: "on-failure", MaximumRetryCount: 2}}}
	c.State = api.State{ExitCode: 1, StartedAt: now, FinishedAt: now.Add(time.Second)}
	var delays []time.Duration
	for i := 0; i < 3; i++ {
		dl, ok := d.restartDelay(c, l)
		if !ok {
			break
		}
		delays = append(delays, dl)
		c.RestartCount++
	}
	if want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}; !reflect.DeepEqual(delays, want) {
		t.Errorf("on-failure:2 delays: got %v, want %v", delays, want)
	}
	c.State.ExitCode = 0
	c.RestartCount = 0
	if _, ok := d.restartDelay(c, l); ok {
		t.Error("on-failure restarted a clean exit")
	}
	c.HostConfig.RestartPolicy = api.RestartPolicy{Name: "always"}
	l.backoff = 40 * time.Second
	if dl, _ := d.restartDelay(c, l); dl != backoffMax {
		t.Errorf("backoff cap: got %v, want %v", dl, backoffMax)
	}
	c.State.FinishedAt = now.Add(time.Minute)
	if dl, _ := d.restartDelay(c, l); dl != backoffMin {
		t.Errorf("backoff after a long run: got %v, want %v", dl, backoffMin)
	}
	c.ManuallyStopped = true
	if _, ok := d.restartDelay(c, l); ok {
		t.Error("always restarted a container the user stopped")
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{"SIGTERM": syscall.SIGTERM, "term": syscall.SIGTERM, "KILL": syscall.SIGKILL, "9": syscall.SIGKILL, "SIGRTMIN+1": 35} {
		if got, err := ParseSignal(in); err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "NOPE", "0", "65", "-1"} {
		if _, err := ParseSignal(in); !errdefs.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParseSignal(%q): got %v, want invalid argument", in, err)
		}
	}
}

func TestParseFilters(t *testing.T) {
	for _, in := range []string{`{"label":{"a=b":true},"status":{"running":true}}`, `{"label":["a=b"],"status":["running"]}`} {
		f, err := parseFilters(in)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(f["label"], []string{"a=b"}) || !reflect.DeepEqual(f["status"], []string{"running"}) {
			t.Errorf("parseFilters(%s) = %v", in, f)
		}
		if !f.matchLabels("label", map[string]string{"a": "b", "c": "d"}) || f.matchLabels("label", map[string]string{"a": "x"}) {
			t.Errorf("matchLabels wrong for %s", in)
		}
	}
	if _, err := parseFilters(`{"label":`); !errdefs.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("malformed filters: got %v", err)
	}
	f, _ := parseFilters(`{"bogus":{"x":true}}`)
	if err := f.validate(containerFilters...); err == nil {
		t.Error("unknown filter key accepted")
	}
}

func TestParseLogOpts(t *testing.T) {
	if s, n, err := parseLogOpts(map[string]string{"max-size": "1m", "max-file": "5"}, 0, 0); err != nil || s != 1<<20 || n != 5 {
		t.Errorf("got %d %d %v", s, n, err)
	}
	if s, n, _ := parseLogOpts(nil, 7, 2); s != 7 || n != 2 {
		t.Errorf("defaults: got %d %d", s, n)
	}
	for _, bad := range []map[string]string{{"max-size": "big"}, {"max-file": "0"}, {"mode": "x"}} {
		if _, _, err := parseLogOpts(bad, 0, 0); !errdefs.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("parseLogOpts(%v): got %v", bad, err)
		}
	}
}

func TestVersionPrefixAndErrors(t *testing.T) {
	h := versionPrefix(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/containers/json" {
			writeError(w, fmt.Errorf("No such thing %s: %w", r.URL.Path, errdefs.ErrNotFound))
			return
		}
		w.WriteHeader(200)
	}))
	for path, want := range map[string]int{"/v1.45/containers/json": 200, "/containers/json": 200, "/v1.41/containers/json": 200,
		"/v1.12/containers/json": 400, "/v1.45/other": 404} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != want {
			t.Errorf("%s: got %d, want %d", path, rec.Code, want)
		}
		if rec.Header().Get("Api-Version") != api.Version {
			t.Errorf("%s: no Api-Version header", path)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1.45/other", nil))
	if body := rec.Body.String(); body != "{\"message\":\"No such thing /other\",\"kind\":\"not-found\"}\n" {
		t.Errorf("error body: %s", body)
	}
	if got := errorMessage(fmt.Errorf("x %q: %w", "y", errdefs.ErrConflict)); got != `x "y"` {
		t.Errorf("errorMessage: %q", got)
	}
	if !errors.Is(fmt.Errorf("a: %w", errdefs.ErrCommandNotFound), errdefs.ErrCommandNotFound) || startErrorCode(fmt.Errorf("a: %w", errdefs.ErrCommandNotFound)) != 127 {
		t.Error("startErrorCode for a missing command is not 127")
	}
}
