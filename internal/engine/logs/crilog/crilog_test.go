package crilog

import (
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestAppendTimestampMatchesTimeFormat(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	check := func(sec int64, nsec int32) {
		t.Helper()
		got := string(AppendTimestamp(nil, sec, nsec))
		want := time.Unix(sec, int64(nsec)).UTC().Format(time.RFC3339Nano)
		if got != want {
			t.Fatalf("AppendTimestamp(%d, %d) = %q, want %q", sec, nsec, got, want)
		}
	}
	for _, sec := range []int64{0, -1, 86399, 86400, 951782400 /* 2000-02-29 */, 4102444800, 253402300799 /* 9999-12-31T23:59:59 */, -62135596800 /* year 1 */} {
		for _, nsec := range []int32{0, 1, 10, 100000000, 123456789, 999999999, 500} {
			check(sec, nsec)
		}
	}
	for i := 0; i < 200000; i++ {
		check(r.Int63n(253402300800+62135596800)-62135596800, int32(r.Intn(1e9)))
	}
	sec, nsec := Now()
	if d := time.Since(time.Unix(sec, int64(nsec))); d < 0 || d > time.Minute {
		t.Fatalf("Now() is %v away from time.Now", d)
	}
}

func TestAppendInt(t *testing.T) {
	for _, v := range []int64{0, 1, -1, 9, 10, -10, 1234567890, -1 << 63, 1<<63 - 1} {
		if got, want := string(AppendInt([]byte("x"), v)), "x"+strconv.FormatInt(v, 10); got != want {
			t.Errorf("AppendInt(%d) = %q, want %q", v, got, want)
		}
	}
	if Itoa(-42) != "-42" {
		t.Errorf("Itoa(-42) = %q", Itoa(-42))
	}
}

// TestStreamWriterRecords checks the record format, line splitting and
// that one Write's records share a time.
func TestStreamWriterRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := NewWriter(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	tick := int64(0)
	w.Clock = func() (int64, int32) { tick++; return 1700000000 + tick, 5 }
	out := w.Stream(Stdout)
	out.Write([]byte("a\nb"))
	out.Write([]byte("c\n" + strings.Repeat("x", MaxLineSize+3) + "\n"))
	out.Write([]byte("tail"))
	w.Stream(Stderr).Write([]byte("err\n"))
	out.Flush()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	want := "2023-11-14T22:13:21.000000005Z stdout F a\n" +
		"2023-11-14T22:13:22.000000005Z stdout F bc\n" +
		"2023-11-14T22:13:22.000000005Z stdout P " + strings.Repeat("x", MaxLineSize) + "\n" +
		"2023-11-14T22:13:22.000000005Z stdout F xxx\n" +
		"2023-11-14T22:13:24.000000005Z stderr F err\n" +
		"2023-11-14T22:13:25.000000005Z stdout P tail\n"
	if string(b) != want {
		t.Fatalf("log:\n%s\nwant:\n%s", b, want)
	}
	if _, err := w.Stream(Stdout).Write([]byte("late\n")); err == nil {
		t.Fatal("write after Close succeeded")
	}
}

// TestRotation keeps maxFiles files, none over maxSize, and every record
// once, in order.
func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.log")
	w, err := NewWriter(path, 500, 3)
	if err != nil {
		t.Fatal(err)
	}
	s := w.Stream(Stdout)
	var all strings.Builder
	for i := 0; i < 100; i++ {
		line := "line " + strconv.Itoa(i) + "\n"
		all.WriteString(line)
		if i%7 == 0 {
			s.Write([]byte(line + "more " + strconv.Itoa(i) + "\n"))
			continue
		}
		s.Write([]byte(line))
	}
	w.Close()
	var got []string
	for _, name := range []string{path + ".2", path + ".1", path} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 500 {
			t.Errorf("%s is %d bytes, over 500", name, len(b))
		}
		for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			got = append(got, l[strings.Index(l, " F ")+3:])
		}
	}
	if _, err := os.Stat(path + ".3"); err == nil {
		t.Error("a fourth file was kept")
	}
	// The newest records are all there, in order, ending with line 99.
	if got[len(got)-1] != "line 99" {
		t.Fatalf("last record %q", got[len(got)-1])
	}
	for i := 1; i < len(got); i++ {
		a, _ := strconv.Atoi(strings.Fields(got[i-1])[1])
		b, _ := strconv.Atoi(strings.Fields(got[i])[1])
		if b < a || b > a+1 {
			t.Fatalf("records out of order or missing: %q then %q", got[i-1], got[i])
		}
	}
}

func TestOpenErrorNamesPath(t *testing.T) {
	_, err := NewWriter("/nonexistent-dir/c.log", 0, 0)
	if err == nil || !strings.Contains(err.Error(), `open log "/nonexistent-dir/c.log"`) {
		t.Fatalf("err = %v", err)
	}
}

// TestStreamWriterKeepsEveryByte writes random streams in random pieces
// and checks that joining the records (partial ones without a newline)
// gives the stream back, that no record is longer than MaxLineSize, and that
// only the last record of a line is full.
func TestStreamWriterKeepsEveryByte(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	for iter := 0; iter < 200; iter++ {
		path := filepath.Join(t.TempDir(), "c.log")
		w, err := NewWriter(path, 1<<30, 1)
		if err != nil {
			t.Fatal(err)
		}
		var in []byte
		for len(in) < r.Intn(200000)+1 {
			switch r.Intn(10) {
			case 0:
				in = append(in, '\n')
			case 1:
				in = append(in, strings.Repeat("y", r.Intn(3*MaxLineSize))...)
			default:
				in = append(in, byte('a'+r.Intn(26)))
			}
		}
		s := w.Stream(Stdout)
		for rest := in; len(rest) > 0; {
			n := min(len(rest), 1+r.Intn(40000))
			s.Write(rest[:n])
			rest = rest[n:]
		}
		s.Flush()
		w.Close()
		b, _ := os.ReadFile(path)
		var out []byte
		for _, rec := range strings.SplitAfter(string(b), "\n") {
			if rec == "" {
				continue
			}
			f := strings.SplitN(strings.TrimSuffix(rec, "\n"), " ", 4)
			if len(f) != 4 || f[1] != Stdout || (f[2] != "P" && f[2] != "F") {
				t.Fatalf("bad record %.80q", rec)
			}
			if len(f[3]) > MaxLineSize {
				t.Fatalf("record of %d bytes, over MaxLineSize", len(f[3]))
			}
			out = append(out, f[3]...)
			if f[2] == "F" {
				out = append(out, '\n')
			}
		}
		if string(out) != string(in) {
			t.Fatalf("iteration %d: %d bytes in, %d bytes out of the records", iter, len(in), len(out))
		}
	}
}
