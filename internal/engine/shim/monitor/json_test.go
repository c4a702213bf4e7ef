package monitor

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/berth/berth/internal/engine/shim/wire"
)

func TestEncodeResponseMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 11, 23, 19, 0, 0, 123456789, time.UTC)
	for _, r := range []wire.Response{
		{},
		{Error: "crun: \"quoted\"\n\ttab \x01 <html> & \xff bad utf8 ☃"},
		{Pid: 42, Status: "running", Tty: true},
		{Status: "exited", Exit: &wire.ExitStatus{ExitCode: 137, ExitedAt: at, OOMKilled: true}},
	} {
		got := encodeResponse(r)
		var back wire.Response
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("encodeResponse(%+v) = %s: not JSON: %v", r, got, err)
		}
		want := r
		if want.Error != "" {
			// encoding/json also turns invalid UTF-8 into U+FFFD.
			b, _ := json.Marshal(want.Error)
			json.Unmarshal(b, &want.Error)
		}
		if !reflect.DeepEqual(back, want) {
			t.Errorf("round trip: got %+v, want %+v", back, want)
		}
	}
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		in      string
		want    wire.Request
		wantErr bool
	}{
		{`{"cmd":"start"}`, wire.Request{Cmd: "start"}, false},
		{`{"cmd":"attach","stdin":true,"stdout":true,"stderr":false}` + "\n", wire.Request{Cmd: "attach", Stdin: true, Stdout: true}, false},
		{` { "cmd" : "resize", "height": 40, "width": 120, "extra": [1, {"a": null}] } `, wire.Request{Cmd: "resize", Height: 40, Width: 120}, false},
		{`{"cmd":"\u0077ait"}`, wire.Request{Cmd: "wait"}, false},
		{`{"cmd":"start"`, wire.Request{}, true},
		{`["cmd"]`, wire.Request{}, true},
		{`{"cmd":"x",}`, wire.Request{}, true},
		{``, wire.Request{}, true},
	}
	for _, tt := range tests {
		got, err := parseRequest([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseRequest(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestCgroupsPathOf(t *testing.T) {
	cfg := `{"ociVersion":"1.1.0","process":{"args":["sh"],"env":["A=\"b\""]},"linux":{"resources":{"memory":{"limit":1e6}},"cgroupsPath":"/berth/c1"}}`
	if got := cgroupsPathOf([]byte(cfg)); got != "/berth/c1" {
		t.Errorf("got %q, want /berth/c1", got)
	}
	if got := cgroupsPathOf([]byte(`{"linux":{}}`)); got != "" {
		t.Errorf("got %q, want empty", got)
	}
}

// FuzzParseJSON checks the monitor's JSON reader against encoding/json:
// whatever it accepts must be valid JSON with the same value.
func FuzzParseJSON(f *testing.F) {
	for _, s := range []string{`{"cmd":"start"}`, `[1,2,{"a":"\ud83d\ude00"}]`, `"x\\y"`, `-1.5e3`, `{"a":`, `nul`, `[[[[[]]]]]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := parseJSON(b)
		if err != nil {
			return
		}
		var want any
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("parseJSON accepted %q, which encoding/json rejects: %v", b, err)
		}
		if !reflect.DeepEqual(normalize(v), normalize(want)) {
			t.Fatalf("parseJSON(%q) = %#v, encoding/json says %#v", b, v, want)
		}
	})
}

// normalize maps nil slices to empty ones for comparison.
func normalize(v any) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = normalize(x[i])
		}
		return out
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = normalize(e)
		}
		return out
	}
	return v
}

func TestParseFlags(t *testing.T) {
	c, err := parseFlags([]string{"--id", "c1", "--bundle=/b", "--runtime", "/usr/bin/crun", "--runtime-root", "/run/r",
		"--log", "/b/log", "--log-max-size", "100", "--log-max-files", "2", "--tty", "--stdin=false"})
	if err != nil {
		t.Fatal(err)
	}
	want := config{id: "c1", bundle: "/b", runtime: "/usr/bin/crun", runtimeRoot: "/run/r", logPath: "/b/log", logMaxSize: 100, logMaxFiles: 2, tty: true}
	if c != want {
		t.Errorf("got %+v, want %+v", c, want)
	}
	for _, bad := range [][]string{
		{"--id", "c1"},
		{"--id", "c1", "--bundle", "/b", "--runtime", "r", "--runtime-root", "x", "--bogus", "1"},
		{"--id", "c1", "--bundle", "/b", "--runtime", "r", "--runtime-root", "x", "--log-max-size", "ten"},
		{"--id", "c1", "--bundle", "/b", "--runtime", "r", "--runtime-root", "x", "--exec-id", "e"},
		{"stray"},
		{"--id"},
	} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("parseFlags(%q) succeeded, want an error", bad)
		}
	}
}
