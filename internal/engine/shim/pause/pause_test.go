package pause

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if os.Getenv("BERTH_PAUSE_HELPER") == "1" {
		os.Exit(Run())
	}
	os.Exit(m.Run())
}

// TestExitsZeroOnTermAndInt runs Run in a child process and stops it with
// each signal a runtime sends.
func TestExitsZeroOnTermAndInt(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "BERTH_PAUSE_HELPER=1")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		// SIGCHLD (a zombie to reap) must not end it.
		time.Sleep(100 * time.Millisecond)
		cmd.Process.Signal(syscall.SIGCHLD)
		select {
		case err := <-done:
			t.Fatalf("pause exited on SIGCHLD: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		cmd.Process.Signal(sig)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("pause after %v: %v, want exit 0", sig, err)
			}
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("pause did not exit on %v", sig)
		}
	}
}
