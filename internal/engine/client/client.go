// Package client is the Go client of berth's engine API, used by the berth
// CLI. It speaks HTTP over the daemon's unix socket (or TCP), maps error
// bodies back to errdefs classes, and hijacks connections for attach and
// exec streams.
package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/errdefs"
)

// DefaultHost is where the daemon listens unless told otherwise.
const DefaultHost = "unix:///run/berth/berth.sock"

// Client talks to one daemon.
type Client struct {
	host    string
	network string
	addr    string
	http    *http.Client
	tls     *tls.Config // nil: plain
}

// New returns a client for host: "unix:///path", "tcp://host:port" or a
// bare socket path.
func New(host string) (*Client, error) {
	if host == "" {
		host = DefaultHost
	}
	c := &Client{host: host}
	switch {
	case strings.HasPrefix(host, "unix://"):
		c.network, c.addr = "unix", strings.TrimPrefix(host, "unix://")
	case strings.HasPrefix(host, "tcp://"):
		c.network, c.addr = "tcp", strings.TrimPrefix(host, "tcp://")
	case strings.HasPrefix(host, "/"):
		c.network, c.addr = "unix", host
	default:
		return nil, fmt.Errorf("invalid host %q: want unix:///path/to/berth.sock or tcp://HOST:PORT: %w", host, errdefs.ErrInvalidArgument)
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return c.dial(ctx)
		},
		MaxIdleConns:       4,
		IdleConnTimeout:    30 * time.Second,
		DisableCompression: true,
	}
	c.http = &http.Client{Transport: tr}
	return c, nil
}

// UseTLS makes the client speak TLS to a tcp:// daemon (`berth daemon
// --tcp-addr`), trusting the CA in caFile and presenting the client
// certificate certFile with keyFile, as the docker CLI's --tlsverify.
func (c *Client) UseTLS(caFile, certFile, keyFile string) error {
	if c.network != "tcp" {
		return fmt.Errorf("TLS is for tcp:// daemons; %s is a unix socket: %w", c.host, errdefs.ErrInvalidArgument)
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("--tlscacert: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return fmt.Errorf("--tlscacert %s: no PEM certificate in it: %w", caFile, errdefs.ErrInvalidArgument)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("--tlscert %s / --tlskey %s: %w", certFile, keyFile, err)
	}
	host, _, err := net.SplitHostPort(c.addr)
	if err != nil {
		return fmt.Errorf("invalid host %q: %w", c.host, errdefs.ErrInvalidArgument)
	}
	c.tls = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: host, MinVersion: tls.VersionTLS12}
	return nil
}

// dial connects to the daemon, with TLS when UseTLS set it up.
func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, c.network, c.addr)
	if err != nil || c.tls == nil {
		return conn, err
	}
	tc := tls.Client(conn, c.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("TLS with the berth daemon at %s: %w", c.host, err)
	}
	return tc, nil
}

// Host is the address the client talks to.
func (c *Client) Host() string { return c.host }

// unreachable turns a dial failure into one clear line.
func (c *Client) unreachable(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		switch {
		case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
			return fmt.Errorf("Cannot connect to the berth daemon at %s. Is the daemon running? (start it with `berth daemon`, or point -H/BERTH_HOST at it): %w", c.host, errdefs.ErrUnavailable)
		case errors.Is(err, syscall.EACCES):
			return fmt.Errorf("permission denied while connecting to the berth daemon at %s (the socket is root-only; run as root): %w", c.host, errdefs.ErrForbidden)
		}
	}
	return err
}

// Do sends a request and returns the response when its status is 2xx or
// 304; other statuses become errors carrying the daemon's message.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body io.Reader, contentType string) (*http.Response, error) {
	return c.DoHeader(ctx, method, path, query, nil, body, contentType)
}

// DoHeader is Do with extra request headers (such as X-Registry-Auth).
func (c *Client) DoHeader(ctx context.Context, method, path string, query url.Values, header http.Header, body io.Reader, contentType string) (*http.Response, error) {
	u := "http://berth" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.unreachable(err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

func decodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e api.ErrorResponse
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &e) == nil && e.Message != "" {
		msg = e.Message
	}
	class := errdefs.FromKind(e.Kind)
	if class == nil {
		switch resp.StatusCode {
		case 404:
			class = errdefs.ErrNotFound
		case 409:
			class = errdefs.ErrConflict
		case 400:
			class = errdefs.ErrInvalidArgument
		case 401:
			class = errdefs.ErrUnauthorized
		case 403:
			class = errdefs.ErrForbidden
		case 501:
			class = errdefs.ErrNotImplemented
		case 503:
			class = errdefs.ErrUnavailable
		}
	}
	return &ResponseError{Message: msg, Status: resp.StatusCode, class: class}
}

// ResponseError is an error answered by the daemon.
type ResponseError struct {
	Message string
	Status  int
	class   error
}

func (e *ResponseError) Error() string { return "Error response from daemon: " + e.Message }

// Unwrap exposes the error class for errors.Is.
func (e *ResponseError) Unwrap() error { return e.class }

// JSON sends v (if not nil) as JSON and decodes the reply into out (if not nil).
func (c *Client) JSON(ctx context.Context, method, path string, query url.Values, v, out any) error {
	var body io.Reader
	ct := ""
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		body, ct = bytes.NewReader(b), "application/json"
	}
	resp, err := c.Do(ctx, method, path, query, body, ct)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusNotModified {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("decoding the daemon's answer to %s %s: %w", method, path, err)
		}
	} else {
		io.Copy(io.Discard, resp.Body)
	}
	return nil
}

// Stream is a hijacked connection: reads come through Reader (which may
// hold bytes that arrived with the response), writes go to Conn.
type Stream struct {
	Conn   net.Conn
	Reader *bufio.Reader
}

// Read reads the stream.
func (s *Stream) Read(p []byte) (int, error) { return s.Reader.Read(p) }

// Write writes to the stream.
func (s *Stream) Write(p []byte) (int, error) { return s.Conn.Write(p) }

// CloseWrite half-closes the stream: the remote sees EOF on stdin.
func (s *Stream) CloseWrite() error {
	if cw, ok := s.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Close closes the stream.
func (s *Stream) Close() error { return s.Conn.Close() }

// Hijack sends a request asking for a connection upgrade and returns the
// raw stream. Bytes that arrive in the same packet as the response headers
// are kept in the Reader.
func (c *Client) Hijack(ctx context.Context, method, path string, query url.Values, v any) (*Stream, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			return nil, c.unreachable(err)
		}
		return nil, err
	}
	var body []byte
	if v != nil {
		if body, err = json.Marshal(v); err != nil {
			conn.Close()
			return nil, err
		}
	}
	u := path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, _ := http.NewRequest(method, "http://berth"+u, bytes.NewReader(body))
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "tcp")
	if v != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(conn, 32<<10)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("reading the daemon's answer to %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		defer conn.Close()
		return nil, decodeError(resp)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols && resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, fmt.Errorf("unexpected status %s from %s %s", resp.Status, method, path)
	}
	return &Stream{Conn: conn, Reader: br}, nil
}

// Ping checks that the daemon answers.
func (c *Client) Ping(ctx context.Context) error {
	resp, err := c.Do(ctx, http.MethodGet, "/_ping", nil, nil, "")
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// HostFromEnv returns BERTH_HOST, or the default.
func HostFromEnv() string {
	if h := os.Getenv("BERTH_HOST"); h != "" {
		return h
	}
	return DefaultHost
}
