package daemon

import (
	"os"
	"strings"
	"testing"

	"github.com/berth/berth/internal/engine/container"
)

// A container on the host's network sees the host's resolv.conf, unless
// it sets DNS options (a Kubernetes ClusterFirstWithHostNet pod).
func TestHostModeResolvConf(t *testing.T) {
	st, _, err := container.NewStore(t.TempDir(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	plain := &container.Container{ID: st.NewID(), Name: "plain"}
	plain.HostConfig.NetworkMode = "host"
	if err := st.Add(plain); err != nil {
		t.Fatal(err)
	}
	if m, err := hostModeResolvConf(plain); err != nil || m.Source != "/etc/resolv.conf" {
		t.Errorf("no DNS options: %v %+v, want the host's /etc/resolv.conf", err, m)
	}
	own := &container.Container{ID: st.NewID(), Name: "own"}
	own.HostConfig.NetworkMode = "host"
	own.HostConfig.DNS = []string{"169.254.20.10"}
	own.HostConfig.DNSSearch = []string{"ns.svc.cluster.local"}
	own.HostConfig.DNSOptions = []string{"ndots:5"}
	if err := st.Add(own); err != nil {
		t.Fatal(err)
	}
	m, err := hostModeResolvConf(own)
	if err != nil || m.Destination != "/etc/resolv.conf" || !strings.HasPrefix(m.Source, own.Dir()) {
		t.Fatalf("DNS options: %v %+v, want the container's own file", err, m)
	}
	data, _ := os.ReadFile(m.Source)
	for _, want := range []string{"nameserver 169.254.20.10\n", "search ns.svc.cluster.local\n", "options ndots:5\n"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("resolv.conf %q lacks %q", data, want)
		}
	}
	d := &Daemon{}
	if ms := d.joinedNetFiles(own); ms[0].Source != m.Source {
		t.Errorf("a container joining it gets %s, want %s", ms[0].Source, m.Source)
	}
}
