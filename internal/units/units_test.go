package units

import (
	"testing"
	"time"
)

func TestRAMInBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{"1024", 1024, false}, {"64m", 64 << 20, false}, {"64M", 64 << 20, false}, {"1.5g", 3 << 29, false},
		{"2GiB", 2 << 30, false}, {"100k", 100 << 10, false}, {"10mb", 10 << 20, false},
		{"", 0, true}, {"abc", 0, true}, {"-1m", 0, true}, {"12x", 0, true},
	} {
		got, err := RAMInBytes(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("RAMInBytes(%q) = %d, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("RAMInBytes(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestHuman(t *testing.T) {
	if got := HumanSize(4190000); got != "4.19MB" {
		t.Errorf("HumanSize = %q, want 4.19MB", got)
	}
	if got := HumanDuration(90 * time.Second); got != "About a minute" {
		t.Errorf("HumanDuration(90s) = %q", got)
	}
	if got := HumanDuration(5 * time.Minute); got != "5 minutes" {
		t.Errorf("HumanDuration(5m) = %q", got)
	}
}
