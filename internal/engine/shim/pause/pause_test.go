package pause

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if os.Getenv("BERTH_PAUSE_HELPER") == "1" {
		// A child that exits at once: pause must reap it.
		exec.Command("/bin/true").Start()
		os.Exit(Run())
	}
	os.Exit(m.Run())
}

// TestEndsOnTermAndInt runs Run in a child process and stops it with each
// signal a runtime sends; SIGCHLD must not end it, and its exited child
// must not stay a zombie.
func TestEndsOnTermAndInt(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "BERTH_PAUSE_HELPER=1")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		time.Sleep(200 * time.Millisecond)
		cmd.Process.Signal(syscall.SIGCHLD)
		select {
		case err := <-done:
			t.Fatalf("pause exited on SIGCHLD: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		if z := zombies(t, cmd.Process.Pid); z != 0 {
			t.Errorf("pause left %d zombie children", z)
		}
		cmd.Process.Signal(sig)
		select {
		case <-done:
			ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if !(ws.Signaled() && ws.Signal() == sig) && ws.ExitStatus() != 2 {
				t.Errorf("pause after %v: %v, want death by the signal (or exit 2 as PID 1)", sig, cmd.ProcessState)
			}
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("pause did not end on %v", sig)
		}
	}
}

// zombies counts the exited, unreaped children of pid.
func zombies(t *testing.T, pid int) int {
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		if len(f) > 1 && f[0] == "Z" && f[1] == strconv.Itoa(pid) {
			n++
		}
	}
	return n
}
