package streaming

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/client"
)

// serveExec runs a command in a pod's container (kubectl exec, cp).
func (s *Server) serveExec(w http.ResponseWriter, r *http.Request) {
	p, container := refOf(r), r.PathValue("container")
	o, err := parseStreamOpts(r)
	if err != nil {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, err.Error())
		return
	}
	if len(o.command) == 0 {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "you must specify at least one command for the container (command=…)")
		return
	}
	inst, ok := s.running(w, r, p, container)
	if !ok {
		return
	}
	s.serveRemoteCommand(w, r, o, func(ctx context.Context, sess *session) (int, error) {
		return s.exec(ctx, inst.ID, o.command, sess)
	})
}

// serveAttach attaches to a pod container's main process (kubectl attach).
func (s *Server) serveAttach(w http.ResponseWriter, r *http.Request) {
	p, container := refOf(r), r.PathValue("container")
	o, err := parseStreamOpts(r)
	if err != nil {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, err.Error())
		return
	}
	inst, ok := s.running(w, r, p, container)
	if !ok {
		return
	}
	var c api.ContainerJSON
	if err := s.eng.JSON(r.Context(), http.MethodGet, "/containers/"+url.PathEscape(inst.ID)+"/json", nil, nil, &c); err != nil {
		writeError(w, err)
		return
	}
	containerTTY := c.Config != nil && c.Config.Tty
	stdinOnce := c.Config != nil && c.Config.StdinOnce
	if o.stdin && (c.Config == nil || !c.Config.OpenStdin) {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, fmt.Sprintf("container %q in pod %q does not keep stdin open (set stdin: true in its spec to attach with -i)", container, p.name))
		return
	}
	s.serveRemoteCommand(w, r, o, func(ctx context.Context, sess *session) (int, error) {
		return 0, s.attach(ctx, inst.ID, containerTTY, stdinOnce, sess)
	})
}

// running finds the current instance of a container and checks it runs;
// otherwise it answers the client and returns false.
func (s *Server) running(w http.ResponseWriter, r *http.Request, p podRef, container string) (instance, bool) {
	inst, err := s.current(r.Context(), p, container)
	if err != nil {
		writeError(w, err)
		return inst, false
	}
	if inst.State != "running" {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, fmt.Sprintf("container %q in pod %q is not running (state: %s)", container, p.name, inst.State))
		return inst, false
	}
	return inst, true
}

// exec runs cmd in the engine container id and returns its exit code.
func (s *Server) exec(ctx context.Context, id string, cmd []string, sess *session) (int, error) {
	cfg := api.ExecConfig{Cmd: cmd, Tty: sess.tty, AttachStdin: sess.stdin != nil, AttachStdout: sess.stdout != nil, AttachStderr: sess.stderr != nil}
	if sess.resize != nil {
		// kubectl sends the terminal's size as soon as it connects: start
		// the command with it, so `stty size` right away sees it.
		if sz, ok := firstSize(sess.resize, time.Second); ok {
			cfg.ConsoleSize = &[2]uint{uint(sz.Height), uint(sz.Width)}
			sess.resize = prepend(sz, sess.resize)
		}
	}
	resizing := false
	defer func() {
		if sess.resize != nil && !resizing {
			// Nobody applies sizes: drain so the readers can finish.
			go func() {
				for range sess.resize {
				}
			}()
		}
	}()
	var idr api.IDResponse
	if err := s.eng.JSON(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/exec", nil, cfg, &idr); err != nil {
		return 0, fmt.Errorf("creating the exec: %w", err)
	}
	st, err := s.eng.Hijack(ctx, http.MethodPost, "/exec/"+idr.ID+"/start", nil, api.ExecStartConfig{Tty: sess.tty})
	if err != nil {
		return 0, fmt.Errorf("starting the exec: %w", err)
	}
	defer st.Close()
	if sess.resize != nil {
		resizing = true
		go s.resizeLoop(ctx, "/exec/"+idr.ID+"/resize", sess.resize)
	}
	pump(st, sess, sess.tty, true)
	select {
	case <-sess.gone:
		// Nobody is left to tell the exit code to; closing the stream
		// ended the command's stdin.
		return 0, errors.New("the client left")
	default:
	}
	// The engine ends the stream when the process has exited; the exit
	// code may take a moment to be recorded.
	var in api.ExecInspect
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := s.eng.JSON(context.WithoutCancel(ctx), http.MethodGet, "/exec/"+idr.ID+"/json", nil, nil, &in); err != nil {
			return 0, fmt.Errorf("reading the exec's exit code: %w", err)
		}
		if !in.Running || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if in.Running {
		// The client went away while the command still runs.
		return 0, errors.New("the command is still running; its output stream ended")
	}
	if in.ExitCode == nil {
		return 0, errors.New("the engine did not record the command's exit code")
	}
	return *in.ExitCode, nil
}

// attach connects the session to the container's main process until it
// exits or the client hangs up. The end of the client's stdin closes the
// container's stdin only for a stdinOnce container: otherwise another
// attach may still write to it (Kubernetes' stdinOnce semantics).
func (s *Server) attach(ctx context.Context, id string, containerTTY, stdinOnce bool, sess *session) error {
	q := url.Values{"stream": {"1"}}
	for name, on := range map[string]bool{"stdin": sess.stdin != nil, "stdout": sess.stdout != nil, "stderr": sess.stderr != nil} {
		if on {
			q.Set(name, "1")
		}
	}
	st, err := s.eng.Hijack(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/attach", q, nil)
	if err != nil {
		return fmt.Errorf("attaching: %w", err)
	}
	defer st.Close()
	if sess.resize != nil && containerTTY {
		go s.resizeLoop(ctx, "/containers/"+url.PathEscape(id)+"/resize", sess.resize)
	}
	pump(st, sess, containerTTY, stdinOnce)
	return nil
}

// pump copies stdin to the engine stream and the stream to the outputs;
// it returns when the output ends or the client hangs up. closeStdin
// passes the end of the client's stdin on to the process.
func pump(st *client.Stream, sess *session, rawOutput, closeStdin bool) {
	if sess.stdin != nil {
		go func() {
			_, _ = io.Copy(st, sess.stdin)
			if closeStdin {
				_ = st.CloseWrite()
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		stdout, stderr := sess.stdout, sess.stderr
		if stdout == nil {
			stdout = io.Discard
		}
		if stderr == nil {
			stderr = io.Discard
		}
		if rawOutput {
			_, _ = io.Copy(stdout, st)
			return
		}
		_ = client.Demux(st, stdout, stderr)
	}()
	select {
	case <-done:
	case <-sess.gone:
		_ = st.Close()
		<-done
	}
}

// firstSize waits a little for the client's first terminal size.
func firstSize(sizes <-chan termSize, wait time.Duration) (termSize, bool) {
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case sz, ok := <-sizes:
			if !ok {
				return termSize{}, false
			}
			if sz.Width > 0 && sz.Height > 0 {
				return sz, true
			}
		case <-t.C:
			return termSize{}, false
		}
	}
}

// prepend returns a channel yielding first, then everything from rest.
func prepend(first termSize, rest <-chan termSize) <-chan termSize {
	ch := make(chan termSize, 1)
	ch <- first
	go func() {
		defer close(ch)
		for sz := range rest {
			ch <- sz
		}
	}()
	return ch
}

// resizeLoop applies the client's terminal sizes to the exec or container.
func (s *Server) resizeLoop(ctx context.Context, path string, sizes <-chan termSize) {
	for sz := range sizes {
		if sz.Width == 0 || sz.Height == 0 {
			continue
		}
		q := url.Values{"h": {strconv.Itoa(int(sz.Height))}, "w": {strconv.Itoa(int(sz.Width))}}
		// The process may not have started yet on the first size: retry.
		for i := 0; i < 10; i++ {
			if err := s.eng.JSON(ctx, http.MethodPost, path, q, nil, nil); err == nil || ctx.Err() != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
