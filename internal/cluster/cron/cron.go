// Package cron parses the schedules of batch/v1 CronJobs and computes
// their next run. It accepts what Kubernetes accepts (the robfig/cron
// "standard" parser): five fields (minute hour day-of-month month
// day-of-week) with *, ?, lists, ranges, steps and JAN-DEC / SUN-SAT names,
// the descriptors @yearly @annually @monthly @weekly @daily @midnight
// @hourly, and "@every <duration>". A leading TZ=<zone> or CRON_TZ=<zone>
// sets the zone; the API server refuses it in new objects (spec.timeZone
// is the supported way), as Kubernetes does.
//
// berth carries its own small parser rather than adding a module for it.
package cron

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule gives the activation times of a schedule.
type Schedule interface {
	// Next returns the first activation strictly after t, or the zero
	// time if there is none within five years (e.g. "0 0 30 2 *").
	Next(t time.Time) time.Time
}

// Parse reads a standard schedule. Times are computed in loc (nil: UTC)
// unless the schedule names its own zone with TZ= or CRON_TZ=.
func Parse(spec string, loc *time.Location) (Schedule, error) {
	if loc == nil {
		loc = time.UTC
	}
	spec = strings.TrimSpace(spec)
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		i := strings.IndexAny(spec, " \t")
		if i < 0 {
			return nil, fmt.Errorf("%q names a time zone but no schedule", spec)
		}
		name := spec[strings.IndexByte(spec, '=')+1 : i]
		l, err := time.LoadLocation(name)
		if err != nil {
			return nil, fmt.Errorf("unknown time zone %q: %v", name, err)
		}
		loc, spec = l, strings.TrimSpace(spec[i:])
	}
	if spec == "" {
		return nil, fmt.Errorf("empty schedule: want 5 fields (minute hour day-of-month month day-of-week) or a descriptor such as @hourly")
	}
	if strings.HasPrefix(spec, "@") {
		return parseDescriptor(spec, loc)
	}
	fields := strings.Fields(spec)
	if len(fields) != 5 {
		return nil, fmt.Errorf("expected exactly 5 fields (minute hour day-of-month month day-of-week), found %d: %q", len(fields), spec)
	}
	var s specSchedule
	var err error
	s.loc = loc
	for i, p := range []struct {
		dst *uint64
		b   bounds
	}{{&s.minute, minutes}, {&s.hour, hours}, {&s.dom, doms}, {&s.month, months}, {&s.dow, dows}} {
		if *p.dst, err = parseField(fields[i], p.b); err != nil {
			return nil, err
		}
	}
	return &s, nil
}

func parseDescriptor(spec string, loc *time.Location) (Schedule, error) {
	std := map[string]string{
		"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
		"@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
	}
	if s, ok := std[spec]; ok {
		return Parse(s, loc)
	}
	if rest, ok := strings.CutPrefix(spec, "@every "); ok {
		d, err := time.ParseDuration(strings.TrimSpace(rest))
		if err != nil {
			return nil, fmt.Errorf("%q: want a duration such as 90s or 5m: %v", spec, err)
		}
		if d < time.Second {
			d = time.Second // as robfig/cron: at most once a second
		}
		return every(d.Truncate(time.Second)), nil
	}
	return nil, fmt.Errorf("unrecognized descriptor %q: want @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every <duration>", spec)
}

// every runs at a fixed interval from the time it is asked about.
type every time.Duration

func (e every) Next(t time.Time) time.Time {
	return t.Truncate(time.Second).Add(time.Duration(e))
}

type bounds struct {
	name     string
	min, max uint
	names    map[string]uint
}

var (
	minutes = bounds{name: "minute", min: 0, max: 59}
	hours   = bounds{name: "hour", min: 0, max: 23}
	doms    = bounds{name: "day-of-month", min: 1, max: 31}
	months  = bounds{name: "month", min: 1, max: 12, names: map[string]uint{
		"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12}}
	dows = bounds{name: "day-of-week", min: 0, max: 6, names: map[string]uint{
		"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}}
)

// star marks a day field written as * or ? (without a step): day-of-month
// and day-of-week then combine with AND, otherwise with OR, as in cron.
const star = uint64(1) << 63

// parseField reads one comma-separated field into a bit set.
func parseField(f string, b bounds) (uint64, error) {
	var bits uint64
	for _, part := range strings.Split(f, ",") {
		v, err := parseRange(part, b)
		if err != nil {
			return 0, err
		}
		bits |= v
	}
	return bits, nil
}

// parseRange reads *, ?, N, N-M, each optionally /step ("N/step" means
// N to the maximum).
func parseRange(part string, b bounds) (uint64, error) {
	rng, stepStr, hasStep := strings.Cut(part, "/")
	var lo, hi uint
	var extra uint64
	switch {
	case rng == "*" || rng == "?":
		lo, hi, extra = b.min, b.max, star
	default:
		l, h, isRange := strings.Cut(rng, "-")
		var err error
		if lo, err = value(l, b); err != nil {
			return 0, err
		}
		hi = lo
		if isRange {
			if hi, err = value(h, b); err != nil {
				return 0, err
			}
		} else if hasStep {
			hi = b.max
		}
	}
	step := uint(1)
	if hasStep {
		n, err := strconv.ParseUint(stepStr, 10, 8)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("%s field %q: step %q must be a positive number", b.name, part, stepStr)
		}
		step = uint(n)
		if step > 1 {
			extra = 0
		}
	}
	if lo < b.min || hi > b.max {
		return 0, fmt.Errorf("%s field %q: out of range %d-%d", b.name, part, b.min, b.max)
	}
	if lo > hi {
		return 0, fmt.Errorf("%s field %q: range start %d beyond end %d", b.name, part, lo, hi)
	}
	var bits uint64
	for v := lo; v <= hi; v += step {
		bits |= 1 << v
	}
	return bits | extra, nil
}

func value(s string, b bounds) (uint, error) {
	if v, ok := b.names[strings.ToLower(s)]; ok {
		return v, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return 0, fmt.Errorf("%s field: %q is not a number%s", b.name, s, nameHint(b))
	}
	if uint(n) < b.min || uint(n) > b.max {
		return 0, fmt.Errorf("%s field: %d out of range %d-%d", b.name, n, b.min, b.max)
	}
	return uint(n), nil
}

func nameHint(b bounds) string {
	switch b.name {
	case "month":
		return " or a month name (JAN-DEC)"
	case "day-of-week":
		return " or a day name (SUN-SAT)"
	}
	return ""
}

// specSchedule is a parsed five-field schedule.
type specSchedule struct {
	minute, hour, dom, month, dow uint64
	loc                           *time.Location
}

// Next walks forward over absolute minutes, checking each one's wall
// clock in the schedule's zone, with coarse jumps over months, days and
// hours that cannot match. Checking wall clocks of real instants gives
// cron's daylight-saving behaviour: a time in a spring-forward gap never
// happens, a time in a fall-back fold happens twice.
func (s *specSchedule) Next(t time.Time) time.Time {
	t = t.In(s.loc)
	t = t.Truncate(time.Minute).Add(time.Minute)
	limit := t.AddDate(5, 0, 0)
	for t.Before(limit) {
		y, mo, d := t.Date()
		var next time.Time
		switch {
		case s.month&(1<<uint(mo)) == 0:
			next = time.Date(y, mo+1, 1, 0, 0, 0, 0, s.loc)
		case !s.dayMatches(t):
			next = time.Date(y, mo, d+1, 0, 0, 0, 0, s.loc)
		case s.hour&(1<<uint(t.Hour())) == 0:
			next = t.Add(time.Duration(60-t.Minute()) * time.Minute)
		case s.minute&(1<<uint(t.Minute())) == 0:
			next = t.Add(time.Minute)
		default:
			return t
		}
		if !next.After(t) { // a wall time normalised backwards: keep moving
			next = t.Add(time.Minute)
		}
		t = next
	}
	return time.Time{}
}

func (s *specSchedule) dayMatches(t time.Time) bool {
	dom := s.dom&(1<<uint(t.Day())) != 0
	dow := s.dow&(1<<uint(t.Weekday())) != 0
	if s.dom&star != 0 || s.dow&star != 0 {
		return dom && dow
	}
	return dom || dow
}

// Missed returns the last activation of s in (after, now] and how many
// activations that interval holds. It walks at most limit+1 activations:
// beyond limit the count is an estimate (still > limit) and the last
// activation is found by searching back from now, so a clock decades off
// costs no more than a few thousand steps.
func Missed(s Schedule, after, now time.Time, limit int) (last time.Time, n int) {
	t := s.Next(after)
	if t.IsZero() || t.After(now) {
		return time.Time{}, 0
	}
	if e, ok := s.(every); ok {
		d := time.Duration(e)
		k := int64(now.Sub(t) / d)
		return t.Add(time.Duration(k) * d), int(min(k, 1<<30)) + 1
	}
	first := t
	for ; !t.IsZero() && !t.After(now); t = s.Next(t) {
		last, n = t, n+1
		if n > limit {
			break
		}
	}
	if n <= limit {
		return last, n
	}
	// Too many to walk: estimate the count from the first interval and
	// find the last activation in a window before now that doubles until
	// it holds one.
	if second := s.Next(first); second.After(first) {
		if est := int(min(int64(now.Sub(first)/second.Sub(first)), 1<<30)) + 1; est > n {
			n = est
		}
	}
	gap := now.Sub(last) // saturates rather than overflows
	for w := time.Minute; ; w = grow(w, gap) {
		from := last
		if w < gap {
			from = now.Add(-w)
		}
		found := false
		for t := s.Next(from); !t.IsZero() && !t.After(now); t = s.Next(t) {
			last, found = t, true
		}
		if found || from.Equal(last) {
			return last, n
		}
	}
}

// grow doubles a search window, at most to limit, without overflowing.
func grow(w, limit time.Duration) time.Duration {
	if w > limit/2 {
		return limit
	}
	return w * 2
}
