package streaming

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/httpstream/spdy"
	"k8s.io/apimachinery/pkg/util/httpstream/wsstream"
	"k8s.io/apimachinery/pkg/util/remotecommand"
)

// streamOpts are the exec/attach query parameters.
type streamOpts struct {
	stdin, stdout, stderr, tty bool
	command                    []string
}

func parseStreamOpts(r *http.Request) (streamOpts, error) {
	q := r.URL.Query()
	var o streamOpts
	var err error
	for name, dst := range map[string]*bool{"stdin": &o.stdin, "stdout": &o.stdout, "stderr": &o.stderr, "tty": &o.tty} {
		if *dst, err = boolParam(q, name); err != nil {
			return o, err
		}
	}
	o.command = q["command"]
	if !o.stdin && !o.stdout && !o.stderr {
		return o, fmt.Errorf("you must specify at least 1 of stdin, stdout, stderr")
	}
	if o.tty {
		// A terminal merges stderr into stdout.
		o.stderr = false
	}
	return o, nil
}

// termSize is a resize message, as client-go's remotecommand.TerminalSize
// encodes it.
type termSize struct {
	Width  uint16
	Height uint16
}

// session is one exec or attach connection's streams, whatever the
// protocol: nil members were not requested.
type session struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	tty            bool
	resize         <-chan termSize
	// gone closes when the client hangs up (when the protocol tells).
	gone <-chan struct{}
}

// runFunc runs the command or attachment and returns its exit code, or an
// error that is not an exit (command failed to start, engine unreachable).
type runFunc func(ctx context.Context, sess *session) (exitCode int, err error)

// serveRemoteCommand upgrades to SPDY or WebSocket and runs run.
func (s *Server) serveRemoteCommand(w http.ResponseWriter, r *http.Request, o streamOpts, run runFunc) {
	inner := run
	run = func(ctx context.Context, sess *session) (int, error) {
		s.sessions.Add(1)
		defer s.sessions.Add(-1)
		return inner(ctx, sess)
	}
	switch {
	case wsstream.IsWebSocketRequest(r):
		s.serveWebSocket(w, r, o, run)
	case httpstream.IsUpgradeRequest(r):
		s.serveSPDY(w, r, o, run)
	default:
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "exec and attach need a connection upgrade to SPDY/3.1 or WebSocket (use kubectl, or client-go's remotecommand)")
	}
}

// status is what the error channel carries at the end (protocol v4+).
func status(exitCode int, err error) metav1.Status {
	switch {
	case err != nil:
		return metav1.Status{Status: metav1.StatusFailure, Reason: metav1.StatusReasonInternalError, Code: 500, Message: err.Error()}
	case exitCode != 0:
		return metav1.Status{Status: metav1.StatusFailure, Reason: remotecommand.NonZeroExitCodeReason,
			Message: fmt.Sprintf("command terminated with non-zero exit code: exit status %d", exitCode),
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: remotecommand.ExitCodeCauseType, Message: fmt.Sprint(exitCode)}}}}
	}
	return metav1.Status{Status: metav1.StatusSuccess}
}

// writeResult writes the outcome on the error channel: a JSON Status for
// v4 and v5, a plain message (nothing on success) before that.
func writeResult(w io.Writer, proto string, exitCode int, err error) {
	switch {
	case strings.Contains(proto, "v4.") || strings.Contains(proto, "v5."):
		b, _ := json.Marshal(status(exitCode, err))
		_, _ = w.Write(b)
	case err != nil:
		_, _ = io.WriteString(w, err.Error())
	case exitCode != 0:
		_, _ = fmt.Fprintf(w, "command terminated with exit code %d", exitCode)
	}
}

// readResizes decodes resize messages until the stream ends.
func readResizes(r io.Reader) <-chan termSize {
	ch := make(chan termSize, 4)
	go func() {
		defer close(ch)
		dec := json.NewDecoder(r)
		for {
			var sz termSize
			if err := dec.Decode(&sz); err != nil {
				// Drain: a stuck resize channel would block the others.
				_, _ = io.Copy(io.Discard, r)
				return
			}
			select {
			case ch <- sz:
			default: // the runner is behind: keep the newest size only
				select {
				case <-ch:
				default:
				}
				ch <- sz
			}
		}
	}()
	return ch
}

// SPDY stream types of the remotecommand protocol.
const (
	streamTypeStdin  = "stdin"
	streamTypeStdout = "stdout"
	streamTypeStderr = "stderr"
	streamTypeError  = "error"
	streamTypeResize = "resize"
)

type newStream struct {
	s         httpstream.Stream
	replySent <-chan struct{}
}

// serveSPDY serves channel.k8s.io v1–v4 over SPDY/3.1: the client opens
// one stream per channel, named by its streamType header.
func (s *Server) serveSPDY(w http.ResponseWriter, r *http.Request, o streamOpts, run runFunc) {
	proto, err := httpstream.Handshake(r, w, []string{remotecommand.StreamProtocolV4Name, remotecommand.StreamProtocolV3Name,
		remotecommand.StreamProtocolV2Name, remotecommand.StreamProtocolV1Name})
	if err != nil {
		return // Handshake answered the client
	}
	streams := make(chan newStream, 8)
	conn := spdy.NewResponseUpgrader().UpgradeResponse(w, r, func(st httpstream.Stream, replySent <-chan struct{}) error {
		streams <- newStream{st, replySent}
		return nil
	})
	if conn == nil {
		return // the upgrader answered the client
	}
	defer conn.Close()

	want := map[string]bool{streamTypeError: true, streamTypeStdin: o.stdin, streamTypeStdout: o.stdout,
		streamTypeStderr: o.stderr, streamTypeResize: o.tty && proto != remotecommand.StreamProtocolV1Name && proto != remotecommand.StreamProtocolV2Name}
	got := map[string]httpstream.Stream{}
	var replies []<-chan struct{}
	missing := func() int {
		n := 0
		for t, w := range want {
			if w && got[t] == nil {
				n++
			}
		}
		return n
	}
	timeout := time.NewTimer(remotecommand.DefaultStreamCreationTimeout)
	defer timeout.Stop()
	for missing() > 0 {
		select {
		case ns := <-streams:
			t := ns.s.Headers().Get("streamType")
			if _, known := want[t]; !known {
				s.log.Debug("ignoring unknown SPDY stream", "streamType", t)
				_ = ns.s.Reset()
				continue
			}
			got[t] = ns.s
			replies = append(replies, ns.replySent)
		case <-timeout.C:
			s.log.Warn("exec/attach: the client did not open its streams in time", "path", r.URL.Path, "missing", missing())
			return
		case <-conn.CloseChan():
			return
		}
	}
	for _, rs := range replies {
		<-rs
	}
	gone := make(chan struct{})
	go func() { <-conn.CloseChan(); close(gone) }()
	sess := &session{tty: o.tty, gone: gone}
	if st := got[streamTypeStdin]; st != nil {
		sess.stdin = st
	}
	if st := got[streamTypeStdout]; st != nil {
		sess.stdout = st
	}
	if st := got[streamTypeStderr]; st != nil {
		sess.stderr = st
	}
	if st := got[streamTypeResize]; st != nil {
		sess.resize = readResizes(st)
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	code, runErr := run(ctx, sess)
	// Half-close the outputs so the client's copies end, then report.
	for _, t := range []string{streamTypeStdout, streamTypeStderr} {
		if st := got[t]; st != nil {
			_ = st.Close()
		}
	}
	writeResult(got[streamTypeError], proto, code, runErr)
	_ = got[streamTypeError].Close()
	// Let the client read everything and hang up first.
	select {
	case <-conn.CloseChan():
	case <-time.After(5 * time.Second):
	}
}

// WebSocket channels of the remotecommand protocol.
const (
	chanStdin = iota
	chanStdout
	chanStderr
	chanError
	chanResize
)

// serveWebSocket serves v5.channel.k8s.io (and v4 and older) over a
// WebSocket: each binary message starts with its channel number.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, o streamOpts, run runFunc) {
	ch := func(on bool, t wsstream.ChannelType) wsstream.ChannelType {
		if on {
			return t
		}
		return wsstream.IgnoreChannel
	}
	// An ignored resize channel discards frames; a read one must be read
	// (readResizes), or the first resize would block every other channel.
	// Clients never write on the error channel: reading it ends only when
	// the connection closes, which tells us the client left.
	channels := []wsstream.ChannelType{ch(o.stdin, wsstream.ReadChannel), ch(o.stdout, wsstream.WriteChannel),
		ch(o.stderr, wsstream.WriteChannel), wsstream.ReadWriteChannel, ch(o.tty, wsstream.ReadChannel)}
	protocols := map[string]wsstream.ChannelProtocolConfig{
		"":                                      {Binary: true, Channels: channels},
		remotecommand.StreamProtocolV5Name:      {Binary: true, Channels: channels},
		remotecommand.StreamProtocolV4Name:      {Binary: true, Channels: channels},
		"v4.base64.channel.k8s.io":              {Binary: false, Channels: channels},
		remotecommand.StreamProtocolV3Name:      {Binary: true, Channels: channels},
		remotecommand.StreamProtocolV2Name:      {Binary: true, Channels: channels},
		wsstream.ChannelWebSocketProtocol:       {Binary: true, Channels: channels},
		wsstream.Base64ChannelWebSocketProtocol: {Binary: false, Channels: channels},
	}
	conn := wsstream.NewConn(protocols)
	proto, rwc, err := conn.Open(w, r)
	if err != nil {
		s.log.Debug("websocket upgrade failed", "path", r.URL.Path, "err", err)
		return
	}
	defer conn.Close()
	gone := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, rwc[chanError]); close(gone) }()
	sess := &session{tty: o.tty, gone: gone}
	if o.stdin {
		sess.stdin = rwc[chanStdin]
	}
	if o.stdout {
		sess.stdout = rwc[chanStdout]
	}
	if o.stderr {
		sess.stderr = rwc[chanStderr]
	}
	if o.tty {
		sess.resize = readResizes(rwc[chanResize])
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	code, runErr := run(ctx, sess)
	// client-go waits for the server to close a WebSocket session.
	writeResult(rwc[chanError], proto, code, runErr)
}
