package main

import (
	"fmt"
	"slices"
	"time"
)

// summary is the median, minimum and maximum of a set of samples.
type summary struct {
	N                int
	Median, Min, Max float64
}

// summarize returns the summary of xs; ok is false when xs is empty.
// The median of an even number of samples is the mean of the middle two.
func summarize(xs []float64) (s summary, ok bool) {
	if len(xs) == 0 {
		return summary{}, false
	}
	ys := slices.Clone(xs)
	slices.Sort(ys)
	n := len(ys)
	med := ys[n/2]
	if n%2 == 0 {
		med = (ys[n/2-1] + ys[n/2]) / 2
	}
	return summary{N: n, Median: med, Min: ys[0], Max: ys[n-1]}, true
}

// ms converts a duration to float milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fmtMS formats milliseconds with a precision that suits the magnitude.
func fmtMS(v float64) string {
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f ms", v)
	case v < 1000:
		return fmt.Sprintf("%.1f ms", v)
	default:
		return fmt.Sprintf("%.0f ms", v)
	}
}

// fmtMiB formats a size given in KiB as MiB.
func fmtMiB(kib float64) string { return fmt.Sprintf("%.1f MiB", kib/1024) }

// ratio formats a/b as "1.23×", or "–" when b is zero.
func ratio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	r := a / b
	if r >= 10 {
		return fmt.Sprintf("%.0f×", r)
	}
	return fmt.Sprintf("%.2f×", r)
}
