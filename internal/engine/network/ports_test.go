package network

import (
	"errors"
	"reflect"
	"testing"

	"github.com/berth/berth/internal/errdefs"
)

func TestParsePortSpec(t *testing.T) {
	tcp := func(ip string, h, c uint16) PortMapping {
		return PortMapping{HostIP: ip, HostPort: h, ContainerPort: c, Proto: "tcp"}
	}
	tests := []struct {
		in   string
		want []PortMapping
	}{
		{"80", []PortMapping{tcp("", 0, 80)}},
		{"8080:80", []PortMapping{tcp("", 8080, 80)}},
		{"8080:80/tcp", []PortMapping{tcp("", 8080, 80)}},
		{"53:53/udp", []PortMapping{{HostPort: 53, ContainerPort: 53, Proto: "udp"}}},
		{"53:53/UDP", []PortMapping{{HostPort: 53, ContainerPort: 53, Proto: "udp"}}},
		{"127.0.0.1:8080:80", []PortMapping{tcp("127.0.0.1", 8080, 80)}},
		{"[127.0.0.1]:8080:80", []PortMapping{tcp("127.0.0.1", 8080, 80)}},
		{"127.0.0.1::80", []PortMapping{tcp("127.0.0.1", 0, 80)}},
		{"0.0.0.0:8080:80", []PortMapping{tcp("", 8080, 80)}},
		{"8000-8001:80-81", []PortMapping{tcp("", 8000, 80), tcp("", 8001, 81)}},
		{"80-81", []PortMapping{tcp("", 0, 80), tcp("", 0, 81)}},
		{":80", []PortMapping{tcp("", 0, 80)}},
		{"0:80", []PortMapping{tcp("", 0, 80)}},
	}
	for _, tt := range tests {
		got, err := ParsePortSpec(tt.in)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParsePortSpec(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	bad := []string{"", "/tcp", "80/sctp", "0", "65536", "abc", "-1", "8080:", "1:2:3:4", "::1:80:80",
		"300.1.1.1:80:80", "8000-8002:80-81", "8000:80-81", "90-80", "[127.0.0.1:80:80", "[127.0.0.1]80:80", "80/", "1-70000",
		"+80", " 80", "08080a"}
	for _, in := range bad {
		got, err := ParsePortSpec(in)
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParsePortSpec(%q) = %+v, %v; want ErrInvalidArgument", in, got, err)
		}
	}
}

func TestExposeAll(t *testing.T) {
	got, err := ExposeAll([]string{"8080/tcp", "53/udp", "80", "80/tcp"})
	want := []PortMapping{{ContainerPort: 53, Proto: "udp"}, {ContainerPort: 80, Proto: "tcp"}, {ContainerPort: 8080, Proto: "tcp"}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ExposeAll = %+v, %v; want %+v", got, err, want)
	}
	if _, err := ExposeAll([]string{"1:80"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("ExposeAll with a host port: %v, want ErrInvalidArgument", err)
	}
}

// FuzzParsePortSpec: any input either parses into valid mappings or fails
// with ErrInvalidArgument; never panics.
func FuzzParsePortSpec(f *testing.F) {
	for _, s := range []string{"80", "8080:80/udp", "127.0.0.1:8080:80", "[127.0.0.1]::80", "8000-8010:80-90", "1-65535", "::", "/", "[]:1:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := ParsePortSpec(s)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("ParsePortSpec(%q) error %v is not ErrInvalidArgument", s, err)
			}
			return
		}
		if len(ms) == 0 || len(ms) > maxRange {
			t.Fatalf("ParsePortSpec(%q) returned %d mappings", s, len(ms))
		}
		for _, m := range ms {
			if m.ContainerPort == 0 || (m.Proto != "tcp" && m.Proto != "udp") {
				t.Fatalf("ParsePortSpec(%q) returned invalid mapping %+v", s, m)
			}
		}
	})
}
