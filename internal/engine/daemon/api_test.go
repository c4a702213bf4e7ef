package daemon

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/image"
	"github.com/berth/berth/internal/errdefs"
)

// TestBadRequests: malformed bodies, fields of the wrong type and bad
// parameters get Docker's 400 with a JSON message naming the problem,
// before any store is touched (the daemon here has none), never a 500.
func TestBadRequests(t *testing.T) {
	h := (&Daemon{}).router()
	for _, tc := range []struct {
		method, path, body string
		want               string // in the message
	}{
		{"POST", "/v1.45/containers/create", `{"Image": "busybox",`, "invalid JSON body"},
		{"POST", "/v1.45/containers/create", `{"Image": 5}`, "Image"},
		{"POST", "/containers/create", `{"Image":"b","HostConfig":{"Memory":"lots"}}`, "Memory"},
		{"POST", "/containers/create", `{"Image":"b","HostConfig":{"PortBindings":{"80/tcp":"8080"}}}`, "PortBindings"},
		{"POST", "/containers/create", `{"Image":"b","Cmd":"echo hi"}`, "Cmd"},
		{"POST", "/containers/create", `[]`, "invalid JSON body"},
		{"POST", "/containers/abc/update", `{"Memory": true}`, "Memory"},
		{"POST", "/containers/abc/update", `{"RestartPolicy": "always"}`, "RestartPolicy"},
		{"POST", "/containers/abc/exec", `{"Cmd": [1, 2]}`, "Cmd"},
		{"POST", "/exec/abc/start", `{"Detach": "yes"}`, "Detach"},
		{"POST", "/networks/create", `{"Name": ["x"]}`, "Name"},
		{"POST", "/networks/abc/connect", `{"Container": {}}`, "Container"},
		{"POST", "/volumes/create", `{"Labels": ["a=b"]}`, "Labels"},
		{"GET", "/containers/json?filters=%7Bnot-json", "", "invalid filters"},
		{"GET", "/containers/json?filters=%7B%22bogus%22%3A%7B%22x%22%3Atrue%7D%7D", "", "invalid filter 'bogus'"},
		{"GET", "/containers/json?limit=many", "", "limit"},
		{"GET", "/events?filters=%7B%22nope%22%3A%5B%22x%22%5D%7D", "", "invalid filter 'nope'"},
		{"GET", "/events?since=yesterday", "", "invalid time"},
		{"GET", "/v1.12/version", "", "too old"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			h.ServeHTTP(rec, req)
			var body api.ErrorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("status %d, body %q is not Docker's JSON error", rec.Code, rec.Body)
			}
			if rec.Code != http.StatusBadRequest || !strings.Contains(body.Message, tc.want) {
				t.Errorf("got %d %q, want 400 with a message containing %q", rec.Code, body.Message, tc.want)
			}
		})
	}
	// Unknown routes answer Docker's JSON 404.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1.45/swarm", nil))
	if rec.Code != 404 || !strings.HasPrefix(rec.Body.String(), `{"message":"page not found`) {
		t.Errorf("unknown route: %d %s", rec.Code, rec.Body)
	}
}

func TestMergeUpdate(t *testing.T) {
	d := &Daemon{}
	pids := int64(20)
	base := api.HostConfig{Resources: api.Resources{Memory: 64 << 20, MemorySwap: 128 << 20, PidsLimit: &pids}}
	for _, tc := range []struct {
		name string
		old  api.HostConfig
		u    api.UpdateConfig
		ok   bool
		chk  func(api.HostConfig) bool
	}{
		{"memory within swap", base, api.UpdateConfig{Resources: api.Resources{Memory: 100 << 20}}, true,
			func(h api.HostConfig) bool {
				return h.Memory == 100<<20 && h.MemorySwap == 128<<20 && *h.PidsLimit == 20
			}},
		{"memory above swap", base, api.UpdateConfig{Resources: api.Resources{Memory: 200 << 20}}, false, nil},
		{"both", base, api.UpdateConfig{Resources: api.Resources{Memory: 200 << 20, MemorySwap: 400 << 20}}, true,
			func(h api.HostConfig) bool { return h.Memory == 200<<20 }},
		{"pids unlimited", base, api.UpdateConfig{Resources: api.Resources{PidsLimit: new(int64)}}, true,
			func(h api.HostConfig) bool { return *h.PidsLimit == -1 }},
		{"cpus", api.HostConfig{}, api.UpdateConfig{Resources: api.Resources{NanoCPUs: 5e8}}, true,
			func(h api.HostConfig) bool { return h.NanoCPUs == 5e8 }},
		{"cpus with quota", api.HostConfig{Resources: api.Resources{CPUQuota: 50000}}, api.UpdateConfig{Resources: api.Resources{NanoCPUs: 5e8}}, false, nil},
		{"tiny memory", api.HostConfig{}, api.UpdateConfig{Resources: api.Resources{Memory: 1024}}, false, nil},
		{"restart policy", api.HostConfig{}, api.UpdateConfig{RestartPolicy: api.RestartPolicy{Name: "always"}}, true,
			func(h api.HostConfig) bool { return h.RestartPolicy.Name == "always" }},
		{"restart with autoremove", api.HostConfig{AutoRemove: true}, api.UpdateConfig{RestartPolicy: api.RestartPolicy{Name: "always"}}, false, nil},
		{"bad policy", api.HostConfig{}, api.UpdateConfig{RestartPolicy: api.RestartPolicy{Name: "sometimes"}}, false, nil},
		{"bad cpuset", api.HostConfig{}, api.UpdateConfig{Resources: api.Resources{CpusetCpus: "0-x"}}, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hc, res, err := d.mergeUpdate(tc.old, tc.u)
			if (err == nil) != tc.ok {
				t.Fatalf("got %v, want ok=%v", err, tc.ok)
			}
			if err != nil {
				if !errdefs.Is(err, errdefs.ErrInvalidArgument) {
					t.Errorf("error class of %v: want invalid argument", err)
				}
				return
			}
			if res == nil || (tc.chk != nil && !tc.chk(hc)) {
				t.Errorf("got %+v (resources %+v)", hc.Resources, res)
			}
		})
	}
}

func TestContainerFilters(t *testing.T) {
	for _, tc := range []struct {
		filter string
		event  Event
		want   bool
	}{
		{`{"type":["container"],"label":["com.docker.compose.project=p"]}`,
			Event{Type: "container", Action: "start", Actor: Actor{ID: "abc", Attributes: map[string]string{"com.docker.compose.project": "p", "name": "x"}}}, true},
		{`{"label":["com.docker.compose.project=p"]}`,
			Event{Type: "container", Action: "start", Actor: Actor{ID: "abc", Attributes: map[string]string{"name": "x"}}}, false},
		{`{"event":["exec_start"]}`, Event{Type: "container", Action: "exec_start: sh -c true"}, true},
		{`{"image":["busybox"]}`, Event{Type: "container", Action: "create", Actor: Actor{Attributes: map[string]string{"image": "busybox:latest"}}}, true},
		{`{"image":["busybox:1"]}`, Event{Type: "container", Action: "create", Actor: Actor{Attributes: map[string]string{"image": "busybox:latest"}}}, false},
		{`{"network":["n1"]}`, Event{Type: "network", Action: "create", Actor: Actor{ID: "0123", Attributes: map[string]string{"name": "n1"}}}, true},
		{`{"network":["n1"]}`, Event{Type: "container", Action: "create", Actor: Actor{ID: "0123", Attributes: map[string]string{"name": "n1"}}}, false},
		{`{"volume":["v"]}`, Event{Type: "volume", Action: "create", Actor: Actor{ID: "v"}}, true},
		{`{"container":["web"]}`, Event{Type: "container", Action: "die", Actor: Actor{ID: "f00", Attributes: map[string]string{"name": "web"}}}, true},
	} {
		f, err := parseFilters(tc.filter)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.matchEvent(tc.event); got != tc.want {
			t.Errorf("%s matches %+v: got %v, want %v", tc.filter, tc.event, got, tc.want)
		}
	}
	if !sameImageRef("docker.io/library/busybox", "busybox:latest") || sameImageRef("a", "b") {
		t.Error("sameImageRef")
	}
	if got := summaryCommand("sh", []string{"-c", "echo hi"}); got != "sh -c 'echo hi'" {
		t.Errorf("summaryCommand = %q", got)
	}
}

// FuzzRequestDecoders feeds arbitrary bytes to the request decoders and the
// checks that follow them: they may refuse input, always with an
// invalid-argument error, and never panic.
func FuzzRequestDecoders(f *testing.F) {
	for _, s := range []string{
		`{"Image":"busybox","Cmd":["sh"],"HostConfig":{"Memory":67108864,"Binds":["v:/d:ro"],"Mounts":[{"Type":"tmpfs","Target":"/t"}],"Tmpfs":{"/x":"size=1m"},"RestartPolicy":{"Name":"on-failure","MaximumRetryCount":2}}}`,
		`{"Memory":1,"NanoCpus":-5,"PidsLimit":0,"CpusetCpus":"0-1,3","RestartPolicy":{"Name":"always"}}`,
		`{"HostConfig":{"Binds":["/a:/b:rw,z"],"Mounts":[{"Type":"bind","Source":"/","Target":"/h","BindOptions":{"Propagation":"rshared"}}]}}`,
		`{"label":{"a=b":true},"status":["running"]}`,
		`null`, `{}`, `[`, `{"Image":1e400}`,
	} {
		f.Add([]byte(s))
	}
	d := &Daemon{}
	img := &image.Image{Config: ocispec.Image{Config: ocispec.ImageConfig{Cmd: []string{"sh"}}}}
	invalid := func(t *testing.T, what string, err error) {
		if err != nil && !errdefs.Is(err, errdefs.ErrInvalidArgument) && !errdefs.Is(err, errdefs.ErrNotImplemented) {
			t.Errorf("%s: error %v is not invalid-argument", what, err)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		decode := func(v any) error {
			req := httptest.NewRequest("POST", "/", bytes.NewReader(data))
			return decodeBody(req, v)
		}
		var cr api.CreateRequest
		if err := decode(&cr); err == nil {
			hc := api.HostConfig{}
			if cr.HostConfig != nil {
				hc = *cr.HostConfig
			}
			invalid(t, "validateHostConfig", d.validateHostConfig(&hc))
			_, err := mountSpecs(hc)
			invalid(t, "mountSpecs", err)
			_, _, err = parseLogOpts(hc.LogConfig.Config, 0, 0)
			invalid(t, "parseLogOpts", err)
			mergeImageConfig(cr.Config, img)
		} else {
			invalid(t, "decode create", err)
		}
		var u api.UpdateConfig
		if err := decode(&u); err == nil {
			_, _, err := d.mergeUpdate(api.HostConfig{}, u)
			invalid(t, "mergeUpdate", err)
		}
		for _, v := range []any{&api.ExecConfig{}, &api.ExecStartConfig{}, &api.NetworkCreateRequest{}, &api.NetworkConnectRequest{}, &api.VolumeCreateRequest{}} {
			invalid(t, "decode", decode(v))
		}
		fl, err := parseFilters(string(data))
		invalid(t, "parseFilters", err)
		if err == nil {
			invalid(t, "validate", fl.validate(containerFilters...))
			fl.matchEvent(Event{Type: "container", Action: "start", Actor: Actor{ID: "x", Attributes: map[string]string{"name": "n", "image": "i"}}})
			fl.matchLabels("label", map[string]string{"a": "b"})
			for _, v := range fl["publish"] {
				matchPort(v, nil)
			}
		}
		if _, err := parseTimeParam(string(data)); err != nil {
			invalid(t, "parseTimeParam", err)
		}
	})
}

func TestParsePS(t *testing.T) {
	out := "USER  PID %CPU COMMAND\nroot    1  0.0 /sbin/init splash\nroot   42  1.5 sleep 100\nroot   43  0.0 other\n"
	got, err := parsePS(out, []int{42})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Processes) != 1 || strings.Join(got.Processes[0], "|") != "root|42|1.5|sleep 100" || len(got.Titles) != 4 {
		t.Errorf("parsePS = %+v", got)
	}
	if _, err := parsePS("USER COMMAND\nroot x\n", []int{1}); !errdefs.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("no PID column: got %v", err)
	}
}

func TestHijackedOutputDelay(t *testing.T) {
	for ua, delayed := range map[string]bool{
		"docker-sdk-python/7.1.0":                         true,
		"docker-compose/1.29.2 docker-py/5.0.3 Linux/6.1": true,
		"Docker-Client/28.2.2 (linux)":                    false,
		"":                                                false,
	} {
		r := httptest.NewRequest("POST", "/exec/x/start", nil)
		r.Header.Set("User-Agent", ua)
		var buf bytes.Buffer
		w := hijackedOutput(&buf, r)
		_, isDelayed := w.(*delayedWriter)
		if isDelayed != delayed {
			t.Errorf("User-Agent %q: delayed %v, want %v", ua, isDelayed, delayed)
		}
	}
}
