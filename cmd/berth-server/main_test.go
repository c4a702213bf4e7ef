package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"

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
