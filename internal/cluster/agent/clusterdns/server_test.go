package clusterdns

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/berth/berth/internal/engine/network/dns"
)

// query asks server one question over proto and returns the parsed reply.
func query(t testing.TB, proto, server, name string, qtype dnsmessage.Type) *dnsmessage.Message {
	t.Helper()
	m, err := exchangeQuery(proto, server, name, qtype, false)
	if err != nil {
		t.Fatalf("%s %s %v: %v", proto, name, qtype, err)
	}
	return m
}

func exchangeQuery(proto, server, name string, qtype dnsmessage.Type, edns bool) (*dnsmessage.Message, error) {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 0x4242, RecursionDesired: true})
	_ = b.StartQuestions()
	if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: qtype, Class: dnsmessage.ClassINET}); err != nil {
		return nil, err
	}
	if edns {
		_ = b.StartAdditionals()
		var h dnsmessage.ResourceHeader
		_ = h.SetEDNS0(4096, dnsmessage.RCodeSuccess, false)
		_ = b.OPTResource(h, dnsmessage.OPTResource{})
	}
	req, _ := b.Finish()
	out, err := dns.Exchange(proto, server, req, 2*time.Second)
	if err != nil {
		return nil, err
	}
	var m dnsmessage.Message
	if err := m.Unpack(out); err != nil {
		return nil, err
	}
	return &m, nil
}

// startServer runs the cluster DNS on a loopback port against a fake
// clientset holding objs, with upstream as its only resolver.
func startServer(t testing.TB, upstream string, objs ...runtime.Object) (addr string, cs *fake.Clientset) {
	t.Helper()
	cs = fake.NewClientset(objs...)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cs, Options{Address: "127.0.0.1", Port: -1, Upstreams: func() []string { return []string{upstream} }, Ready: func(a string) { ready <- a }, Logger: slog.New(slog.DiscardHandler)})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case addr = <-ready:
	case err := <-done:
		done <- nil // for the cleanup
		t.Fatalf("Run returned before serving: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the cluster DNS did not start in 10s")
	}
	return addr, cs
}

func TestServer(t *testing.T) {
	up, err := dns.Listen(dns.Options{Addr: "127.0.0.1:0", Lookup: func(n string) []netip.Addr {
		if n == "example.test" {
			return []netip.Addr{netip.MustParseAddr("192.0.2.99")}
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	// A headless service with enough endpoints to overflow 512 bytes.
	big := svc("default", "big", corev1.ClusterIPNone, port("p", corev1.ProtocolTCP, 1))
	var eps []ep
	for i := range 60 {
		eps = append(eps, ep{fmt.Sprintf("10.88.3.%d", i+1), "", true})
	}
	addr, cs := startServer(t, up.Addr(),
		svc("default", "kubernetes", "10.43.0.1", port("https", corev1.ProtocolTCP, 443)),
		big, slice("default", "big", "big-a", nil, eps...))

	for _, proto := range []string{"udp", "tcp"} {
		m := query(t, proto, addr, "Kubernetes.default.svc.cluster.local.", dnsmessage.TypeA)
		if !m.Authoritative || m.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != 1 || m.Answers[0].Body.(*dnsmessage.AResource).A != [4]byte{10, 43, 0, 1} {
			t.Errorf("%s: kubernetes A: got %v %v, want one authoritative A 10.43.0.1", proto, m.RCode, m.Answers)
		} else if m.Answers[0].Header.Name.String() != "Kubernetes.default.svc.cluster.local." {
			t.Errorf("%s: answer name %s, want the question's spelling", proto, m.Answers[0].Header.Name)
		}
		m = query(t, proto, addr, "nope.default.svc.cluster.local.", dnsmessage.TypeA)
		if m.RCode != dnsmessage.RCodeNameError || len(m.Authorities) != 1 || m.Authorities[0].Header.Type != dnsmessage.TypeSOA {
			t.Errorf("%s: unknown service: got %v authority %v, want NXDOMAIN with the SOA", proto, m.RCode, m.Authorities)
		}
		m = query(t, proto, addr, "example.test.", dnsmessage.TypeA)
		if m.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != 1 || m.Answers[0].Body.(*dnsmessage.AResource).A != [4]byte{192, 0, 2, 99} {
			t.Errorf("%s: forwarded name: got %v %v, want A 192.0.2.99 from the upstream", proto, m.RCode, m.Answers)
		}
	}

	// 60 addresses do not fit a 512-byte UDP reply: truncated, then whole
	// over TCP or with EDNS0.
	m := query(t, "udp", addr, "big.default.svc.cluster.local.", dnsmessage.TypeA)
	if !m.Truncated || len(m.Answers) != 0 {
		t.Errorf("udp big: truncated=%v with %d answers, want TC and none", m.Truncated, len(m.Answers))
	}
	if m = query(t, "tcp", addr, "big.default.svc.cluster.local.", dnsmessage.TypeA); m.Truncated || len(m.Answers) != 60 {
		t.Errorf("tcp big: truncated=%v with %d answers, want all 60", m.Truncated, len(m.Answers))
	}
	if m, err := exchangeQuery("udp", addr, "big.default.svc.cluster.local.", dnsmessage.TypeA, true); err != nil || m.Truncated || len(m.Answers) != 60 {
		t.Errorf("udp+edns big: %v, want all 60 answers", err)
	}

	// A service created later is answered once the informer has it.
	ctx := context.Background()
	if _, err := cs.CoreV1().Services("apps").Create(ctx, svc("apps", "late", "10.43.7.7"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		m := query(t, "udp", addr, "late.apps.svc.cluster.local.", dnsmessage.TypeA)
		if len(m.Answers) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("late service: still %v after 5s", m.RCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cs.CoreV1().Services("apps").Delete(ctx, "late", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for deadline = time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if m := query(t, "udp", addr, "late.apps.svc.cluster.local.", dnsmessage.TypeA); m.RCode == dnsmessage.RCodeNameError {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("deleted service: still answered after 5s")
		}
	}
}

// TestServerRate measures the queries per second of local answers over
// UDP (4 clients, 2 s at most) and logs it; it fails only if the server
// drops or misanswers.
func TestServerRate(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	addr, _ := startServer(t, "127.0.0.1:1", svc("default", "web", "10.43.0.20", port("http", corev1.ProtocolTCP, 80)))
	var n, bad atomic.Int64
	stop := time.Now().Add(2 * time.Second)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50000 && time.Now().Before(stop); i++ {
				m, err := exchangeQuery("udp", addr, "web.default.svc.cluster.local.", dnsmessage.TypeA, false)
				if err != nil || len(m.Answers) != 1 {
					bad.Add(1)
					continue
				}
				n.Add(1)
			}
		}()
	}
	start := time.Now()
	wg.Wait()
	t.Logf("%d local UDP answers in %v: %.0f queries/s (4 clients, one socket per query)", n.Load(), time.Since(start).Round(time.Millisecond), float64(n.Load())/time.Since(start).Seconds())
	if bad.Load() > n.Load()/100 {
		t.Errorf("%d of %d queries failed", bad.Load(), n.Load()+bad.Load())
	}
}
