package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth/berth/internal/errdefs"
)

func TestLoadConfigFile(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "daemon.json")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var c Config
	if err := LoadConfigFile(write(`{"default-runtime": "runc", "log-opts": {"max-size": "1m"}, "pause": "/x/berth-pause"}`), &c); err != nil {
		t.Fatal(err)
	}
	if c.DefaultRuntime != "runc" || c.LogOpts["max-size"] != "1m" || c.PausePath != "/x/berth-pause" {
		t.Errorf("config %+v", c)
	}
	if err := LoadConfigFile(filepath.Join(dir, "missing.json"), &c); err != nil {
		t.Errorf("a missing file: %v, want the defaults", err)
	}
	for _, tc := range []struct{ in, want string }{
		{`{"defualt-runtime": "runc"}`, `unknown option "defualt-runtime"; berth daemon knows root, exec-root, socket, default-runtime`},
		{`{"storage-driver": "overlay2"}`, `unknown option "storage-driver"`},
		{`{"default-runtime": 3}`, `expected a JSON object`},
		{`{"root": "/a"} {"root": "/b"}`, `more than one JSON value`},
		{`[`, `expected a JSON object`},
	} {
		var c Config
		err := LoadConfigFile(write(tc.in), &c)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errdefs.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("LoadConfigFile(%s) = %v, want an invalid-argument error containing %q", tc.in, err, tc.want)
		}
	}
}
