package cluster

import (
	"encoding/base64"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSecretsNeverLogged runs a server and a joined one with --debug
// (every request logged), passes recognisable secret values through
// every write and read path kubectl has, and a viewer token through
// authentication, then searches every log the servers wrote: their
// output and the log files in their data directories (etcd.log). No
// value may appear, in clear or base64.
func TestSecretsNeverLogged(t *testing.T) {
	dir := t.TempDir()
	s1 := newServer(filepath.Join(dir, "s1"), "--debug", "--cluster-init", "--name", "s1")
	if err := s1.start(); err != nil {
		t.Fatal(err)
	}
	defer s1.stop()
	tok, err := os.ReadFile(filepath.Join(s1.dataDir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	s2 := newServer(filepath.Join(dir, "s2"), "--debug", "--join", s1.url(), "--token", strings.TrimSpace(string(tok)), "--name", "s2")
	if err := s2.start(); err != nil {
		t.Fatal(err)
	}
	defer s2.stop()

	stamp := fmt.Sprint(time.Now().UnixNano())
	secret := func(i int) string { return fmt.Sprintf("Sekr1t-%d-%s", i, stamp) }
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	var values []string
	for i := 0; i < 8; i++ {
		values = append(values, secret(i))
	}
	k1, k2 := newKubectl(t, "/usr/bin/kubectl", s1), newKubectl(t, "/usr/bin/kubectl", s2)
	n := []string{"-n", "default"}
	k1.ok(t, append(n, "create", "secret", "generic", "lit", "--from-literal=password="+values[0])...)
	k1.okIn(t, `apiVersion: v1
kind: Secret
metadata: {name: applied}
stringData: {password: `+values[1]+`}
`, append(n, "apply", "-f", "-")...)
	k2.okIn(t, `apiVersion: v1
kind: Secret
metadata: {name: applied}
data: {password: `+b64(values[2])+`}
`, append(n, "apply", "--server-side", "--force-conflicts", "-f", "-")...)
	k1.ok(t, append(n, "patch", "secret", "lit", "--type=merge", "-p", `{"stringData":{"other":"`+values[3]+`"}}`)...)
	k2.ok(t, append(n, "patch", "secret", "lit", "-p", `{"data":{"third":"`+b64(values[4])+`"}}`)...)
	k1.ok(t, append(n, "patch", "secret", "lit", "--type=json", "-p", `[{"op":"add","path":"/data/fourth","value":"`+b64(values[5])+`"}]`)...)
	for _, k := range []*kubectl{k1, k2} {
		mustContain(t, k.ok(t, append(n, "get", "secret", "lit", "-o", "yaml")...), b64(values[0]), b64(values[3]), b64(values[4]), b64(values[5]))
		mustContain(t, k.ok(t, append(n, "get", "secret", "applied", "-o", "json")...), b64(values[2]))
		k.ok(t, append(n, "get", "secrets", "-w", "--request-timeout=1s")...)
		k.ok(t, append(n, "describe", "secret", "lit")...)
	}
	// Refused writes must not log their bodies either.
	if out, err := k1.run(t, `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"Bad_Name"},"stringData":{"p":"`+values[6]+`"}}`, append(n, "create", "-f", "-")...); err == nil {
		t.Errorf("invalid secret created: %s", out)
	}
	if out, err := k1.run(t, `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"},"data":{"p":"`+values[6]+`!"}}`, append(n, "create", "-f", "-")...); err == nil {
		t.Errorf("secret with bad base64 created: %s", out)
	}
	k1.ok(t, append(n, "delete", "secret", "lit", "applied")...)

	// Viewer tokens authenticate requests (tokens live in each server's
	// data directory).
	for _, p := range []struct {
		k *kubectl
		s *server
	}{{k1, s1}, {k2, s2}} {
		out, err := execCommand(serverBin, "token", "create", "--role", "viewer", "--data-dir", p.s.dataDir).CombinedOutput()
		if err != nil {
			t.Fatalf("token create: %v %s", err, out)
		}
		viewer := strings.TrimSpace(string(out))
		values = append(values, viewer)
		p.k.ok(t, "--token", viewer, "get", "ns")
		if out, err := p.k.run(t, "", "--token", viewer, "get", "secrets", "-A"); err == nil {
			t.Errorf("viewer read secrets: %s", out)
		}
	}
	// A wrong token is logged as a failure, not echoed.
	wrong := "berth-" + strings.Repeat("0", 10) + stamp
	values = append(values, wrong)
	k1.run(t, "", "--token", wrong, "get", "ns")

	s2.stop()
	s1.stop()
	logs := map[string]string{"s1 output": s1.log.String(), "s2 output": s2.log.String()}
	for _, s := range []*server{s1, s2} {
		_ = filepath.WalkDir(s.dataDir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(d.Name(), ".log") {
				b, _ := os.ReadFile(p)
				logs[p] = string(b)
			}
			return nil
		})
	}
	if len(logs) < 4 {
		t.Errorf("found %d logs, want the output and etcd.log of both servers: %v", len(logs), keys(logs))
	}
	// The test is only as good as the logging it watches: the servers did
	// log the secret requests and etcd wrote its log.
	if !strings.Contains(logs["s1 output"], "/api/v1/namespaces/default/secrets") || !strings.Contains(logs["s2 output"], "/api/v1/namespaces/default/secrets") {
		t.Errorf("the --debug servers did not log the secret requests:\n%s", logs["s1 output"])
	}
	for name, text := range logs {
		for _, v := range values {
			for _, form := range []string{v, b64(v)} {
				if strings.Contains(text, form) {
					t.Errorf("%s contains the secret %q", name, form)
				}
			}
		}
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
