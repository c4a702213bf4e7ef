// Package units parses and formats the sizes and durations users type and
// read, with Docker's conventions: "512m" is 512 MiB, image sizes print in
// decimal units ("1.2MB"), ages print as "3 minutes".
package units

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// RAMInBytes parses a size such as "64m", "1.5g", "100k", "1024" or
// "2GiB" into bytes, with binary multipliers as Docker's --memory does.
func RAMInBytes(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "" {
		return 0, fmt.Errorf("invalid size %q: empty", s)
	}
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("invalid size %q: want a number with an optional unit (b, k, m, g, t)", s)
	}
	unit = strings.TrimSuffix(strings.TrimSuffix(unit, "b"), "i")
	mult := map[string]float64{"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
	m, ok := mult[unit]
	if !ok {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (use b, k, m, g or t)", s, t[i:])
	}
	return int64(f * m), nil
}

// HumanSize formats bytes in decimal units with three significant digits,
// as `docker images` does ("4.19MB").
func HumanSize(n int64) string {
	f := float64(n)
	units := []string{"B", "kB", "MB", "GB", "TB", "PB"}
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	return strconv.FormatFloat(f, 'g', 3, 64) + units[i]
}

// BytesSize formats bytes in binary units ("1.5MiB"), as `docker stats` does.
func BytesSize(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	return strconv.FormatFloat(n, 'f', 2, 64) + units[i]
}

// HumanDuration formats a duration the way `docker ps` shows ages.
func HumanDuration(d time.Duration) string {
	switch s := int(d.Seconds()); {
	case s < 1:
		return "Less than a second"
	case s == 1:
		return "1 second"
	case s < 60:
		return fmt.Sprintf("%d seconds", s)
	}
	switch m := int(d.Minutes()); {
	case m == 1:
		return "About a minute"
	case m < 60:
		return fmt.Sprintf("%d minutes", m)
	}
	switch h := int(d.Hours() + 0.5); {
	case h == 1:
		return "About an hour"
	case h < 48:
		return fmt.Sprintf("%d hours", h)
	case h < 24*7*2:
		return fmt.Sprintf("%d days", h/24)
	case h < 24*30*2:
		return fmt.Sprintf("%d weeks", h/24/7)
	case h < 24*365*2:
		return fmt.Sprintf("%d months", h/24/30)
	default:
		return fmt.Sprintf("%d years", h/24/365)
	}
}
