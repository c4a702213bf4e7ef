package streaming

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	gwebsocket "github.com/gorilla/websocket"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/httpstream/spdy"
	"k8s.io/apimachinery/pkg/util/httpstream/wsstream"
	"k8s.io/client-go/tools/portforward"
)

// Port-forward protocol names and stream headers.
const (
	portForwardProtocol = "portforward.k8s.io"
	// tunneledPortForward is the SPDY session carried inside WebSocket
	// binary messages (kubectl 1.31+).
	tunneledPortForward = "SPDY/3.1+" + portForwardProtocol
	headerStreamType    = "streamType"
	headerPort          = "port"
	headerRequestID     = "requestID"
)

// servePortForward forwards connections to the pod's ports: each client
// connection is a pair of SPDY streams (error, data) with the same
// requestID, and the agent dials podIP:port from the node.
func (s *Server) servePortForward(w http.ResponseWriter, r *http.Request) {
	p := refOf(r)
	ip, err := s.podIP(r.Context(), p)
	if err != nil {
		writeError(w, err)
		return
	}
	f := &forwarder{s: s, pod: p, ip: ip, pairs: map[string]*streamPair{}}
	switch {
	case wsstream.IsWebSocketRequestWithTunnelingProtocol(r):
		up := gwebsocket.Upgrader{Subprotocols: []string{tunneledPortForward}, ReadBufferSize: 32 << 10, WriteBufferSize: 32 << 10,
			// The API server (the only client let in) proxies the user's
			// request; it checked the origin's credentials.
			CheckOrigin: func(*http.Request) bool { return true }}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return // Upgrade answered the client
		}
		conn, err := spdy.NewServerConnection(portforward.NewTunnelingConnection("server", ws), f.onStream)
		if err != nil {
			s.log.Debug("port-forward: SPDY over WebSocket", "pod", p.String(), "err", err)
			ws.Close()
			return
		}
		f.serve(conn)
	case httpstream.IsUpgradeRequest(r):
		if _, err := httpstream.Handshake(r, w, []string{portForwardProtocol}); err != nil {
			return
		}
		conn := spdy.NewResponseUpgrader().UpgradeResponse(w, r, f.onStream)
		if conn == nil {
			return
		}
		f.serve(conn)
	default:
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "port-forward needs a connection upgrade to SPDY/3.1 or a WebSocket tunnel (use kubectl port-forward)")
	}
}

type forwarder struct {
	s   *Server
	pod podRef
	ip  string

	mu    sync.Mutex
	conn  httpstream.Connection
	pairs map[string]*streamPair
}

type streamPair struct {
	port        uint16
	data, error httpstream.Stream
	replies     []<-chan struct{}
}

func (f *forwarder) serve(conn httpstream.Connection) {
	f.mu.Lock()
	f.conn = conn
	f.mu.Unlock()
	<-conn.CloseChan()
	_ = conn.Close()
}

// onStream pairs the streams of one forwarded connection.
func (f *forwarder) onStream(st httpstream.Stream, replySent <-chan struct{}) error {
	h := st.Headers()
	port, err := strconv.ParseUint(h.Get(headerPort), 10, 16)
	if err != nil || port == 0 {
		return fmt.Errorf("port-forward stream: invalid port %q: want 1-65535", h.Get(headerPort))
	}
	id := h.Get(headerRequestID)
	if id == "" {
		return fmt.Errorf("port-forward stream: no %s header", headerRequestID)
	}
	f.mu.Lock()
	pr := f.pairs[id]
	if pr == nil {
		pr = &streamPair{port: uint16(port)}
		f.pairs[id] = pr
	}
	switch h.Get(headerStreamType) {
	case "data":
		pr.data = st
	case "error":
		pr.error = st
	default:
		f.mu.Unlock()
		return fmt.Errorf("port-forward stream: unknown %s %q", headerStreamType, h.Get(headerStreamType))
	}
	pr.replies = append(pr.replies, replySent)
	complete := pr.data != nil && pr.error != nil
	if complete {
		delete(f.pairs, id)
	}
	f.mu.Unlock()
	if complete {
		go f.forward(pr)
	}
	return nil
}

// forward copies between the stream pair and a connection to the pod.
func (f *forwarder) forward(pr *streamPair) {
	for _, r := range pr.replies {
		<-r
	}
	defer func() {
		f.mu.Lock()
		conn := f.conn
		f.mu.Unlock()
		if conn != nil {
			conn.RemoveStreams(pr.data, pr.error)
		}
	}()
	addr := net.JoinHostPort(f.ip, strconv.Itoa(int(pr.port)))
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		fmt.Fprintf(pr.error, "error forwarding port %d to pod %s: %v", pr.port, f.pod, err)
		_ = pr.error.Close()
		_ = pr.data.Reset()
		return
	}
	defer c.Close()
	toPod := make(chan struct{})
	go func() {
		defer close(toPod)
		_, _ = io.Copy(c, pr.data)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	_, _ = io.Copy(pr.data, c)
	_ = pr.data.Close()
	// The client resets the data stream once it has read our end; wait
	// for that (bounded) before closing the error stream it waits on.
	select {
	case <-toPod:
	case <-time.After(30 * time.Second):
	}
	_ = pr.error.Close()
}
