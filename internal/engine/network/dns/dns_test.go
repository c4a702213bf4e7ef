package dns

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

func mapLookup(m map[string]string) func(string) []netip.Addr {
	return func(n string) []netip.Addr {
		if a, ok := m[n]; ok {
			return []netip.Addr{netip.MustParseAddr(a)}
		}
		return nil
	}
}

func start(t *testing.T, o Options) *Server {
	t.Helper()
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	s, err := Listen(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func resolver(addr, proto string) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, proto, addr)
	}}
}

func TestLocalAndForwarded(t *testing.T) {
	up := start(t, Options{Lookup: mapLookup(map[string]string{"example.test": "192.0.2.99"})})
	s := start(t, Options{
		Lookup:    mapLookup(map[string]string{"web": "10.1.0.2", "db.alias": "10.1.0.3"}),
		Upstreams: func() []string { return []string{"127.0.0.1:1", up.Addr()} }, // first one fails
		Timeout:   500 * time.Millisecond,
	})
	for _, proto := range []string{"udp", "tcp"} {
		r := resolver(s.Addr(), proto)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		tests := []struct{ name, want string }{
			{"web", "10.1.0.2"},
			{"WEB.", "10.1.0.2"},
			{"db.alias", "10.1.0.3"},
			{"example.test", "192.0.2.99"},
		}
		for _, tt := range tests {
			got, err := r.LookupIP(ctx, "ip4", tt.name)
			if err != nil || len(got) != 1 || got[0].String() != tt.want {
				t.Errorf("%s: LookupIP(%q) = %v, %v; want [%s]", proto, tt.name, got, err, tt.want)
			}
		}
		if got, err := r.LookupIP(ctx, "ip4", "missing.test"); err == nil {
			t.Errorf("%s: LookupIP(missing.test) = %v, want an error", proto, got)
		}
		cancel()
	}
}

func query(t *testing.T, addr, name string, typ dnsmessage.Type) dnsmessage.Message {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 4242, RecursionDesired: true})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET})
	req, _ := b.Finish()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write(req)
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	var m dnsmessage.Message
	if err := m.Unpack(buf[:n]); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRcodes(t *testing.T) {
	open := start(t, Options{Lookup: mapLookup(map[string]string{"web": "10.1.0.2"})})
	fenced := start(t, Options{Lookup: mapLookup(map[string]string{"web": "10.1.0.2"}), Allow: netip.MustParsePrefix("10.1.0.0/24")})
	tests := []struct {
		desc      string
		addr      string
		name      string
		typ       dnsmessage.Type
		wantRcode dnsmessage.RCode
		wantN     int
	}{
		{"local A", open.Addr(), "web.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, 1},
		{"local AAAA is empty", open.Addr(), "web.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, 0},
		{"unknown, no upstream", open.Addr(), "other.", dnsmessage.TypeA, dnsmessage.RCodeServerFailure, 0},
		{"client outside the network", fenced.Addr(), "web.", dnsmessage.TypeA, dnsmessage.RCodeRefused, 0},
	}
	for _, tt := range tests {
		m := query(t, tt.addr, tt.name, tt.typ)
		if m.ID != 4242 || m.RCode != tt.wantRcode || len(m.Answers) != tt.wantN {
			t.Errorf("%s: got id %d rcode %v answers %d, want id 4242 rcode %v answers %d", tt.desc, m.ID, m.RCode, len(m.Answers), tt.wantRcode, tt.wantN)
		}
	}
}

func TestCloseIsIdempotentAndFreesPort(t *testing.T) {
	s, err := Listen(Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	s.Close()
	s.Close()
	s2, err := Listen(Options{Addr: addr})
	if err != nil {
		t.Fatalf("re-listen on %s after Close: %v", addr, err)
	}
	s2.Close()
}

func TestParseResolvConf(t *testing.T) {
	in := "# comment\nnameserver 10.0.0.53\nnameserver bogus\nnameserver 127.0.0.53 # local\nsearch a.example b.example\noptions ndots:2 edns0\n"
	got := ParseResolvConf([]byte(in))
	want := ResolvConf{Nameservers: []string{"10.0.0.53", "127.0.0.53"}, Search: []string{"a.example", "b.example"}, Options: []string{"ndots:2", "edns0"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseResolvConf = %+v, want %+v", got, want)
	}
}

func TestHostUpstreams(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(p, []byte("nameserver 10.0.0.53\nnameserver 10.1.0.1\n"), 0o644)
	f := HostUpstreams(p, func(a netip.Addr) bool { return a.String() == "10.1.0.1" })
	if got, want := f(), []string{"10.0.0.53:53"}; !reflect.DeepEqual(got, want) {
		t.Errorf("HostUpstreams = %v, want %v", got, want)
	}
	time.Sleep(10 * time.Millisecond)
	os.WriteFile(p, []byte("nameserver 10.0.0.54\nnameserver 10.0.0.55\n"), 0o644)
	if got, want := f(), []string{"10.0.0.54:53", "10.0.0.55:53"}; !reflect.DeepEqual(got, want) {
		t.Errorf("HostUpstreams after change = %v, want %v", got, want)
	}
}

// FuzzAnswer feeds arbitrary packets to the request handler: it must never
// panic, and what it sends back must parse as a DNS response.
func FuzzAnswer(f *testing.F) {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 1})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("web."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	q, _ := b.Finish()
	f.Add(q, true)
	f.Add(q, false)
	f.Add([]byte{}, true)
	f.Add([]byte{0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0}, true)
	f.Add([]byte{0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'w', 'e', 'b', 0, 0, 1, 0, 1}, true)
	s := &Server{handler: lookupHandler(mapLookup(map[string]string{"web": "10.1.0.2"}))}
	f.Fuzz(func(t *testing.T, req []byte, allowed bool) {
		resp, _ := s.answer(req, allowed, "udp")
		if resp == nil {
			return
		}
		var m dnsmessage.Message
		if err := m.Unpack(resp); err != nil {
			t.Fatalf("answer produced an unparseable message: %v", err)
		}
		if !m.Response {
			t.Fatalf("answer produced a message without the response bit")
		}
		if len(req) >= 2 && m.ID != uint16(req[0])<<8|uint16(req[1]) {
			t.Fatalf("answer id %d does not match request", m.ID)
		}
	})
}
