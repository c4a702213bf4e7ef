package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth/berth/internal/errdefs"
)

func TestDisplayProgressToPipe(t *testing.T) {
	stream := `{"status":"Pulling from team/app","id":"v1"}
{"status":"Pulling fs layer","progressDetail":{},"id":"aaa"}
{"status":"Downloading","progressDetail":{"current":10,"total":20},"progress":"[==>  ]","id":"aaa"}
{"status":"Pull complete","progressDetail":{},"id":"aaa"}
{"status":"Digest: sha256:abc"}
{"progressDetail":{},"aux":{"Tag":"v1","Digest":"sha256:abc","Size":527}}
`
	var out bytes.Buffer
	res, err := displayProgress(&out, strings.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	want := "v1: Pulling from team/app\naaa: Pulling fs layer\naaa: Pull complete\nDigest: sha256:abc\n"
	if out.String() != want {
		t.Errorf("output\n%q\nwant\n%q", out.String(), want)
	}
	if len(res) != 1 || res[0].Digest != "sha256:abc" || res[0].Size != 527 {
		t.Errorf("aux results %+v", res)
	}
	_, err = displayProgress(&out, strings.NewReader(`{"errorDetail":{"message":"unauthorized: no","kind":"unauthorized"},"error":"unauthorized: no"}`))
	if !errdefs.Is(err, errdefs.ErrUnauthorized) || err.Error() != "unauthorized: no" {
		t.Errorf("stream error: %v", err)
	}
}

func TestCredentialStore(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("BERTH_CONFIG", dir)
	// Keys Docker writes with a scheme still match; unknown keys survive.
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"auths":{"http://reg.example:5000":{"auth":"dTpw"}},"credsStore":"none"}`), 0o600)
	a, err := authFor("reg.example:5000")
	if err != nil || a.Username != "u" || a.Password != "p" {
		t.Errorf("authFor = %+v, %v; want u/p", a, err)
	}
	if a, _ := authFor("other:5000"); a.Username != "" || a.ServerAddress != "other:5000" {
		t.Errorf("authFor(other) = %+v; want no credentials", a)
	}
	if a, _ := authFor("docker.io"); a.ServerAddress != dockerHubServer {
		t.Errorf("Docker Hub's server address %q, want %s", a.ServerAddress, dockerHubServer)
	}
	cfg, err := loadCLIConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Auths[dockerHubServer] = authEntry{Auth: "eDp5"}
	if err := cfg.save(); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(filepath.Join(dir, "config.json"))
	b, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	if st.Mode().Perm() != 0o600 || !strings.Contains(string(b), `"credsStore": "none"`) || !strings.Contains(string(b), dockerHubServer) {
		t.Errorf("saved config (mode %v):\n%s", st.Mode(), b)
	}
	for in, want := range map[string]string{"": "docker.io", "https://index.docker.io/v1/": "docker.io", "http://127.0.0.1:5000/": "127.0.0.1:5000", "reg:5000": "reg:5000"} {
		if got := registryDomain(in); got != want {
			t.Errorf("registryDomain(%q) = %q, want %q", in, got, want)
		}
	}
}
