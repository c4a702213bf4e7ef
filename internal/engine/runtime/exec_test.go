package runtime

import (
	"errors"
	"slices"
	"testing"

	"github.com/berth/berth/internal/errdefs"
)

func TestExecProcess(t *testing.T) {
	s := gen(t, func(o *SpecOpts) {
		o.Env = []string{"A=1", "B=2"}
		o.UID, o.GID, o.Cwd = 1000, 1000, "/app"
	})
	p, err := ExecProcess(s.Process, ExecOpts{Args: []string{"sh"}, Env: []string{"B=3", "C=4"}, Terminal: true, ConsoleHeight: 24, ConsoleWidth: 80})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Args, []string{"sh"}) || p.Cwd != "/app" || p.User.UID != 1000 {
		t.Errorf("got args %v cwd %q uid %d, want sh, /app, 1000", p.Args, p.Cwd, p.User.UID)
	}
	for _, e := range []string{"A=1", "B=3", "C=4", "TERM=xterm"} {
		if !slices.Contains(p.Env, e) {
			t.Errorf("env %v lacks %s", p.Env, e)
		}
	}
	if slices.Contains(p.Env, "B=2") {
		t.Errorf("env %v kept the overridden B=2", p.Env)
	}
	if !p.Terminal || p.ConsoleSize == nil || p.ConsoleSize.Height != 24 {
		t.Errorf("terminal %v size %+v, want a 24x80 tty", p.Terminal, p.ConsoleSize)
	}
	if !p.NoNewPrivileges || !slices.Equal(p.Capabilities.Effective, s.Process.Capabilities.Effective) {
		t.Error("exec lost the container's no-new-privileges or capabilities")
	}
	// The base is not modified.
	if s.Process.Terminal || slices.Contains(s.Process.Env, "C=4") {
		t.Error("ExecProcess modified the container's process")
	}
	p, _ = ExecProcess(s.Process, ExecOpts{Args: []string{"id"}, SetUser: true, UID: 0, GID: 0, Cwd: "/"})
	if p.User.UID != 0 || p.Cwd != "/" {
		t.Errorf("exec -u 0 -w /: got uid %d cwd %q", p.User.UID, p.Cwd)
	}
	if _, err := ExecProcess(s.Process, ExecOpts{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("no command: got %v, want ErrInvalidArgument", err)
	}
	if _, err := ExecProcess(s.Process, ExecOpts{Args: []string{"x"}, Cwd: "rel"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("relative cwd: got %v, want ErrInvalidArgument", err)
	}
}
