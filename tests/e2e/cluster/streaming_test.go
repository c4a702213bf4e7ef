package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/berth/berth/internal/cluster/agent/streaming"
	"github.com/berth/berth/internal/cluster/agent/streaming/streamingtest"
	"github.com/berth/berth/internal/cluster/kube"
	"github.com/berth/berth/internal/cluster/pki"
	"github.com/berth/berth/internal/engine/api"
)

// TestKubectlStreaming drives kubectl logs, exec, attach, cp and
// port-forward through the real berth-server to a streaming server on
// loopback (standing in for a node agent) and a real berth engine whose
// containers carry the agent's labels.
func TestKubectlStreaming(t *testing.T) {
	eng := streamingtest.Start(t) // skips unless root with the engine built
	node := "stream-node"
	k := newKubectl(t, "kubectl", shared)

	// The node's serving certificate from the cluster CA, as the agent
	// would get it when joining.
	ca, err := pki.Dir{Root: shared.dataDir}.LoadCA()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	crt, key, err := ca.Issue(pki.CertRequest{CommonName: "system:node:" + node, IPs: []net.IP{net.ParseIP("127.0.0.1")}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "node.crt"), crt, 0o600)
	os.WriteFile(filepath.Join(dir, "node.key"), key, 0o600)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- streaming.New(streaming.Options{Engine: eng.Client, CertFile: filepath.Join(dir, "node.crt"), KeyFile: filepath.Join(dir, "node.key"),
			CAFile: filepath.Join(shared.dataDir, "pki", "ca.crt")}).Serve(ctx, ln)
	}()
	t.Cleanup(func() { cancel(); <-served })

	k.run(t, "", "delete", "node", node, "--ignore-not-found")
	// Leave nothing for other tests of the shared server to trip on.
	t.Cleanup(func() {
		k.run(t, "", "-n", "streaming", "delete", "pod", "web", "--ignore-not-found", "--wait=false")
		k.run(t, "", "delete", "node", node, "--ignore-not-found", "--wait=false")
	})
	k.okIn(t, fmt.Sprintf("apiVersion: v1\nkind: Node\nmetadata:\n  name: %s\n", node), "create", "-f", "-")
	k.ok(t, "patch", "node", node, "--subresource=status", "--type=merge", "-p",
		fmt.Sprintf(`{"status":{"addresses":[{"type":"InternalIP","address":"127.0.0.1"}],"daemonEndpoints":{"kubeletEndpoint":{"Port":%d}}}}`, ln.Addr().(*net.TCPAddr).Port))
	keepNodeAlive(t, node, ctx)
	ns := "streaming"
	k.run(t, "", "create", "namespace", ns)
	k.run(t, "", "-n", ns, "delete", "pod", "web", "--ignore-not-found", "--wait=false")
	k.okIn(t, `apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  nodeName: `+node+`
  containers:
  - {name: app, image: busybox}
  - {name: ticker, image: busybox}
  - {name: term, image: busybox, stdin: true, tty: true}
`, "-n", ns, "create", "-f", "-")
	// kubectl attach and port-forward want a Running pod.
	k.ok(t, "-n", ns, "patch", "pod", "web", "--subresource=status", "--type=merge", "-p", `{"status":{"phase":"Running"}}`)
	uid := strings.TrimSpace(k.ok(t, "-n", ns, "get", "pod", "web", "-o", "jsonpath={.metadata.uid}"))

	// The containers the agent would have made for the pod.
	p := streamingtest.Pod{Namespace: ns, Name: "web", UID: uid}
	sb := eng.Sandbox(t, p, "sh", "-c", "mkdir -p /www && echo hello-from-pod > /www/index.html && dd if=/dev/zero of=/www/big bs=1M count=32 2>/dev/null && exec httpd -f -p 8080 -h /www")
	eng.Wait(t, eng.Container(t, p, sb, "app", 0, api.Config{Cmd: []string{"sh", "-c", "echo previous run"}}))
	eng.Container(t, p, sb, "app", 1, api.Config{Cmd: []string{"sh", "-c", "echo line1; sleep 0.1; echo line2; sleep 0.1; echo line3; exec sleep 3600"}})
	eng.Container(t, p, sb, "ticker", 0, api.Config{Cmd: []string{"sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"}})
	eng.Container(t, p, sb, "term", 0, api.Config{OpenStdin: true, Tty: true, Cmd: []string{"sh", "-c", "while read l; do echo got:$l; done"}})
	kc := func(args ...string) []string { return append([]string{"-n", ns}, args...) }

	t.Run("logs", func(t *testing.T) {
		deadline := time.Now().Add(10 * time.Second)
		var out string
		for time.Now().Before(deadline) {
			if out, _ = k.run(t, "", kc("logs", "web", "-c", "app")...); strings.Contains(out, "line3") {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if out != "line1\nline2\nline3\n" {
			t.Errorf("kubectl logs: got %q, want three lines", out)
		}
		if out := k.ok(t, kc("logs", "web", "-c", "app", "--previous")...); out != "previous run\n" {
			t.Errorf("kubectl logs --previous: got %q, want \"previous run\\n\"", out)
		}
		if out := k.ok(t, kc("logs", "web", "-c", "app", "--tail=1")...); out != "line3\n" {
			t.Errorf("kubectl logs --tail=1: got %q, want \"line3\\n\"", out)
		}
		if out := k.ok(t, kc("logs", "web", "-c", "app", "--since=1h", "--timestamps")...); !regexp.MustCompile(`(?m)^20\d\d-\d\d-\d\dT\S+ line1$`).MatchString(out) {
			t.Errorf("kubectl logs --since=1h --timestamps: got %q, want timestamped lines", out)
		}
		// kubectl picks the first container itself and says so.
		if out := k.ok(t, kc("logs", "web")...); !strings.Contains(out, `Defaulted container "app"`) || !strings.Contains(out, "line3") {
			t.Errorf("kubectl logs without -c: got %q, want app's log", out)
		}
	})

	t.Run("logs-follow", func(t *testing.T) {
		cmd, lines := k.start(t, kc("logs", "-f", "web", "-c", "ticker", "--tail=1")...)
		defer cmd.Process.Kill()
		var got []string
		for len(got) < 3 {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("kubectl logs -f ended after %q", got)
				}
				got = append(got, l)
			case <-time.After(10 * time.Second):
				t.Fatalf("kubectl logs -f: only %q after 10s", got)
			}
		}
		var a, b int
		fmt.Sscanf(got[0], "tick %d", &a)
		fmt.Sscanf(got[2], "tick %d", &b)
		if b != a+2 {
			t.Errorf("kubectl logs -f: got %q, want consecutive ticks", got)
		}
	})

	for _, proto := range []struct{ name, env string }{{"websocket", ""}, {"spdy", "KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false"}} {
		t.Run("exec-"+proto.name, func(t *testing.T) {
			out, err := k.runEnv(t, proto.env, "", kc("exec", "web", "-c", "app", "--", "sh", "-c", "echo hi; exit 3")...)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(out, "hi") {
				t.Errorf("kubectl exec exit 3: got %v %q, want exit code 3 and \"hi\"", err, out)
			}
			out, err = k.runEnv(t, proto.env, "in-data\n", kc("exec", "-i", "web", "-c", "app", "--", "cat")...)
			if err != nil || out != "in-data\n" {
				t.Errorf("kubectl exec -i cat: got %v %q, want the input back", err, out)
			}
		})
	}

	t.Run("exec-latency", func(t *testing.T) {
		start := time.Now()
		for i := 0; i < 5; i++ {
			k.ok(t, kc("get", "pod", "web", "-o", "name")...)
		}
		t.Logf("baseline kubectl get pod: %v per run", (time.Since(start) / 5).Round(time.Millisecond))
		for _, proto := range []struct{ name, env string }{{"websocket", ""}, {"spdy", "KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false"}} {
			start := time.Now()
			for i := 0; i < 5; i++ {
				if out, err := k.runEnv(t, proto.env, "", kc("exec", "web", "-c", "app", "--", "true")...); err != nil {
					t.Fatalf("kubectl exec true: %v %s", err, out)
				}
			}
			t.Logf("kubectl exec -- true over %s: %v per run (the whole kubectl process)", proto.name, (time.Since(start) / 5).Round(time.Millisecond))
		}
	})

	t.Run("exec-tty", func(t *testing.T) {
		// script gives kubectl a terminal, as a user's shell would.
		// The pty gets a size first: kubectl sends it on the resize channel.
		// The agent starts the exec with it, but the runtime may apply it
		// a moment after the command starts (as with a kubelet), hence
		// the sleep.
		line := fmt.Sprintf("stty cols 123 rows 45; kubectl --kubeconfig %s --cache-dir %s exec -it -n %s web -c app -- sh -c 'tty; sleep 0.3; stty size; exit 4'", k.kubeconfig, k.cache, ns)
		cmd := exec.Command("script", "-qec", line, "/dev/null")
		cmd.Env = append(os.Environ(), "HOME="+k.cache, "KUBECONFIG=", "COLUMNS=120", "LINES=40")
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 4 || !strings.Contains(string(out), "/dev/pts/") || !strings.Contains(string(out), "45 123") {
			t.Errorf("kubectl exec -it: got %v %q, want exit 4, a /dev/pts terminal and its size \"45 123\"", err, out)
		}
	})

	t.Run("attach", func(t *testing.T) {
		cmd, lines := k.startIn(t, "hello\n", kc("attach", "-i", "web", "-c", "term")...)
		defer cmd.Process.Kill()
		deadline := time.After(15 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatal("kubectl attach ended without the echo")
				}
				if strings.Contains(l, "got:hello") {
					return
				}
			case <-deadline:
				t.Fatal("kubectl attach: no got:hello in 15s")
			}
		}
	})

	t.Run("cp", func(t *testing.T) {
		src := filepath.Join(t.TempDir(), "up.txt")
		os.WriteFile(src, []byte("copied up\n"), 0o644)
		k.ok(t, kc("cp", src, ns+"/web:/tmp/up.txt", "-c", "app")...)
		if out := k.ok(t, kc("exec", "web", "-c", "app", "--", "cat", "/tmp/up.txt")...); out != "copied up\n" {
			t.Errorf("kubectl cp to the pod: file holds %q", out)
		}
		k.ok(t, kc("exec", "web", "-c", "app", "--", "sh", "-c", "echo copied down > /tmp/down.txt")...)
		dst := filepath.Join(t.TempDir(), "down.txt")
		k.ok(t, kc("cp", ns+"/web:/tmp/down.txt", dst, "-c", "app")...)
		if b, _ := os.ReadFile(dst); string(b) != "copied down\n" {
			t.Errorf("kubectl cp from the pod: got %q", b)
		}
	})

	for _, proto := range []struct{ name, env string }{{"websocket", ""}, {"spdy", "KUBECTL_PORT_FORWARD_WEBSOCKETS=false"}} {
		t.Run("port-forward-"+proto.name, func(t *testing.T) { portForwardMeasure(t, k, proto.env, ns, true) })
	}

	// Older kubectl: 1.27/1.28 speak SPDY only, 1.29 offers v5 over SPDY,
	// 1.30 tries WebSocket for exec, 1.31+ for port-forward too.
	for _, bin := range kubectlVersions() {
		v := strings.TrimPrefix(filepath.Base(bin), "kubectl.")
		if v != "1.27" && v != "1.29" && v != "1.31" && v != "1.33" {
			continue
		}
		t.Run("kubectl-"+v, func(t *testing.T) {
			ko := newKubectl(t, bin, shared)
			out, err := ko.run(t, "", kc("exec", "web", "-c", "app", "--", "sh", "-c", "echo hi; exit 3")...)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(out, "hi") {
				t.Errorf("exec exit 3: got %v %q, want exit code 3 and \"hi\"", err, out)
			}
			if out := ko.okIn(t, "abc\n", kc("exec", "-i", "web", "-c", "app", "--", "cat")...); out != "abc\n" {
				t.Errorf("exec -i cat: got %q, want the input back", out)
			}
			if out := ko.ok(t, kc("logs", "web", "-c", "app", "--tail=1")...); out != "line3\n" {
				t.Errorf("logs --tail=1: got %q", out)
			}
			portForward(t, ko, "", ns)
		})
	}
}

// portForward runs kubectl port-forward to the pod's httpd and GETs
// through it three times.
func portForward(t *testing.T, k *kubectl, env, ns string) {
	t.Helper()
	portForwardMeasure(t, k, env, ns, false)
}

// portForwardMeasure is portForward; with measure it also times a 32 MiB
// download and 20 short requests through the tunnel and logs the numbers.
func portForwardMeasure(t *testing.T, k *kubectl, env, ns string, measure bool) {
	t.Helper()
	cmd, lines := k.startEnv(t, env, "", "-n", ns, "port-forward", "pod/web", ":8080")
	defer cmd.Process.Kill()
	re := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> 8080`)
	var port string
	for port == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("kubectl port-forward ended before forwarding")
			}
			if m := re.FindStringSubmatch(l); m != nil {
				port = m[1]
			}
		case <-time.After(15 * time.Second):
			t.Fatal("kubectl port-forward: not forwarding after 15s")
		}
	}
	for i := 0; i < 3; i++ {
		resp, err := http.Get("http://127.0.0.1:" + port + "/")
		if err != nil {
			t.Fatalf("GET through kubectl port-forward: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hello-from-pod\n" {
			t.Fatalf("GET through kubectl port-forward: got %q", b)
		}
	}
	if !measure {
		return
	}
	start := time.Now()
	resp, err := http.Get("http://127.0.0.1:" + port + "/big")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != 32<<20 {
		t.Fatalf("32 MiB through port-forward: got %d bytes, %v", n, err)
	}
	dl := time.Since(start)
	start = time.Now()
	for i := 0; i < 20; i++ {
		resp, err := http.Get("http://127.0.0.1:" + port + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	t.Logf("port-forward %s: 32 MiB in %v (%.0f MiB/s); a new connection + GET: %v", map[bool]string{true: "spdy", false: "websocket"}[env != ""],
		dl.Round(time.Millisecond), 32/dl.Seconds(), (time.Since(start) / 20).Round(100*time.Microsecond))
}

// keepNodeAlive reports the node Ready and renews its Lease until ctx
// ends, as its agent would, so node lifecycle control loops leave it and
// its pods alone during the test.
func keepNodeAlive(t *testing.T, node string, ctx context.Context) {
	t.Helper()
	cfg, err := kube.ConfigFromKubeconfig(shared.kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	beat := func() {
		now := metav1.Now()
		patch := fmt.Sprintf(`{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"streaming test","lastHeartbeatTime":%q,"lastTransitionTime":%q}]}}`,
			now.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
		_, _ = cs.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status")
		leases := cs.CoordinationV1().Leases("kube-node-lease")
		micro := metav1.NewMicroTime(time.Now())
		holder, secs := node, int32(40)
		l, err := leases.Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			_, _ = leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: node},
				Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, RenewTime: &micro}}, metav1.CreateOptions{})
			return
		}
		l.Spec.RenewTime = &micro
		_, _ = leases.Update(ctx, l, metav1.UpdateOptions{})
	}
	beat()
	go func() {
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				beat()
			}
		}
	}()
	t.Cleanup(func() {
		_ = cs.CoordinationV1().Leases("kube-node-lease").Delete(context.Background(), node, metav1.DeleteOptions{})
	})
}

// runEnv is run with extra environment ("K=V", or "").
func (k *kubectl) runEnv(t *testing.T, env, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.bin, append([]string{"--kubeconfig", k.kubeconfig, "--cache-dir", k.cache}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+k.cache, "KUBECONFIG=")
	if env != "" {
		cmd.Env = append(cmd.Env, env)
	}
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (k *kubectl) start(t *testing.T, args ...string) (*exec.Cmd, <-chan string) {
	return k.startEnv(t, "", "", args...)
}

func (k *kubectl) startIn(t *testing.T, stdin string, args ...string) (*exec.Cmd, <-chan string) {
	return k.startEnv(t, "", stdin, args...)
}

// startEnv starts a long-running kubectl and streams its output lines.
// Its stdin stays open after the given input.
func (k *kubectl) startEnv(t *testing.T, env, stdin string, args ...string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(k.bin, append([]string{"--kubeconfig", k.kubeconfig, "--cache-dir", k.cache}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+k.cache, "KUBECONFIG=")
	if env != "" {
		cmd.Env = append(cmd.Env, env)
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(in, stdin)
	t.Cleanup(func() { cmd.Process.Kill(); in.Close() })
	go func() { cmd.Wait(); pw.Close() }()
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return cmd, lines
}
