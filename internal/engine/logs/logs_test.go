package logs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth/berth/internal/engine/logs/crilog"
)

// fakeClock returns increasing times one millisecond apart from base.
func fakeClock(base time.Time) func() time.Time {
	var mu sync.Mutex
	t := base
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Millisecond)
		return t
	}
}

func readAll(t *testing.T, path string, o Options) []Entry {
	t.Helper()
	var out []Entry
	if err := Read(context.Background(), path, o, func(e Entry) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatalf("Read: %v", err)
	}
	return out
}

func lines(es []Entry) []string {
	var s []string
	for _, e := range es {
		tag := "F"
		if e.Partial {
			tag = "P"
		}
		s = append(s, e.Stream+" "+tag+" "+string(e.Line))
	}
	return s
}

func TestParseRecord(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"2026-01-02T03:04:05.123456789Z stdout F hello world", "stdout F hello world", false},
		{"2026-01-02T03:04:05Z stderr P part", "stderr P part", false},
		{"2026-01-02T03:04:05Z stdout F ", "stdout F ", false},
		{"2026-01-02T03:04:05Z stdout F", "stdout F ", false},
		{"garbage", "", true},
		{"2026-01-02T03:04:05Z stdin F x", "", true},
		{"2026-01-02T03:04:05Z stdout X x", "", true},
		{"", "", true},
	}
	for _, tt := range tests {
		e, err := ParseRecord([]byte(tt.in))
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseRecord(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil {
			if got := lines([]Entry{e})[0]; got != tt.want {
				t.Errorf("ParseRecord(%q) = %q, want %q", tt.in, got, tt.want)
			}
		}
	}
}

func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{
		"2026-01-02T03:04:05.123456789Z stdout F hello",
		"2026-01-02T03:04:05Z stderr P x",
		"x y z",
		"2026-01-02T03:04:05Z stdout F",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseRecord(b)
		if err != nil {
			return
		}
		if e.Stream != Stdout && e.Stream != Stderr {
			t.Fatalf("stream %q accepted", e.Stream)
		}
		if !bytes.HasSuffix(b, e.Line) {
			t.Fatalf("line %q is not the suffix of %q", e.Line, b)
		}
	})
}

func TestStreamWriterPartialLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := crilog.NewWriter(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := w.Stream(Stdout)
	long := strings.Repeat("a", crilog.MaxLineSize+10)
	for _, chunk := range []string{"he", "llo\nwor", "ld\n", long, "\n", "tail-no-newline"} {
		out.Write([]byte(chunk))
	}
	out.Flush()
	w.Stream(Stderr).Write([]byte("err\n"))
	w.Close()
	got := lines(readAll(t, path, Options{Tail: -1}))
	want := []string{
		"stdout F hello",
		"stdout F world",
		"stdout P " + long[:crilog.MaxLineSize],
		"stdout F " + long[crilog.MaxLineSize:],
		"stdout P tail-no-newline",
		"stderr F err",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %d records %.200q, want %d %.200q", len(got), got, len(want), want)
	}
	gotOut := lines(readAll(t, path, Options{Tail: -1, Stderr: true}))
	if len(gotOut) != 1 || gotOut[0] != "stderr F err" {
		t.Fatalf("stderr only: got %q, want [stderr F err]", gotOut)
	}
}

func TestRotationUnderChattyWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	const maxSize, maxFiles = 4096, 3
	w, err := crilog.NewWriter(path, maxSize, maxFiles)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for s, stream := range []string{Stdout, Stderr} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sw := w.Stream(stream)
			for i := 0; i < 2000; i++ {
				fmt.Fprintf(sw, "%d line %d\n", s, i)
			}
		}()
	}
	wg.Wait()
	w.Close()
	files, _ := Files(path)
	if len(files) != maxFiles {
		t.Fatalf("got %d files %v, want %d", len(files), files, maxFiles)
	}
	for _, f := range files {
		st, _ := os.Stat(f)
		if st.Size() > maxSize {
			t.Errorf("%s is %d bytes, want <= %d", f, st.Size(), maxSize)
		}
	}
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Errorf("%s.3 exists, want only %d files", path, maxFiles)
	}
	es := readAll(t, path, Options{Tail: -1})
	if len(es) == 0 || string(es[len(es)-1].Line) == "" {
		t.Fatalf("no records read")
	}
	// Records stay in time order across files.
	for i := 1; i < len(es); i++ {
		if es[i].Time.Before(es[i-1].Time) {
			t.Fatalf("record %d at %v before record %d at %v", i, es[i].Time, i-1, es[i-1].Time)
		}
	}
	// Each stream's kept lines are consecutive and the last record is
	// some stream's final line.
	next := map[string]int{}
	for _, e := range es {
		var s, n int
		fmt.Sscanf(string(e.Line), "%d line %d", &s, &n)
		if want, ok := next[e.Stream]; ok && n != want {
			t.Fatalf("%s: got line %d, want %d (a record was lost)", e.Stream, n, want)
		}
		next[e.Stream] = n + 1
	}
	if got := string(es[len(es)-1].Line); !strings.HasSuffix(got, " line 1999") {
		t.Fatalf("last record %q, want a stream's line 1999", got)
	}
}

func TestMaxFilesOne(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, _ := crilog.NewWriter(path, 100, 1)
	for i := 0; i < 50; i++ {
		w.WriteRecord(Stdout, []byte(fmt.Sprint("line ", i)), false)
	}
	w.Close()
	files, _ := Files(path)
	if len(files) != 1 {
		t.Fatalf("got files %v, want only %s", files, path)
	}
	es := readAll(t, path, Options{Tail: -1})
	if got := string(es[len(es)-1].Line); got != "line 49" {
		t.Fatalf("last line %q, want line 49", got)
	}
}

func writeN(t *testing.T, path string, n int, maxSize int64, clock func() time.Time) {
	t.Helper()
	w, err := crilog.NewWriter(path, maxSize, 5)
	if err != nil {
		t.Fatal(err)
	}
	if clock != nil {
		w.Clock = func() (int64, int32) {
			t := clock()
			return t.Unix(), int32(t.Nanosecond())
		}
	}
	for i := 0; i < n; i++ {
		w.WriteRecord(Stdout, []byte(fmt.Sprint("line ", i)), false)
	}
	w.Close()
}

func TestTailOverRotatedFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	writeN(t, path, 300, 1000, nil) // ~50 bytes per record: ~20 per file, 5 files kept
	files, _ := Files(path)
	if len(files) != 5 {
		t.Fatalf("got %d files, want 5", len(files))
	}
	all := readAll(t, path, Options{Tail: -1})
	for _, n := range []int{0, 1, 5, 30, 60, len(all), len(all) + 10} {
		got := readAll(t, path, Options{Tail: n})
		want := n
		if want > len(all) {
			want = len(all)
		}
		if len(got) != want {
			t.Errorf("Tail %d: got %d lines, want %d", n, len(got), want)
			continue
		}
		if want > 0 && (string(got[want-1].Line) != "line 299" || string(got[0].Line) != string(all[len(all)-want].Line)) {
			t.Errorf("Tail %d: got %q..%q, want %q..line 299", n, got[0].Line, got[want-1].Line, all[len(all)-want].Line)
		}
	}
}

func TestTailCountsPartialLinesAsOne(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, _ := crilog.NewWriter(path, 0, 0)
	w.WriteRecord(Stdout, []byte("one"), false)
	w.WriteRecord(Stdout, []byte("tw"), true)
	w.WriteRecord(Stdout, []byte("o"), false)
	w.WriteRecord(Stdout, []byte("thr"), true)
	w.Close()
	got := lines(readAll(t, path, Options{Tail: 2}))
	want := []string{"stdout P tw", "stdout F o", "stdout P thr"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestSinceUntil(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	writeN(t, path, 100, 1500, fakeClock(base)) // line i at base+(i+1)ms
	tests := []struct {
		name         string
		since, until time.Time
		tail         int
		first, last  string
		n            int
	}{
		{"since", base.Add(51 * time.Millisecond), time.Time{}, -1, "line 50", "line 99", 50},
		{"until", time.Time{}, base.Add(10 * time.Millisecond), -1, "line 0", "line 9", 10},
		{"both", base.Add(21 * time.Millisecond), base.Add(30 * time.Millisecond), -1, "line 20", "line 29", 10},
		{"since+tail", base.Add(91 * time.Millisecond), time.Time{}, 20, "line 90", "line 99", 10},
	}
	for _, tt := range tests {
		got := readAll(t, path, Options{Tail: tt.tail, Since: tt.since, Until: tt.until})
		if len(got) != tt.n || string(got[0].Line) != tt.first || string(got[len(got)-1].Line) != tt.last {
			t.Errorf("%s: got %d lines, want %d from %q to %q", tt.name, len(got), tt.n, tt.first, tt.last)
		}
	}
}

func TestFollowAcrossRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := crilog.NewWriter(path, 4000, 3)
	if err != nil {
		t.Fatal(err)
	}
	w.WriteRecord(Stdout, []byte("before"), false)
	done := make(chan struct{})
	got := make(chan []string, 1)
	started := make(chan struct{})
	go func() {
		var out []string
		err := Read(context.Background(), path, Options{Follow: true, Tail: -1, Done: done, PollInterval: 5 * time.Millisecond},
			func(e Entry) error {
				if len(out) == 0 {
					close(started)
				}
				out = append(out, string(e.Line))
				return nil
			})
		if err != nil {
			t.Errorf("Read: %v", err)
		}
		got <- out
	}()
	<-started // the follower holds the first file
	// Write slowly enough that the follower sees each file, fast enough to
	// rotate several times (each file holds ~80 records; a follower
	// stalled for two whole files would lose data, as with any bounded log).
	const n = 300
	for i := 0; i < n; i++ {
		w.WriteRecord(Stdout, []byte(fmt.Sprint("line ", i)), false)
		if i%10 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	w.Close()
	close(done)
	select {
	case out := <-got:
		if len(out) != n+1 {
			t.Fatalf("follower got %d lines, want %d", len(out), n+1)
		}
		for i := 0; i < n; i++ {
			if out[i+1] != fmt.Sprint("line ", i) {
				t.Fatalf("line %d is %q, want %q", i+1, out[i+1], fmt.Sprint("line ", i))
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follower did not stop after Done was closed")
	}
}

func TestFollowStopsOnContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- Read(ctx, path, Options{Follow: true, Tail: 0}, func(Entry) error { return nil })
	}()
	cancel()
	select {
	case err := <-errc:
		if err != context.Canceled {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read did not return after cancel")
	}
}

func benchLog(b *testing.B, n int) string {
	path := filepath.Join(b.TempDir(), "c.log")
	w, _ := crilog.NewWriter(path, 1<<30, 1)
	line := []byte(strings.Repeat("x", 60))
	for i := 0; i < n; i++ {
		w.WriteRecord(Stdout, line, false)
	}
	w.Close()
	return path
}

// BenchmarkRead100k reads 100,000 lines (docker logs takes 693 ms here).
func BenchmarkRead100k(b *testing.B) {
	path := benchLog(b, 100000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n := 0
		Read(context.Background(), path, Options{Tail: -1}, func(Entry) error { n++; return nil })
		if n != 100000 {
			b.Fatalf("read %d lines, want 100000", n)
		}
	}
}

// BenchmarkTail100 reads the last 100 lines of a 100,000-line log.
func BenchmarkTail100(b *testing.B) {
	path := benchLog(b, 100000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n := 0
		Read(context.Background(), path, Options{Tail: 100}, func(Entry) error { n++; return nil })
		if n != 100 {
			b.Fatalf("read %d lines, want 100", n)
		}
	}
}

func TestFollowWithTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, _ := crilog.NewWriter(path, 0, 0)
	for i := 0; i < 10; i++ {
		w.WriteRecord(Stdout, []byte(fmt.Sprint("old ", i)), false)
	}
	done := make(chan struct{})
	got := make(chan []string, 1)
	started := make(chan struct{})
	go func() {
		var out []string
		Read(context.Background(), path, Options{Follow: true, Tail: 2, Done: done, PollInterval: 5 * time.Millisecond}, func(e Entry) error {
			out = append(out, string(e.Line))
			if len(out) == 2 {
				close(started)
			}
			return nil
		})
		got <- out
	}()
	<-started
	w.WriteRecord(Stdout, []byte("new"), false)
	w.Close()
	close(done)
	out := <-got
	if strings.Join(out, "|") != "old 8|old 9|new" {
		t.Fatalf("got %q, want [old 8 old 9 new]", out)
	}
}
