package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/client"
)

// defaultDetachKeys is Docker's detach sequence: ctrl-p, ctrl-q.
const defaultDetachKeys = "ctrl-p,ctrl-q"

func newAttachCmd(g *globals) *cobra.Command {
	var noStdin, sigProxy bool
	var detachKeys string
	cmd := &cobra.Command{
		Use:   "attach [OPTIONS] CONTAINER",
		Short: "Attach local standard input, output, and error streams to a running container",
		Long: `Attach local standard input, output, and error streams to a running container.

Without a TTY the container's stdout and stderr go to berth's stdout and
stderr, and signals berth receives are sent to the container (--sig-proxy).
With a TTY the terminal is put in raw mode and follows the container's size.
Type the detach keys (ctrl-p ctrl-q by default) to detach and leave the
container running. When the container exits, berth exits with its status.`,
		Example: `  berth attach web
  berth attach --no-stdin --sig-proxy=false web`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			keys, err := parseDetachKeys(detachKeys)
			if err != nil {
				return &flagError{cmd: "attach", err: fmt.Errorf("invalid argument %q for \"--detach-keys\" flag: %v", detachKeys, err)}
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			return attachRunning(cmd.Context(), g, cl, args[0], !noStdin, sigProxy, keys)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&noStdin, "no-stdin", false, "Do not attach STDIN")
	f.BoolVar(&sigProxy, "sig-proxy", true, "Proxy all received signals to the process")
	f.StringVar(&detachKeys, "detach-keys", defaultDetachKeys, "Override the key sequence for detaching a container")
	return cmd
}

// errDetached ends an attach whose user typed the detach keys.
var errDetached = errors.New("read escape sequence")

// attachRunning is `berth attach`: it joins a running container's streams
// (asking for its exit first, so a quick exit is not missed) and returns
// the container's exit status when it ends.
func attachRunning(ctx context.Context, g *globals, cl *client.Client, ref string, wantStdin, sigProxy bool, keys []byte) error {
	var j api.ContainerJSON
	if err := cl.JSON(ctx, http.MethodGet, "/containers/"+url.PathEscape(ref)+"/json", nil, nil, &j); err != nil {
		return err
	}
	if j.State == nil || !j.State.Running {
		return errors.New("You cannot attach to a stopped container, start it first")
	}
	if j.State.Paused {
		return errors.New("You cannot attach to a paused container, unpause it first")
	}
	tty := j.Config != nil && j.Config.Tty
	stdin := wantStdin && j.Config != nil && j.Config.OpenStdin
	inFile, inIsFile := g.in.(*os.File)
	if tty && stdin && (!inIsFile || !term.IsTerminal(int(inFile.Fd()))) {
		return errors.New("the input device is not a TTY")
	}
	// The streams live until the container ends or the user detaches, not
	// until a signal that is forwarded to the container.
	sctx := context.WithoutCancel(ctx)
	q := url.Values{"stream": {"1"}, "stdout": {"1"}, "stderr": {"1"}}
	if stdin {
		q.Set("stdin", "1")
	}
	waitResp, err := cl.Do(sctx, http.MethodPost, "/containers/"+j.ID+"/wait", url.Values{"condition": {"not-running"}}, nil, "")
	if err != nil {
		return err
	}
	defer waitResp.Body.Close()
	stream, err := cl.Hijack(sctx, http.MethodPost, "/containers/"+j.ID+"/attach", q, nil)
	if err != nil {
		return err
	}
	defer stream.Close()

	if tty && stdin {
		if st, err := term.MakeRaw(int(inFile.Fd())); err == nil {
			defer term.Restore(int(inFile.Fd()), st)
		}
	}
	if tty {
		rctx, cancel := context.WithCancel(sctx)
		defer cancel()
		resizeLoop(rctx, cl, "/containers/"+j.ID+"/resize")
	}
	// SIGTERM ends berth unless it goes to the container.
	terminated := ctx.Done()
	if sigProxy && !tty {
		stop := forwardSignals(sctx, cl, j.ID)
		defer stop()
		terminated = nil
	}

	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		if tty {
			io.Copy(g.out, stream)
			return
		}
		if err := client.Demux(stream, g.out, g.err); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			fmt.Fprintln(g.err, "berth: reading container output:", err)
		}
	}()
	detached := make(chan struct{})
	if stdin {
		go func() {
			_, err := io.Copy(stream, &escapeReader{r: g.in, keys: keys})
			if errors.Is(err, errDetached) {
				close(detached)
				return
			}
			stream.CloseWrite()
		}()
	}
	select {
	case <-outDone:
	case <-terminated:
		return &StatusError{Status: 128 + int(syscall.SIGTERM)}
	case <-detached:
		stream.Close()
		if tty {
			fmt.Fprint(g.err, "\r\n")
		}
		fmt.Fprintln(g.err, errDetached.Error())
		return nil
	}
	var wr api.WaitResponse
	if err := json.NewDecoder(waitResp.Body).Decode(&wr); err != nil {
		return fmt.Errorf("waiting for container %s: %v", j.ID[:12], err)
	}
	if wr.StatusCode != 0 {
		return &StatusError{Status: wr.StatusCode}
	}
	return nil
}

// forwardSignals sends the signals berth receives to the container, as
// docker's --sig-proxy does (all but the ones about berth's own terminal
// and children).
func forwardSignals(ctx context.Context, cl *client.Client, id string) func() {
	ch := make(chan os.Signal, 8)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGALRM, syscall.SIGCONT, syscall.SIGTSTP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-ch:
				n := int(s.(syscall.Signal))
				cl.JSON(ctx, http.MethodPost, "/containers/"+id+"/kill", url.Values{"signal": {strconv.Itoa(n)}}, nil, nil)
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}

// parseDetachKeys reads a detach sequence the way Docker does: keys
// separated by commas, each a single character or ctrl-<key> with <key>
// one of a-z, @, [, \, ], ^, _.
func parseDetachKeys(s string) ([]byte, error) {
	var out []byte
	for _, k := range strings.Split(s, ",") {
		if len(k) == 1 {
			out = append(out, k[0])
			continue
		}
		c, ok := strings.CutPrefix(k, "ctrl-")
		if !ok || len(c) != 1 {
			return nil, fmt.Errorf("unknown character: %q", k)
		}
		switch b := c[0]; {
		case b >= 'a' && b <= 'z':
			out = append(out, b-'a'+1)
		case b == '@':
			out = append(out, 0)
		case b == '[' || b == '\\' || b == ']' || b == '^' || b == '_':
			out = append(out, b-'@')
		default:
			return nil, fmt.Errorf("unknown character: %q", k)
		}
	}
	return out, nil
}

// escapeReader passes input through until the detach sequence keys is
// read; then it returns errDetached. Bytes that begin the sequence are
// held back until the sequence breaks, then sent.
type escapeReader struct {
	r       io.Reader
	keys    []byte
	matched int
	pending []byte
}

func (e *escapeReader) Read(p []byte) (int, error) {
	if len(e.pending) > 0 {
		n := copy(p, e.pending)
		e.pending = e.pending[n:]
		return n, nil
	}
	if len(e.keys) == 0 {
		return e.r.Read(p)
	}
	buf := make([]byte, len(p))
	n, err := e.r.Read(buf)
	var out []byte
	for _, b := range buf[:n] {
		if b == e.keys[e.matched] {
			e.matched++
			if e.matched == len(e.keys) {
				// What came before the sequence still goes out.
				return copy(p, out), errDetached
			}
			continue
		}
		out = append(out, e.keys[:e.matched]...)
		e.matched = 0
		if b == e.keys[0] {
			e.matched = 1
			continue
		}
		out = append(out, b)
	}
	m := copy(p, out)
	e.pending = append(e.pending, out[m:]...)
	if err == io.EOF && e.matched > 0 {
		// Input ended inside a partial sequence: send it.
		e.pending = append(e.pending, e.keys[:e.matched]...)
		e.matched = 0
		if len(e.pending) > 0 && m < len(p) {
			k := copy(p[m:], e.pending)
			e.pending = e.pending[k:]
			m += k
		}
		if len(e.pending) > 0 {
			err = nil
		}
	}
	return m, err
}
