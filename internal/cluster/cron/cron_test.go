package cron

import (
	"strings"
	"testing"
	"time"
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	l, err := time.LoadLocation(name)
	if err != nil {
		t.Skipf("time zone %s not available: %v", name, err)
	}
	return l
}

func TestNext(t *testing.T) {
	utc := func(s string) time.Time {
		v, err := time.Parse("2006-01-02 15:04:05", s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	cases := []struct {
		spec, from, want string
	}{
		{"* * * * *", "2026-11-27 10:00:00", "2026-11-27 10:01:00"},
		{"* * * * *", "2026-11-27 10:00:30", "2026-11-27 10:01:00"},
		{"*/1 * * * *", "2026-11-27 10:59:59", "2026-11-27 11:00:00"},
		{"*/15 * * * *", "2026-11-27 10:16:00", "2026-11-27 10:30:00"},
		{"5/20 * * * *", "2026-11-27 10:26:00", "2026-11-27 10:45:00"},
		{"0 9-17/4 * * *", "2026-11-27 13:00:00", "2026-11-27 17:00:00"},
		{"30 6 * * MON-FRI", "2026-11-27 07:00:00", "2026-11-30 06:30:00"}, // Friday → Monday
		{"0 0 1,15 * *", "2026-11-02 00:00:00", "2026-11-15 00:00:00"},
		{"0 0 29 2 *", "2026-03-01 00:00:00", "2028-02-29 00:00:00"},
		{"0 12 * jan,Jul ?", "2026-02-01 00:00:00", "2026-07-01 12:00:00"},
		// day-of-month and day-of-week both restricted: either matches.
		{"0 0 13 * 5", "2026-11-01 00:00:00", "2026-11-06 00:00:00"},
		// day-of-week restricted, day-of-month *: both must match.
		{"0 0 * * 5", "2026-11-01 00:00:00", "2026-11-06 00:00:00"},
		// a stepped * restricts: OR again.
		{"0 0 */10 * 1", "2026-11-01 00:00:00", "2026-11-02 00:00:00"},
		{"@hourly", "2026-11-27 10:00:00", "2026-11-27 11:00:00"},
		{"@daily", "2026-11-27 10:00:00", "2026-11-28 00:00:00"},
		{"@midnight", "2026-11-27 10:00:00", "2026-11-28 00:00:00"},
		{"@weekly", "2026-11-27 10:00:00", "2026-11-29 00:00:00"},
		{"@monthly", "2026-11-27 10:00:00", "2026-12-01 00:00:00"},
		{"@yearly", "2026-11-27 10:00:00", "2027-01-01 00:00:00"},
		{"@annually", "2026-11-27 10:00:00", "2027-01-01 00:00:00"},
		{"@every 90s", "2026-11-27 10:00:00", "2026-11-27 10:01:30"},
		{"TZ=Asia/Tokyo 0 9 * * *", "2026-11-27 01:00:00", "2026-11-28 00:00:00"},
		{"CRON_TZ=Asia/Kolkata 0 9 * * *", "2026-11-27 01:00:00", "2026-11-27 03:30:00"},
	}
	for _, tc := range cases {
		s, err := Parse(tc.spec, nil)
		if err != nil {
			t.Errorf("%q: %v", tc.spec, err)
			continue
		}
		if got := s.Next(utc(tc.from)); !got.Equal(utc(tc.want)) {
			t.Errorf("%q after %s: got %s, want %s", tc.spec, tc.from, got.UTC(), tc.want)
		}
	}
}

func TestNeverMatches(t *testing.T) {
	s, err := Parse("0 0 30 2 *", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Next(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)); !got.IsZero() {
		t.Errorf("February 30th: got %s, want the zero time", got)
	}
}

// Times are wall clock times of the zone: a daily 09:00 in New York is
// 14:00 UTC in winter and 13:00 UTC in summer; 02:30 on the day clocks
// spring forward does not exist, 01:30 on the day they fall back happens
// twice.
func TestTimeZones(t *testing.T) {
	ny := mustLoc(t, "America/New_York")
	s, _ := Parse("0 9 * * *", ny)
	if got, want := s.Next(time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)), time.Date(2026, 1, 10, 14, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("winter: got %s, want %s", got.UTC(), want)
	}
	if got, want := s.Next(time.Date(2026, 7, 10, 0, 0, 0, 0, time.UTC)), time.Date(2026, 7, 10, 13, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("summer: got %s, want %s", got.UTC(), want)
	}
	gap, _ := Parse("30 2 * * *", ny)
	// 2026-03-08 is the spring-forward day in the US.
	if got, want := gap.Next(time.Date(2026, 3, 8, 0, 0, 0, 0, ny)), time.Date(2026, 3, 9, 2, 30, 0, 0, ny); !got.Equal(want) {
		t.Errorf("spring-forward gap: got %s, want %s", got, want)
	}
	fold, _ := Parse("30 1 * * *", ny)
	first := fold.Next(time.Date(2026, 11, 1, 0, 0, 0, 0, ny))
	second := fold.Next(first)
	if second.Sub(first) != time.Hour {
		t.Errorf("fall-back fold: got %s then %s, want two runs an hour apart", first, second)
	}
	// An explicit TZ= overrides the location passed in.
	tz, _ := Parse("TZ=UTC 0 9 * * *", ny)
	if got, want := tz.Next(time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)), time.Date(2026, 1, 10, 9, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("TZ=UTC: got %s, want %s", got.UTC(), want)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct{ spec, mention string }{
		{"", "empty"},
		{"* * * *", "found 4"},
		{"* * * * * *", "found 6"},
		{"60 * * * *", "minute"},
		{"* 24 * * *", "hour"},
		{"* * 0 * *", "day-of-month"},
		{"* * * 13 *", "month"},
		{"* * * * 7", "day-of-week"},
		{"* * * * FRX", "day name"},
		{"*/0 * * * *", "step"},
		{"5-2 * * * *", "beyond"},
		{"a * * * *", "not a number"},
		{"@often", "descriptor"},
		{"@every soon", "duration"},
		{"TZ=Nowhere/Land * * * * *", "time zone"},
		{"TZ=UTC", "no schedule"},
	}
	for _, tc := range cases {
		_, err := Parse(tc.spec, nil)
		if err == nil {
			t.Errorf("%q: got no error, want one mentioning %q", tc.spec, tc.mention)
			continue
		}
		if !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("%q: got %q, want it to mention %q", tc.spec, err, tc.mention)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"* * * * *", "*/5 1-3 1,15 JAN-MAR MON", "@every 1m", "TZ=UTC @daily"} {
		f.Add(s)
	}
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := Parse(spec, nil)
		if err != nil {
			return
		}
		if n := s.Next(from); !n.IsZero() && !n.After(from) {
			t.Fatalf("%q: Next(%s) = %s, not after", spec, from, n)
		}
	})
}

func TestMissed(t *testing.T) {
	base := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	minutely, _ := Parse("*/1 * * * *", nil)
	hourly, _ := Parse("@hourly", nil)
	every, _ := Parse("@every 7s", nil)
	weekdays, _ := Parse("30 6-16/4 * * 1-5", nil)
	cases := []struct {
		name     string
		s        Schedule
		after    time.Time
		now      time.Time
		wantLast time.Time
		wantN    int
		nAtLeast bool // n is an estimate: check only > limit
	}{
		{"none yet", minutely, base, base.Add(59 * time.Second), time.Time{}, 0, false},
		{"one", minutely, base, base.Add(60 * time.Second), base.Add(time.Minute), 1, false},
		{"three", minutely, base, base.Add(3*time.Minute + 30*time.Second), base.Add(3 * time.Minute), 3, false},
		{"exactly 100", minutely, base, base.Add(100 * time.Minute), base.Add(100 * time.Minute), 100, false},
		{"many", minutely, base, base.Add(5000*time.Minute + 10*time.Second), base.Add(5000 * time.Minute), 5000, false},
		{"a decade of hours", hourly, base, base.AddDate(10, 0, 0).Add(30 * time.Minute), base.AddDate(10, 0, 0), 0, true},
		// Longer than a time.Duration holds (292 years).
		{"five centuries of hours", hourly, base.AddDate(-500, 0, 0), base.Add(30 * time.Minute), base, 0, true},
		{"every, few", every, base, base.Add(15 * time.Second), base.Add(14 * time.Second), 2, false},
		{"every, many", every, base, base.Add(7*1000*time.Second + 3*time.Second), base.Add(7 * 1000 * time.Second), 1000, false},
		// Friday 10:00 to Tuesday 09:00: Fri 10:30 14:30, Mon 06:30 10:30 14:30, Tue 06:30.
		{"irregular", weekdays, base, time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 6, 30, 0, 0, time.UTC), 6, false},
	}
	for _, tc := range cases {
		last, n := Missed(tc.s, tc.after, tc.now, 100)
		if !last.Equal(tc.wantLast) {
			t.Errorf("%s: last got %s, want %s", tc.name, last, tc.wantLast)
		}
		switch {
		case tc.nAtLeast && n <= 100:
			t.Errorf("%s: n got %d, want > 100", tc.name, n)
		case !tc.nAtLeast && n != tc.wantN && !(tc.wantN > 100 && n > 100):
			t.Errorf("%s: n got %d, want %d", tc.name, n, tc.wantN)
		}
	}
}
