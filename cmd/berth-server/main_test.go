package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
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
