package ipam

import (
	"encoding/json"
	"errors"
	"net/netip"
	"testing"

	"github.com/berth/berth/internal/errdefs"
)

func TestNewPool(t *testing.T) {
	tests := []struct {
		subnet, gw string
		wantGW     string
		wantErr    error
	}{
		{"172.30.0.0/16", "", "172.30.0.1", nil},
		{"10.1.2.0/24", "10.1.2.254", "10.1.2.254", nil},
		{"10.1.2.0/24", "10.1.3.1", "", errdefs.ErrInvalidArgument},
		{"10.1.2.0/24", "10.1.2.255", "", errdefs.ErrInvalidArgument},
		{"10.1.2.0/24", "10.1.2.0", "", errdefs.ErrInvalidArgument},
		{"10.1.2.0/24", "nope", "", errdefs.ErrInvalidArgument},
		{"10.1.2.1/24", "", "", errdefs.ErrInvalidArgument},
		{"10.1.2.0/31", "", "", errdefs.ErrInvalidArgument},
		{"fd00::/64", "", "", errdefs.ErrInvalidArgument},
		{"banana", "", "", errdefs.ErrInvalidArgument},
		{"10.0.0.0/4", "", "", errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		p, err := NewPool(tt.subnet, tt.gw)
		if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
			t.Errorf("NewPool(%q, %q) error = %v, want %v", tt.subnet, tt.gw, err, tt.wantErr)
			continue
		}
		if err == nil && p.Gateway.String() != tt.wantGW {
			t.Errorf("NewPool(%q, %q) gateway = %s, want %s", tt.subnet, tt.gw, p.Gateway, tt.wantGW)
		}
	}
}

func TestAllocateExhaustAndRelease(t *testing.T) {
	p, err := NewPool("10.9.0.0/29", "") // .1 gw, .2-.6 usable, .7 broadcast
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Size(), 5; got != want {
		t.Fatalf("Size() = %d, want %d", got, want)
	}
	var got []string
	for i := range 5 {
		a, err := p.Allocate("c" + string(rune('0'+i)))
		if err != nil {
			t.Fatalf("Allocate #%d: %v", i, err)
		}
		got = append(got, a.String())
	}
	want := []string{"10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("allocation %d = %s, want %s", i, got[i], want[i])
		}
	}
	if _, err := p.Allocate("x"); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("Allocate on full pool: got %v, want ErrUnavailable", err)
	}
	p.Release(netip.MustParseAddr("10.9.0.4"))
	a, err := p.Allocate("y")
	if err != nil || a.String() != "10.9.0.4" {
		t.Errorf("Allocate after release = %v, %v; want 10.9.0.4", a, err)
	}
}

func TestNoImmediateReuse(t *testing.T) {
	p, _ := NewPool("10.9.0.0/24", "")
	a, _ := p.Allocate("a")
	p.Release(a)
	b, _ := p.Allocate("b")
	if a == b {
		t.Errorf("released %s was handed out again at once; want the next address", a)
	}
}

func TestStatic(t *testing.T) {
	p, _ := NewPool("10.9.0.0/24", "")
	tests := []struct {
		ip      string
		wantErr error
	}{
		{"10.9.0.10", nil},
		{"10.9.0.10", errdefs.ErrConflict},
		{"10.9.1.10", errdefs.ErrInvalidArgument},
		{"10.9.0.1", errdefs.ErrInvalidArgument},
		{"10.9.0.255", errdefs.ErrInvalidArgument},
		{"10.9.0.0", errdefs.ErrInvalidArgument},
		{"x", errdefs.ErrInvalidArgument},
		{"::1", errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		_, err := p.AllocateStatic(tt.ip, "s")
		if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
			t.Errorf("AllocateStatic(%q) = %v, want %v", tt.ip, err, tt.wantErr)
		}
	}
	// Dynamic allocation skips the static lease.
	for range 20 {
		a, err := p.Allocate("d")
		if err != nil {
			t.Fatal(err)
		}
		if a.String() == "10.9.0.10" {
			t.Fatalf("Allocate handed out the static lease 10.9.0.10")
		}
	}
}

func TestThousandCyclesLeakNothing(t *testing.T) {
	p, _ := NewPool("10.9.0.0/28", "")
	for i := range 1000 {
		a, err := p.Allocate("c")
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		p.Release(a)
	}
	if got := len(p.InUse()); got != 0 {
		t.Errorf("after 1000 cycles %d leases remain, want 0", got)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	p, _ := NewPool("10.9.0.0/24", "10.9.0.254")
	first, _ := p.Allocate("a") // 10.9.0.1: the gateway is .254
	p.Allocate("x")             // 10.9.0.2
	p.Release(first)
	p.AllocateStatic("10.9.0.77", "b")
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var q Pool
	if err := json.Unmarshal(b, &q); err != nil {
		t.Fatal(err)
	}
	if q.Subnet != p.Subnet || q.Gateway != p.Gateway || len(q.Leases) != 2 || q.Leases[netip.MustParseAddr("10.9.0.77")] != "b" {
		t.Errorf("round trip = %+v, want %+v", q, p)
	}
	a, _ := q.Allocate("c")
	if a.String() != "10.9.0.3" {
		t.Errorf("allocation after reload = %s, want 10.9.0.3 (continues after the last one, not the released 10.9.0.1)", a)
	}
}
