package network

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/berth/berth/internal/errdefs"
)

// maxRange caps how many ports one -p range may publish.
const maxRange = 4096

// ParsePortSpec parses one -p value:
//
//	containerPort[/proto]                       random host port
//	hostPort:containerPort[/proto]
//	hostIP:hostPort:containerPort[/proto]
//	hostIP::containerPort[/proto]               random host port on hostIP
//	[hostIP:]8000-8010:80-90[/proto]            ranges of equal length
//	[hostIP:]:80-90                              random host ports
//
// hostIP may be an IPv4 address ([..] brackets allowed). Proto is tcp
// (default) or udp. Errors name the spec and wrap errdefs.ErrInvalidArgument.
func ParsePortSpec(s string) ([]PortMapping, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("port spec %q: %s (want [hostip:][hostport:]containerport[/tcp|udp]): %w", s, fmt.Sprintf(format, a...), errdefs.ErrInvalidArgument)
	}
	rest, proto := s, "tcp"
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		rest, proto = s[:i], strings.ToLower(s[i+1:])
		if proto != "tcp" && proto != "udp" {
			return nil, bad("protocol %q is not tcp or udp", s[i+1:])
		}
	}
	if rest == "" {
		return nil, bad("no container port")
	}
	var hostIP, hostPart, ctrPart string
	// An IP may be bracketed: [127.0.0.1]:80:80.
	if strings.HasPrefix(rest, "[") {
		j := strings.IndexByte(rest, ']')
		if j < 0 || j+1 >= len(rest) || rest[j+1] != ':' {
			return nil, bad("unterminated [host ip]")
		}
		hostIP = rest[1:j]
		rest = rest[j+2:]
		parts := strings.Split(rest, ":")
		if len(parts) != 2 {
			return nil, bad("want hostport:containerport after the host ip")
		}
		hostPart, ctrPart = parts[0], parts[1]
	} else {
		parts := strings.Split(rest, ":")
		switch len(parts) {
		case 1:
			ctrPart = parts[0]
		case 2:
			hostPart, ctrPart = parts[0], parts[1]
		case 3:
			hostIP, hostPart, ctrPart = parts[0], parts[1], parts[2]
		default:
			return nil, bad("too many colons")
		}
	}
	if hostIP != "" {
		a, err := netip.ParseAddr(hostIP)
		if err != nil || !a.Is4() {
			return nil, bad("host ip %q is not an IPv4 address", hostIP)
		}
		hostIP = a.String()
		if a.IsUnspecified() {
			hostIP = ""
		}
	}
	cLo, cHi, err := parseRange(ctrPart, false)
	if err != nil {
		return nil, bad("container port: %v", err)
	}
	var hLo, hHi uint16
	if hostPart != "" {
		hLo, hHi, err = parseRange(hostPart, true)
		if err != nil {
			return nil, bad("host port: %v", err)
		}
		if hHi-hLo != cHi-cLo && hHi != hLo {
			return nil, bad("host range %d-%d and container range %d-%d differ in length", hLo, hHi, cLo, cHi)
		}
		if hHi == hLo && cHi != cLo && hLo != 0 {
			return nil, bad("one host port %d for the container range %d-%d", hLo, cLo, cHi)
		}
	}
	if int(cHi)-int(cLo)+1 > maxRange {
		return nil, bad("range of more than %d ports", maxRange)
	}
	out := make([]PortMapping, 0, int(cHi-cLo)+1)
	for i := 0; i <= int(cHi-cLo); i++ {
		m := PortMapping{HostIP: hostIP, ContainerPort: cLo + uint16(i), Proto: proto}
		if hLo != 0 {
			m.HostPort = hLo + uint16(i)
		}
		out = append(out, m)
	}
	return out, nil
}

func parseRange(s string, zeroOK bool) (lo, hi uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	lo, err = parsePort(a, zeroOK && !isRange)
	if err != nil {
		return 0, 0, err
	}
	if !isRange {
		return lo, lo, nil
	}
	hi, err = parsePort(b, false)
	if err != nil {
		return 0, 0, err
	}
	if hi < lo {
		return 0, 0, fmt.Errorf("range %s ends before it starts", s)
	}
	return lo, hi, nil
}

func parsePort(s string, zeroOK bool) (uint16, error) {
	if s == "" || len(s) > 5 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a port number", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > 65535 || (n == 0 && !zeroOK) {
		return 0, fmt.Errorf("%q is not a port number between 1 and 65535", s)
	}
	return uint16(n), nil
}

// ExposeAll turns an image's exposed ports ("80/tcp", "53/udp", "8080")
// into random-host-port mappings, as -P does. The result is sorted.
func ExposeAll(exposed []string) ([]PortMapping, error) {
	var out []PortMapping
	seen := map[PortMapping]bool{}
	for _, e := range exposed {
		ms, err := ParsePortSpec(e)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			if m.HostPort != 0 || m.HostIP != "" {
				return nil, fmt.Errorf("exposed port %q: want containerport[/proto] only: %w", e, errdefs.ErrInvalidArgument)
			}
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ContainerPort != out[j].ContainerPort {
			return out[i].ContainerPort < out[j].ContainerPort
		}
		return out[i].Proto < out[j].Proto
	})
	return out, nil
}
