// Package registry holds the end-to-end tests of `berth registry` and the
// daemon's --registry-addr: real clients (skopeo, go-containerregistry)
// against the built bin/berth. The OCI conformance suite runs from
// scripts/conformance.sh.
package registry

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

var binDir string

func TestMain(m *testing.M) {
	binDir = os.Getenv("BERTH_BIN_DIR")
	if binDir == "" {
		binDir = "../../../bin"
	}
	binDir, _ = filepath.Abs(binDir)
	if _, err := os.Stat(filepath.Join(binDir, "berth")); err != nil {
		fmt.Fprintf(os.Stderr, "registry e2e: %s is missing: run `make build` (or `make test`)\n", filepath.Join(binDir, "berth"))
		os.Exit(1)
	}
	os.Exit(m.Run())
}

var listenRE = regexp.MustCompile(`(?:url=https?://|addr=)(127\.0\.0\.1:[0-9]+)`)

// startBerth runs bin/berth with args and waits for the line that says
// where its registry listens; it returns that address. At cleanup it
// sends SIGTERM and checks for a clean exit.
func startBerth(t *testing.T, args ...string) (addr string, cmd *exec.Cmd) {
	t.Helper()
	cmd = exec.Command(filepath.Join(binDir, "berth"), args...)
	logPath := filepath.Join(t.TempDir(), "berth.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				b, _ := os.ReadFile(logPath)
				t.Errorf("berth %s exited with %v after SIGTERM; log:\n%s", args[0], err, b)
			}
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			t.Errorf("berth %s did not stop within 15 s of SIGTERM", args[0])
		}
		logf.Close()
	})
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		f, _ := os.Open(logPath)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil && strings.Contains(sc.Text(), "registry listening") {
				f.Close()
				return m[1], cmd
			}
		}
		f.Close()
		select {
		case err := <-exited:
			exited <- err
			b, _ := os.ReadFile(logPath)
			t.Fatalf("berth %s exited (%v) before its registry listened; log:\n%s", args[0], err, b)
		case <-time.After(50 * time.Millisecond):
		}
	}
	b, _ := os.ReadFile(logPath)
	t.Fatalf("berth %s: no registry listening after 15 s; log:\n%s", args[0], b)
	return "", nil
}
