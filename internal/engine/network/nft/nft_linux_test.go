package nft

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("nftables tests need root (CAP_NET_ADMIN); run as root to exercise them")
	}
}

func TestApplyReplaceDelete(t *testing.T) {
	needRoot(t)
	table := fmt.Sprintf("berthtest%d", os.Getpid())
	t.Cleanup(func() { Delete(table) })
	rs := Ruleset{
		Bridges: []Bridge{
			{Name: "bt-a", Subnet: netip.MustParsePrefix("10.250.1.0/24"), Gateway: netip.MustParseAddr("10.250.1.1")},
			{Name: "bt-b", Subnet: netip.MustParsePrefix("10.250.2.0/24"), Gateway: netip.MustParseAddr("10.250.2.1"), Internal: true},
		},
		Ports: []Port{
			{Proto: "tcp", HostPort: 8080, Addr: netip.MustParseAddr("10.250.1.2"), Port: 80},
			{Proto: "udp", HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 5353, Addr: netip.MustParseAddr("10.250.1.2"), Port: 53},
			{Proto: "tcp", HostPort: 9090, Addr: netip.MustParseAddr("10.250.2.2"), Port: 80}, // internal: skipped
		},
	}
	if err := Apply(table, rs); err != nil {
		t.Fatal(err)
	}
	got, err := RuleCount(table)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{ChainRaw: 2, ChainPrerouting: 2, ChainOutput: 2, ChainPostrouting: 5, ChainForward: 5, ChainInput: 2}
	for ch, n := range want {
		if got[ch] != n {
			t.Errorf("chain %s has %d rules, want %d", ch, got[ch], n)
		}
	}
	// Cross-check with the nft tool's rendering where it is installed.
	if out, err := exec.Command("nft", "list", "table", "ip", table).CombinedOutput(); err == nil {
		text := string(out)
		for _, s := range []string{
			"fib daddr type local tcp dport 8080 dnat to 10.250.1.2:80",
			"ip daddr 127.0.0.1 udp dport 5353 dnat to 10.250.1.2:53",
			"ip saddr 10.250.1.0/24 oifname != \"bt-a\" masquerade",
			"iifname \"bt-a\" oifname \"bt-b\" drop",
			"ct status dnat accept",
			"ip saddr 10.250.1.0/24 ip daddr 10.250.1.0/24 ip saddr != 10.250.1.1 ip daddr != 10.250.1.1 notrack",
			"iifname \"bt-a\" ip daddr 127.0.0.0/8 ct state ! established,related drop",
		} {
			if !strings.Contains(text, s) {
				t.Errorf("nft list table lacks %q; got:\n%s", s, text)
			}
		}
		if strings.Contains(text, "9090") {
			t.Errorf("port of an internal network was published:\n%s", text)
		}
	}
	// Re-applying a smaller ruleset replaces the table, it does not append.
	if err := Apply(table, Ruleset{}); err != nil {
		t.Fatal(err)
	}
	got, _ = RuleCount(table)
	for ch, n := range got {
		if (ch == ChainForward && n != 1) || (ch != ChainForward && n != 0) {
			t.Errorf("after empty apply chain %s has %d rules", ch, n)
		}
	}
	if err := Delete(table); err != nil {
		t.Fatal(err)
	}
	if ok, _ := Exists(table); ok {
		t.Errorf("table %s still exists after Delete", table)
	}
	if err := Delete(table); err != nil {
		t.Errorf("Delete of a missing table: %v, want nil", err)
	}
}

func TestApplyBadProto(t *testing.T) {
	needRoot(t)
	table := fmt.Sprintf("berthtestbad%d", os.Getpid())
	t.Cleanup(func() { Delete(table) })
	err := Apply(table, Ruleset{Ports: []Port{{Proto: "sctp", HostPort: 1, Addr: netip.MustParseAddr("10.250.1.2"), Port: 1}}})
	if err == nil {
		t.Fatal("Apply with proto sctp: got nil error")
	}
	if ok, _ := Exists(table); ok {
		t.Errorf("failed Apply left table %s behind", table)
	}
}
