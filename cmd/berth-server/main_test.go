package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/internal/cluster/agent"
)

// --help prints a synopsis and the flags in their --name form, and is not
// an error.
func TestSubcommandHelp(t *testing.T) {
	fs := newFlagSet("agent", "agent --server URL [flags]", "Join a cluster.")
	var out bytes.Buffer
	fs.SetOutput(&out)
	fs.String("server", "", "API server to join")
	fs.Duration("lease-duration", 0, "lease")
	err := fs.Parse([]string{"--help"})
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: got %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"usage: berth agent --server URL [flags]", "Join a cluster.", "  --server string", "  --lease-duration duration"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, out.String())
		}
	}
}

func TestBenchVerdicts(t *testing.T) {
	ok := []phaseResult{
		{rate: 100, verb: "create", mutating: true, p99: 4 * time.Millisecond},
		{rate: 100, verb: "get", p99: 90 * time.Millisecond}, // reads do not count
		{rate: 100, verb: "delete", mutating: true, p99: 3 * time.Millisecond},
		{rate: 1000, verb: "create", mutating: true, p99: 80 * time.Millisecond}, // nor other rates
	}
	got := verdicts(ok, 40, 0)
	for _, want := range []string{"PASS mutating p99 at 100 req/s ≤ 20.00 ms: 4.00 ms", "PASS idle RSS ≤ 100 MB: 40.0 MB", "PASS every watch event delivered: 0 of 200 missed"} {
		if !strings.Contains(got, want) {
			t.Errorf("verdicts lack %q:\n%s", want, got)
		}
	}
	slow := append([]phaseResult{{rate: 100, verb: "update", mutating: true, p99: 25 * time.Millisecond}}, ok...)
	failing := append([]phaseResult{{rate: 100, verb: "update", mutating: true, p99: time.Millisecond, errors: 3}}, ok...)
	for name, c := range map[string]struct {
		phases []phaseResult
		rss    float64
		missed int
		want   string
	}{
		"slow update":    {slow, 40, 0, "MISS mutating p99 at 100 req/s ≤ 20.00 ms: 25.00 ms"},
		"errors":         {failing, 40, 0, "MISS mutating p99 at 100 req/s ≤ 20.00 ms: 4.00 ms (update 1.00 ms, create 4.00 ms, delete 3.00 ms; 3 errors)"},
		"not measured":   {nil, 40, 0, "MISS mutating p99 at 100 req/s ≤ 20.00 ms: not measured"},
		"fat":            {ok, 120, 0, "MISS idle RSS ≤ 100 MB: 120.0 MB"},
		"missed watches": {ok, 40, 2, "MISS every watch event delivered: 2 of 200 missed"},
	} {
		if got := verdicts(c.phases, c.rss, c.missed); !strings.Contains(got, c.want) {
			t.Errorf("%s: verdicts lack %q:\n%s", name, c.want, got)
		}
	}
}

// A wrong --proxy-mode is refused before anything starts, naming the flag.
func TestProxyModeFlag(t *testing.T) {
	for _, tc := range []struct {
		mode string
		ok   bool
	}{{"nftables", true}, {"none", true}, {"iptables", false}, {"", false}} {
		o := agent.Options{ProxyMode: tc.mode}
		err := parseNodeFlags(&o, "", "")
		if (err == nil) != tc.ok {
			t.Errorf("--proxy-mode %q: got error %v, want ok=%v", tc.mode, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "--proxy-mode") {
			t.Errorf("--proxy-mode %q: error %q does not name the flag", tc.mode, err)
		}
	}
}
