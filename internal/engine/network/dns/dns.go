// Package dns owns berth's embedded DNS server: one per network, listening on
// the network's gateway address (UDP and TCP), answering A queries for the
// names of that network's containers (names, aliases, short IDs) and
// forwarding every other query unchanged to the host's resolvers. Clients
// outside the network's subnet get REFUSED, so one network cannot learn
// another network's names through its server.
package dns

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// TTL of the answers for local names, in seconds. Short: containers come and go.
const TTL = 10

// Options configures a Server.
type Options struct {
	// Addr is the listening address, "ip:port" (port 53 for containers).
	Addr string
	// Allow, when valid, restricts clients to this prefix; others get REFUSED.
	Allow netip.Prefix
	// Lookup returns the addresses of a local name (lower case, no trailing
	// dot), or nothing when the name is not local.
	Lookup func(name string) []netip.Addr
	// Handler, when set, replaces Lookup: it answers a question locally
	// (local=true; the reply is sent authoritative) or leaves it to the
	// upstreams. It must be safe for concurrent use.
	Handler func(q dnsmessage.Question) (r Reply, local bool)
	// Upstreams returns the "ip:port" resolvers to forward other queries to.
	// Nil or empty: other queries get SERVFAIL (internal networks).
	Upstreams func() []string
	// Timeout for one upstream exchange; 0 means 2s.
	Timeout time.Duration
	Logger  *slog.Logger
}

// Server is a running DNS server. Close stops it.
type Server struct {
	opts    Options
	handler func(dnsmessage.Question) (Reply, bool)
	udp     net.PacketConn
	tcp     net.Listener
	wg      sync.WaitGroup

	inflight chan struct{} // bounds concurrent UDP requests

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
}

// maxInflight bounds the UDP requests handled at once (each may wait on
// an upstream); more are dropped and the client retries.
const maxInflight = 256

// Listen binds UDP and TCP on opts.Addr and serves until Close.
func Listen(opts Options) (*Server, error) {
	if opts.Lookup == nil {
		opts.Lookup = func(string) []netip.Addr { return nil }
	}
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	udp, err := net.ListenPacket("udp4", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("dns: listen udp %s: %w", opts.Addr, err)
	}
	// Same port as the UDP socket when the caller asked for port 0.
	tcp, err := net.Listen("tcp4", udp.LocalAddr().String())
	if err != nil {
		udp.Close()
		return nil, fmt.Errorf("dns: listen tcp %s: %w", opts.Addr, err)
	}
	handler := opts.Handler
	if handler == nil {
		handler = lookupHandler(opts.Lookup)
	}
	s := &Server{opts: opts, handler: handler, udp: udp, tcp: tcp, conns: map[net.Conn]struct{}{}, inflight: make(chan struct{}, maxInflight)}
	s.wg.Add(2)
	go s.serveUDP()
	go s.serveTCP()
	return s, nil
}

// Addr is the bound address ("ip:port").
func (s *Server) Addr() string { return s.udp.LocalAddr().String() }

// Close stops the server and waits for its goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.udp.Close()
	s.tcp.Close()
	s.wg.Wait()
	return nil
}

func (s *Server) allowed(a net.Addr) bool {
	if !s.opts.Allow.IsValid() {
		return true
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return false
	}
	return s.opts.Allow.Contains(ap.Addr().Unmap())
}

func (s *Server) serveUDP() {
	defer s.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := s.udp.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		select {
		case s.inflight <- struct{}{}:
		default:
			continue // overloaded: drop, the client retries
		}
		req := append([]byte(nil), buf[:n]...)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.inflight }()
			resp := s.handle(req, s.allowed(from), "udp")
			if resp != nil {
				s.udp.WriteTo(resp, from)
			}
		}()
	}
}

func (s *Server) serveTCP() {
	defer s.wg.Done()
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		if len(s.conns) >= maxInflight {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			allowed := s.allowed(c.RemoteAddr())
			r := bufio.NewReader(c)
			for {
				c.SetDeadline(time.Now().Add(10 * time.Second))
				req, err := readTCPMsg(r)
				if err != nil {
					return
				}
				resp := s.handle(req, allowed, "tcp")
				if resp == nil {
					return
				}
				if err := writeTCPMsg(c, resp); err != nil {
					return
				}
			}
		}()
	}
}

func readTCPMsg(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

func writeTCPMsg(w io.Writer, msg []byte) error {
	b := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(b, uint16(len(msg)))
	copy(b[2:], msg)
	_, err := w.Write(b)
	return err
}

// handle answers one request; nil means drop it (unparseable header).
func (s *Server) handle(req []byte, allowed bool, proto string) []byte {
	resp, forward := s.answer(req, allowed, proto)
	if !forward {
		return resp
	}
	var ups []string
	if s.opts.Upstreams != nil {
		ups = s.opts.Upstreams()
	}
	for _, up := range ups {
		out, err := Exchange(proto, up, req, s.opts.Timeout)
		if err == nil {
			return out
		}
		s.opts.Logger.Debug("dns: upstream failed", "upstream", up, "err", err)
	}
	return resp // SERVFAIL prepared by answer
}

// answer builds the reply to req. forward=true means the query is not local
// and should be forwarded; resp then holds the SERVFAIL to send if no
// upstream answers. A nil resp with forward=false means: drop.
func (s *Server) answer(req []byte, allowed bool, proto string) (resp []byte, forward bool) {
	var p dnsmessage.Parser
	h, err := p.Start(req)
	if err != nil || h.Response {
		return nil, false
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	if !allowed {
		rh.RCode = dnsmessage.RCodeRefused
		return build(rh, nil, nil, 0), false
	}
	if h.OpCode != 0 {
		rh.RCode = dnsmessage.RCodeNotImplemented
		return build(rh, nil, nil, 0), false
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		rh.RCode = dnsmessage.RCodeFormatError
		return build(rh, nil, nil, 0), false
	}
	q := qs[0]
	if r, local := s.handler(q); local {
		rh.RCode, rh.Authoritative = r.RCode, true
		limit := 0
		if proto == "udp" {
			limit = udpLimit(&p)
		}
		return build(rh, &q, &r, limit), false
	}
	rh.RCode = dnsmessage.RCodeServerFailure
	return build(rh, &q, nil, 0), true
}

// Reply is a local answer to one question.
type Reply struct {
	RCode       dnsmessage.RCode
	Answers     []dnsmessage.Resource
	Authorities []dnsmessage.Resource
	Additionals []dnsmessage.Resource
}

// lookupHandler answers A queries for the names Lookup knows; a known name
// asked for another type gets an empty answer (NODATA).
func lookupHandler(lookup func(string) []netip.Addr) func(dnsmessage.Question) (Reply, bool) {
	return func(q dnsmessage.Question) (Reply, bool) {
		if q.Class != dnsmessage.ClassINET && q.Class != dnsmessage.ClassANY {
			return Reply{}, false
		}
		name := strings.ToLower(strings.TrimSuffix(q.Name.String(), "."))
		addrs := lookup(name)
		if len(addrs) == 0 {
			return Reply{}, false
		}
		var r Reply
		if q.Type == dnsmessage.TypeA || q.Type == dnsmessage.TypeALL {
			for _, a := range addrs {
				if a.Is4() {
					r.Answers = append(r.Answers, dnsmessage.Resource{
						Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: TTL},
						Body:   &dnsmessage.AResource{A: a.As4()},
					})
				}
			}
		}
		return r, true
	}
}

// udpLimit is the largest UDP reply the client takes: 512 bytes, or the
// size its EDNS0 OPT record announces. p has read the questions.
func udpLimit(p *dnsmessage.Parser) int {
	limit := 512
	if p.SkipAllAnswers() != nil || p.SkipAllAuthorities() != nil {
		return limit
	}
	for {
		h, err := p.AdditionalHeader()
		if err != nil {
			return limit
		}
		if h.Type == dnsmessage.TypeOPT {
			if n := int(h.Class); n > limit {
				limit = min(n, 65535)
			}
			return limit
		}
		if p.SkipAdditional() != nil {
			return limit
		}
	}
}

// build encodes a reply; with limit > 0 (UDP) one that would be larger is
// sent truncated (TC set, no records) so the client retries over TCP.
func build(rh dnsmessage.Header, q *dnsmessage.Question, r *Reply, limit int) []byte {
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	if q != nil {
		if b.StartQuestions() != nil || b.Question(*q) != nil {
			return nil
		}
	}
	if r != nil {
		sections := []struct {
			start func() error
			rrs   []dnsmessage.Resource
		}{{b.StartAnswers, r.Answers}, {b.StartAuthorities, r.Authorities}, {b.StartAdditionals, r.Additionals}}
		for _, sec := range sections {
			if sec.start() != nil {
				return nil
			}
			for _, rr := range sec.rrs {
				if err := addResource(&b, rr); err != nil {
					return nil
				}
			}
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	if limit > 0 && len(out) > limit {
		rh.Truncated = true
		return build(rh, q, nil, 0)
	}
	return out
}

func addResource(b *dnsmessage.Builder, rr dnsmessage.Resource) error {
	switch body := rr.Body.(type) {
	case *dnsmessage.AResource:
		return b.AResource(rr.Header, *body)
	case *dnsmessage.AAAAResource:
		return b.AAAAResource(rr.Header, *body)
	case *dnsmessage.CNAMEResource:
		return b.CNAMEResource(rr.Header, *body)
	case *dnsmessage.SRVResource:
		return b.SRVResource(rr.Header, *body)
	case *dnsmessage.PTRResource:
		return b.PTRResource(rr.Header, *body)
	case *dnsmessage.SOAResource:
		return b.SOAResource(rr.Header, *body)
	case *dnsmessage.TXTResource:
		return b.TXTResource(rr.Header, *body)
	case *dnsmessage.NSResource:
		return b.NSResource(rr.Header, *body)
	case *dnsmessage.MXResource:
		return b.MXResource(rr.Header, *body)
	case *dnsmessage.UnknownResource:
		return b.UnknownResource(rr.Header, *body)
	}
	return fmt.Errorf("dns: resource type %T not supported", rr.Body)
}

// Exchange sends req to server over proto ("udp" or "tcp") and returns the
// reply whose ID matches.
func Exchange(proto, server string, req []byte, timeout time.Duration) ([]byte, error) {
	c, err := net.DialTimeout(proto, server, timeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if proto == "tcp" {
		if err := writeTCPMsg(c, req); err != nil {
			return nil, err
		}
		return readTCPMsg(c)
	}
	if _, err := c.Write(req); err != nil {
		return nil, err
	}
	buf := make([]byte, 65535)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		// Ignore stray datagrams whose ID does not match.
		if n >= 2 && len(req) >= 2 && buf[0] == req[0] && buf[1] == req[1] {
			return buf[:n], nil
		}
	}
}

// ResolvConf is the part of a resolv.conf berth cares about.
type ResolvConf struct {
	Nameservers []string
	Search      []string
	Options     []string
}

// ParseResolvConf reads nameserver, search/domain and options lines.
func ParseResolvConf(data []byte) ResolvConf {
	var rc ResolvConf
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			if a, err := netip.ParseAddr(f[1]); err == nil {
				rc.Nameservers = append(rc.Nameservers, a.String())
			}
		case "search", "domain":
			rc.Search = append([]string(nil), f[1:]...)
		case "options":
			rc.Options = append(rc.Options, f[1:]...)
		}
	}
	return rc
}

// HostUpstreams returns a function that lists the resolvers of the
// resolv.conf at path as "ip:53", re-reading the file when it changes.
// Addresses in exclude (berth's own DNS listeners) are skipped.
func HostUpstreams(path string, exclude func(netip.Addr) bool) func() []string {
	var (
		mu    sync.Mutex
		mtime time.Time
		size  int64
		cache []string
	)
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		st, err := os.Stat(path)
		if err != nil {
			return nil
		}
		if st.ModTime().Equal(mtime) && st.Size() == size && cache != nil {
			return cache
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		out := []string{}
		for _, ns := range ParseResolvConf(data).Nameservers {
			a := netip.MustParseAddr(ns)
			if exclude != nil && exclude(a) {
				continue
			}
			out = append(out, netip.AddrPortFrom(a, 53).String())
		}
		mtime, size, cache = st.ModTime(), st.Size(), out
		return out
	}
}
