package monitor

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/internal/engine/shim/wire"
)

// TestEncodeResponseMatchesWire decodes the monitor's answers with
// encoding/json into wire's types, as the daemon does.
func TestEncodeResponseMatchesWire(t *testing.T) {
	at := time.Date(2026, 11, 23, 19, 0, 0, 123456789, time.UTC)
	for _, tc := range []struct {
		in   response
		want wire.Response
	}{
		{response{}, wire.Response{}},
		{response{err: "crun: \"quoted\"\n\ttab \x01 <html> & \xff bad utf8 ☃ \u2028"}, wire.Response{Error: "crun: \"quoted\"\n\ttab \x01 <html> & \ufffd bad utf8 ☃ \u2028"}},
		{response{pid: 42, status: "running", tty: true}, wire.Response{Pid: 42, Status: "running", Tty: true}},
		{response{status: "exited", exit: &exitStatus{code: 137, sec: at.Unix(), nsec: int32(at.Nanosecond()), oom: true}},
			wire.Response{Status: "exited", Exit: &wire.ExitStatus{ExitCode: 137, ExitedAt: at, OOMKilled: true}}},
		{response{exit: &exitStatus{code: 0, sec: at.Unix()}}, wire.Response{Exit: &wire.ExitStatus{ExitedAt: at.Truncate(time.Second)}}},
	} {
		got := encodeResponse(tc.in)
		if !strings.HasSuffix(string(got), "}\n") {
			t.Errorf("encodeResponse(%+v) = %q: not one line", tc.in, got)
		}
		var back wire.Response
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("encodeResponse(%+v) = %s: not JSON: %v", tc.in, got, err)
		}
		if back.Error != tc.want.Error || back.Pid != tc.want.Pid || back.Status != tc.want.Status || back.Tty != tc.want.Tty ||
			(back.Exit == nil) != (tc.want.Exit == nil) ||
			(back.Exit != nil && (back.Exit.ExitCode != tc.want.Exit.ExitCode || !back.Exit.ExitedAt.Equal(tc.want.Exit.ExitedAt) || back.Exit.OOMKilled != tc.want.Exit.OOMKilled)) {
			t.Errorf("round trip of %s: got %+v (exit %+v), want %+v (exit %+v)", got, back, back.Exit, tc.want, tc.want.Exit)
		}
		// encoding/json escapes the same way.
		if tc.in.err != "" {
			want, _ := json.Marshal(tc.in.err)
			if !strings.Contains(string(got), string(want)) {
				t.Errorf("error escaped as %s, encoding/json says %s", got, want)
			}
		}
	}
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		in      string
		want    request
		wantErr bool
	}{
		{`{"cmd":"start"}`, request{cmd: "start"}, false},
		{`{"cmd":"attach","stdin":true,"stdout":true,"stderr":false}` + "\n", request{cmd: "attach", stdin: true, stdout: true}, false},
		{` { "cmd" : "resize", "height": 40, "width": 120, "extra": [1, {"a": null}, "x\"y"] } `, request{cmd: "resize", height: 40, width: 120}, false},
		{`{"cmd":"\u0077ait"}`, request{cmd: "wait"}, false},
		{`{"cmd":null,"stdin":null}`, request{}, false},
		{`{"cmd":"start"`, request{}, true},
		{`["cmd"]`, request{}, true},
		{`{"cmd":"x",}`, request{}, true},
		{`{"cmd":"x"} x`, request{}, true},
		{`{"height":70000}`, request{}, true},
		{`{"height":1.5}`, request{}, true},
		{`{"stdin":"yes"}`, request{}, true},
		{`{"x":"\q"}`, request{}, true},
		{``, request{}, true},
	}
	for _, tt := range tests {
		got, err := parseRequest([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseRequest(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// FuzzParseRequest checks the monitor's request reader against
// encoding/json: whatever it accepts must be valid JSON that decodes to the
// same request.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{`{"cmd":"start"}`, `{"cmd":"attach","stdin":true,"x":[1,2,{"a":"\ud83d\ude00"}]}`, `{"cmd":"x\\y"}`, `{"height":-1.5e3}`, `{"a":`, `nul`, `{"a":[[[[[]]]]]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRequest(b)
		if err != nil {
			return
		}
		var want wire.Request
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("parseRequest accepted %q, which encoding/json rejects: %v", b, err)
		}
		// encoding/json also matches keys case-insensitively; the monitor
		// matches them exactly (the daemon writes them).
		var fields map[string]json.RawMessage
		json.Unmarshal(b, &fields)
		for k := range fields {
			for _, name := range []string{"cmd", "stdin", "stdout", "stderr", "height", "width"} {
				if k != name && strings.EqualFold(k, name) || k != name && strings.EqualFold(strings.ToLower(k), name) {
					t.Skip("case-folded key")
				}
			}
		}
		got := wire.Request{Cmd: r.cmd, Stdin: r.stdin, Stdout: r.stdout, Stderr: r.stderr, Height: r.height, Width: r.width}
		if got != want {
			t.Fatalf("parseRequest(%q) = %+v, encoding/json says %+v", b, got, want)
		}
	})
}

func TestParseFlags(t *testing.T) {
	c, err := parseFlags([]string{"--id", "c1", "--bundle=/b", "--runtime", "/usr/bin/crun", "--runtime-root", "/run/r",
		"--log", "/b/log", "--log-max-size", "100", "--log-max-files", "2", "--tty", "--stdin=false", "--cgroup", "/berth/c1"})
	if err != nil {
		t.Fatal(err)
	}
	want := config{id: "c1", bundle: "/b", runtime: "/usr/bin/crun", runtimeRoot: "/run/r", logPath: "/b/log", logMaxSize: 100, logMaxFiles: 2, tty: true, cgroupsPath: "/berth/c1"}
	if c != want {
		t.Errorf("got %+v, want %+v", c, want)
	}
	for _, bad := range [][]string{
		{"--id", "c1"},
		{"--id", "c1", "--bundle", "/b", "--runtime", "r", "--runtime-root", "x", "--bogus", "1"},
		{"--id", "c1", "--bundle", "/b", "--runtime", "r", "--runtime-root", "x", "--log-max-size", "ten"},
		{"--id", "c1", "--bundle", "/b", "--runtime", "r", "--runtime-root", "x", "--log-max-size", "-5"},
		{"--id", "c1", "--bundle", "/b", "--runtime", "r", "--runtime-root", "x", "--exec-id", "e"},
		{"stray"},
		{"--id"},
	} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("parseFlags(%q) succeeded, want an error", bad)
		}
	}
}

// TestConstantsMatchWire keeps the monitor's constants in step with
// wire's, which the daemon uses.
func TestConstantsMatchWire(t *testing.T) {
	if stCreated != wire.StatusCreated || stRunning != wire.StatusRunning || stExited != wire.StatusExited || streamStdout != wire.StreamStdout || streamStderr != wire.StreamStderr {
		t.Error("status or stream constants differ from wire's")
	}
}

func TestOOMKillsAndPidFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := dir + "/" + name
		if err := writeFileAtomic(p, []byte(s)); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if pid, err := readPid(write("ok.pid", "1234\n")); err != nil || pid != 1234 {
		t.Errorf("readPid = %d, %v", pid, err)
	}
	for _, bad := range []string{"", "0", "abc", "-5", "99999999999"} {
		if _, err := readPid(write("bad.pid", bad)); err == nil {
			t.Errorf("readPid(%q) succeeded", bad)
		}
	}
	if _, err := readPid(dir + "/missing.pid"); err == nil || !strings.Contains(err.Error(), "runtime wrote no pid file") {
		t.Errorf("missing pid file: %v", err)
	}
	if args := Args(); len(args) == 0 || !strings.HasSuffix(args[0], ".test") {
		t.Errorf("Args() = %q", args)
	}
}
