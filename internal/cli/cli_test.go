package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/berth/berth/internal/engine/api"
)

func TestRequestFromFlags(t *testing.T) {
	g := &globals{}
	for _, tc := range []struct {
		name  string
		args  []string
		check func(t *testing.T, r api.CreateRequest)
		bad   string
	}{
		{name: "resources", args: []string{"-m", "64m", "--cpus", "0.5", "--pids-limit", "10", "--read-only"},
			check: func(t *testing.T, r api.CreateRequest) {
				hc := r.HostConfig
				if hc.Memory != 64<<20 || hc.NanoCPUs != 5e8 || hc.PidsLimit == nil || *hc.PidsLimit != 10 || !hc.ReadonlyRootfs {
					t.Errorf("resources: %+v", hc.Resources)
				}
			}},
		{name: "restart", args: []string{"--restart", "on-failure:3"},
			check: func(t *testing.T, r api.CreateRequest) {
				if r.HostConfig.RestartPolicy != (api.RestartPolicy{Name: "on-failure", MaximumRetryCount: 3}) {
					t.Errorf("restart: %+v", r.HostConfig.RestartPolicy)
				}
			}},
		{name: "entrypoint reset", args: []string{"--entrypoint", ""},
			check: func(t *testing.T, r api.CreateRequest) {
				if r.Entrypoint == nil || len(r.Entrypoint) != 0 {
					t.Errorf("--entrypoint \"\": got %#v, want an empty non-nil list", r.Entrypoint)
				}
			}},
		{name: "labels and env", args: []string{"-l", "a=b", "-e", "X=1", "--hostname", "h"},
			check: func(t *testing.T, r api.CreateRequest) {
				if !reflect.DeepEqual(r.Labels, map[string]string{"a": "b"}) || !reflect.DeepEqual(r.Env, []string{"X=1"}) || r.Hostname != "h" {
					t.Errorf("got labels %v env %v hostname %q", r.Labels, r.Env, r.Hostname)
				}
			}},
		{name: "bad memory", args: []string{"-m", "lots"}, bad: "lots"},
		{name: "bad restart", args: []string{"--restart", "always:3"}, bad: "always:3"},
		{name: "bad label", args: []string{"-l", "=x"}, bad: "=x"},
		{name: "bad log opt", args: []string{"--log-opt", "nokey"}, bad: "nokey"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := newCreateCmd(g)
			f := &createFlags{}
			cmd.ResetFlags()
			addCreateFlags(cmd.Flags(), f)
			if err := cmd.Flags().Parse(append(tc.args, "img")); err != nil {
				t.Fatal(err)
			}
			r, err := f.request(cmd.Flags(), "img", nil)
			if tc.bad != "" {
				if err == nil || !strings.Contains(err.Error(), tc.bad) {
					t.Fatalf("got %v, want an error naming %q", err, tc.bad)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, r)
		})
	}
}

func TestEnvFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "env")
	os.WriteFile(p, []byte("# comment\nA=1\n\nFROM_SHELL\nB=two words\n"), 0o644)
	t.Setenv("FROM_SHELL", "yes")
	env, err := readEnv([]string{p}, []string{"C=3", "UNSET_VAR_XYZ"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"A=1", "FROM_SHELL=yes", "B=two words", "C=3"}; !reflect.DeepEqual(env, want) {
		t.Errorf("got %q, want %q", env, want)
	}
	os.WriteFile(p, []byte("BAD NAME=1\n"), 0o644)
	if _, err := readEnv([]string{p}, nil); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("bad env file: %v", err)
	}
}

func TestRender(t *testing.T) {
	rows := []any{psRow{c: api.ContainerSummary{ID: strings.Repeat("a", 64), Names: []string{"/web"}, Image: "busybox", Status: "Up 1 second", Labels: map[string]string{"k": "v"}}, trunc: true}}
	var b bytes.Buffer
	if err := render(&b, "table {{.ID}}\t{{.Names}}", rows, map[string]string{"ID": "CONTAINER ID"}); err != nil {
		t.Fatal(err)
	}
	if want := "CONTAINER ID   NAMES\naaaaaaaaaaaa   web\n"; b.String() != want {
		t.Errorf("table: got %q, want %q", b.String(), want)
	}
	b.Reset()
	render(&b, `{{.Names}} {{.Label "k"}}`, rows, nil)
	if b.String() != "web v\n" {
		t.Errorf("template: got %q", b.String())
	}
	if err := render(&b, "{{.Nope", rows, nil); err == nil {
		t.Error("a malformed template was accepted")
	}
}

func TestFiltersJSON(t *testing.T) {
	s, err := filtersJSON([]string{"label=a=b", "status=exited"})
	if err != nil || s != `{"label":{"a=b":true},"status":{"exited":true}}` {
		t.Errorf("got %s %v", s, err)
	}
	if _, err := filtersJSON([]string{"novalue"}); err == nil {
		t.Error("filter without = accepted")
	}
}

// TestDaemonDebugFlag checks -D against an explicit other --log-level: the
// daemon refuses to start rather than pick one.
func TestDaemonDebugFlag(t *testing.T) {
	cmd := newDaemonCmd(&globals{})
	cmd.SetArgs([]string{"-D", "--log-level", "warn", "--root", t.TempDir()})
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	err := cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "--debug and --log-level warn contradict") {
		t.Fatalf("berth daemon -D --log-level warn: %v", err)
	}
	for _, name := range []string{"debug", "log-level"} {
		if f := cmd.Flags().Lookup(name); f == nil || f.Shorthand == "" {
			t.Errorf("--%s has no shorthand (dockerd has -D and -l)", name)
		}
	}
}

// TestUsageErrorHint: a usage error ends with the command's own help hint,
// one space between the words.
func TestUsageErrorHint(t *testing.T) {
	for args, want := range map[string]string{
		"cp x":                 "See 'berth cp --help'.",
		"container ls --bogus": "See 'berth container ls --help'.",
		"daemon --bogus":       "See 'berth daemon --help'.",
	} {
		var stderr bytes.Buffer
		code := run(&globals{out: &bytes.Buffer{}, err: &stderr, in: strings.NewReader("")}, strings.Fields(args))
		if code != 125 || !strings.HasSuffix(strings.TrimSpace(stderr.String()), want) {
			t.Errorf("berth %s: exit %d, stderr %q; want 125 and %q", args, code, stderr.String(), want)
		}
	}
}
