package logs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Entry is one record of a log.
type Entry struct {
	Time   time.Time
	Stream string // "stdout" or "stderr"
	// Line is the content without the newline. It is a fresh slice the
	// caller may keep.
	Line []byte
	// Partial is true when the line continues in the next record of the
	// stream (or the stream ended without a newline).
	Partial bool
}

// Options select what Read emits.
type Options struct {
	// Follow keeps reading as the log grows and rotates, until ctx is done,
	// Until is passed, or Done is closed and everything written is read.
	Follow bool
	// Tail is how many lines to emit from the end; -1 (or any negative) for
	// all. 0 emits no old lines (useful with Follow).
	Tail int
	// Since and Until bound record times; zero values do not bound.
	Since, Until time.Time
	// Stdout and Stderr select streams; if both are false both are emitted.
	Stdout, Stderr bool
	// Done, when closed, tells a follower that the writer has finished
	// (the container exited); Read returns once it has read everything.
	Done <-chan struct{}
	// PollInterval is how often a follower checks for new data (default
	// 50ms).
	PollInterval time.Duration
}

// ErrBadRecord is returned (wrapped) by ParseRecord for malformed lines.
var ErrBadRecord = errors.New("malformed log record")

// ParseRecord parses one CRI record (without its trailing newline).
func ParseRecord(b []byte) (Entry, error) {
	i := bytes.IndexByte(b, ' ')
	if i <= 0 {
		return Entry{}, wrapErr("no timestamp", ErrBadRecord)
	}
	t, err := time.Parse(time.RFC3339Nano, string(b[:i]))
	if err != nil {
		return Entry{}, wrapErr("timestamp "+strconv.Quote(string(b[:i])), ErrBadRecord)
	}
	rest := b[i+1:]
	var e Entry
	e.Time = t
	switch {
	case bytes.HasPrefix(rest, []byte("stdout ")):
		e.Stream, rest = Stdout, rest[7:]
	case bytes.HasPrefix(rest, []byte("stderr ")):
		e.Stream, rest = Stderr, rest[7:]
	default:
		return Entry{}, wrapErr("stream must be stdout or stderr", ErrBadRecord)
	}
	switch {
	case bytes.HasPrefix(rest, []byte("F ")):
		rest = rest[2:]
	case bytes.HasPrefix(rest, []byte("P ")):
		e.Partial, rest = true, rest[2:]
	case len(rest) == 1 && (rest[0] == 'F' || rest[0] == 'P'):
		// An empty content may lose its separating space in some writers.
		e.Partial, rest = rest[0] == 'P', nil
	default:
		return Entry{}, wrapErr("tag must be F or P", ErrBadRecord)
	}
	e.Line = append([]byte(nil), rest...)
	return e, nil
}

// Files returns the log's files, oldest first (path.N-1 … path.1, path),
// those that exist.
func Files(path string) ([]string, error) {
	matches, err := filepath.Glob(globEscape(path) + ".*")
	if err != nil {
		return nil, err
	}
	type numbered struct {
		n    int
		path string
	}
	var rot []numbered
	for _, m := range matches {
		n, err := strconv.Atoi(strings.TrimPrefix(m, path+"."))
		if err != nil || n <= 0 {
			continue
		}
		rot = append(rot, numbered{n, m})
	}
	sort.Slice(rot, func(i, j int) bool { return rot[i].n > rot[j].n })
	var out []string
	for _, r := range rot {
		out = append(out, r.path)
	}
	if _, err := os.Stat(path); err == nil {
		out = append(out, path)
	}
	return out, nil
}

func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

type filter struct {
	o      Options
	emit   func(Entry) error
	stdout bool
	stderr bool
}

// errStop ends a read early without error.
var errStop = errors.New("stop")

func (f *filter) handle(raw []byte) error {
	if len(raw) == 0 {
		return nil
	}
	e, err := ParseRecord(raw)
	if err != nil {
		return nil // skip garbage: a torn write must not end a read
	}
	if (e.Stream == Stdout && !f.stdout) || (e.Stream == Stderr && !f.stderr) {
		return nil
	}
	if !f.o.Since.IsZero() && e.Time.Before(f.o.Since) {
		return nil
	}
	if !f.o.Until.IsZero() && e.Time.After(f.o.Until) {
		return errStop
	}
	return f.emit(e)
}

// Read emits the log's records at path (and its rotated files) in order.
// It returns nil when done, ctx.Err() when cancelled, or the first error of
// emit. A log that does not exist yet is empty (a follower waits for it).
func Read(ctx context.Context, path string, o Options, emit func(Entry) error) error {
	f := &filter{o: o, emit: emit, stdout: o.Stdout, stderr: o.Stderr}
	if !f.stdout && !f.stderr {
		f.stdout, f.stderr = true, true
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 50 * time.Millisecond
		f.o.PollInterval = o.PollInterval
	}
	// Open the current file first so a rotation during the history read is
	// noticed by the follower (it holds the old inode).
	cur, err := os.Open(path)
	if err != nil && !os.IsNotExist(err) {
		return wrapErr("open log "+strconv.Quote(path), err)
	}
	if cur != nil {
		defer func() { cur.Close() }()
	}
	var curOff int64
	files, err := Files(path)
	if err != nil {
		return wrapErr("list log "+strconv.Quote(path), err)
	}
	if cur != nil && len(files) > 0 && files[len(files)-1] == path {
		files = files[:len(files)-1]
	}
	if o.Tail >= 0 {
		recs, off, err := tail(files, cur, o.Tail)
		if err != nil {
			return err
		}
		curOff = off
		for _, r := range recs {
			if err := f.handle(r); err != nil {
				if err == errStop {
					return nil
				}
				return err
			}
		}
	} else {
		for _, name := range files {
			rf, err := os.Open(name)
			if err != nil {
				continue // rotated away meanwhile
			}
			_, err = scan(rf, f.handle)
			rf.Close()
			if err != nil {
				if err == errStop {
					return nil
				}
				return err
			}
		}
		if cur != nil {
			n, err := scan(cur, f.handle)
			curOff = n
			if err != nil {
				if err == errStop {
					return nil
				}
				return err
			}
		}
	}
	if !o.Follow {
		return nil
	}
	return follow(ctx, path, cur, curOff, f)
}

// scan reads r to EOF, calling fn for each complete line, and returns how
// many bytes it consumed (a trailing incomplete line is not consumed).
func scan(r io.ReadSeeker, fn func([]byte) error) (int64, error) {
	start, _ := r.Seek(0, io.SeekCurrent)
	buf := make([]byte, 256<<10)
	var pend []byte
	consumed := start
	for {
		n, err := r.Read(buf)
		data := buf[:n]
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				pend = append(pend, data...)
				break
			}
			consumed += int64(len(pend) + i + 1)
			line := data[:i]
			if len(pend) > 0 {
				pend = append(pend, line...)
				line = pend
			}
			if ferr := fn(line); ferr != nil {
				return consumed, ferr
			}
			pend = pend[:0]
			data = data[i+1:]
		}
		if err == io.EOF {
			// Leave the reader positioned after the last complete line.
			r.Seek(consumed, io.SeekStart)
			return consumed, nil
		}
		if err != nil {
			return consumed, err
		}
	}
}

// tail returns the raw records of the last n lines over files (oldest first)
// followed by cur, and the offset in cur after its last complete line.
func tail(files []string, cur *os.File, n int) ([][]byte, int64, error) {
	var curEnd int64
	var all [][]byte // newest first
	count := 0
	done := false
	take := func(rec []byte) bool {
		e, err := ParseRecord(rec)
		if err != nil {
			return true
		}
		if !e.Partial && count == n {
			return false
		}
		if !e.Partial || len(all) == 0 {
			count++
		}
		all = append(all, rec)
		return true
	}
	if cur != nil {
		end, err := cur.Seek(0, io.SeekEnd)
		if err != nil {
			return nil, 0, err
		}
		end = lastNL(cur, end)
		curEnd = end
		if n > 0 {
			done = backwards(cur, end, take)
		} else {
			done = true
		}
		if _, err := cur.Seek(curEnd, io.SeekStart); err != nil {
			return nil, 0, err
		}
	}
	for i := len(files) - 1; i >= 0 && !done && n > 0; i-- {
		f, err := os.Open(files[i])
		if err != nil {
			continue
		}
		end, err := f.Seek(0, io.SeekEnd)
		if err == nil {
			done = backwards(f, lastNL(f, end), take)
		}
		f.Close()
	}
	// Reverse to oldest first.
	for i, j := 0, len(all)-1; i < j; i, j = i+1, j-1 {
		all[i], all[j] = all[j], all[i]
	}
	if n == 0 {
		all = nil
	}
	return all, curEnd, nil
}

// lastNL returns the offset just after the last newline at or before end.
func lastNL(f *os.File, end int64) int64 {
	var b [4096]byte
	for pos := end; pos > 0; {
		n := int64(len(b))
		if pos < n {
			n = pos
		}
		pos -= n
		if _, err := f.ReadAt(b[:n], pos); err != nil && err != io.EOF {
			return 0
		}
		if i := bytes.LastIndexByte(b[:n], '\n'); i >= 0 {
			return pos + int64(i) + 1
		}
	}
	return 0
}

// backwards calls take for each line of f[0:end] from the last to the first
// until take returns false; it reports whether take stopped it.
func backwards(f *os.File, end int64, take func([]byte) bool) bool {
	const chunk = 64 << 10
	var carry []byte // start of a line that continues into later data
	buf := make([]byte, chunk)
	pos := end
	for pos > 0 {
		n := int64(chunk)
		if pos < n {
			n = pos
		}
		pos -= n
		if _, err := f.ReadAt(buf[:n], pos); err != nil && err != io.EOF {
			return false
		}
		data := append(buf[:n:n], carry...)
		// data ends at a line boundary; emit lines from the end.
		if len(data) > 0 && data[len(data)-1] == '\n' {
			data = data[:len(data)-1]
		}
		for {
			i := bytes.LastIndexByte(data, '\n')
			if i < 0 {
				break
			}
			rec := append([]byte(nil), data[i+1:]...)
			if !take(rec) {
				return true
			}
			data = data[:i]
		}
		carry = append([]byte(nil), data...)
		if len(carry) > 0 {
			carry = append(carry, '\n')
		}
	}
	if len(carry) > 0 {
		if !take(append([]byte(nil), carry[:len(carry)-1]...)) {
			return true
		}
	}
	return false
}

func sameFile(a, b os.FileInfo) bool {
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	if !ok1 || !ok2 {
		return os.SameFile(a, b)
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

func follow(ctx context.Context, path string, cur *os.File, off int64, f *filter) error {
	tick := time.NewTicker(f.o.PollInterval)
	defer tick.Stop()
	finishing := false
	for {
		if cur == nil {
			nf, err := os.Open(path)
			if err == nil {
				cur, off = nf, 0
				defer nf.Close()
			}
		}
		if cur != nil {
			// Truncated in place: start again.
			if st, err := cur.Stat(); err == nil && st.Size() < off {
				off = 0
				cur.Seek(0, io.SeekStart)
			}
			n, err := scan(cur, f.handle)
			if err != nil {
				if err == errStop {
					return nil
				}
				return err
			}
			off = n
			// Rotated: the name now points at another file. Drain the
			// old one (done above) and switch.
			pst, perr := os.Stat(path)
			cst, cerr := cur.Stat()
			if perr == nil && cerr == nil && !sameFile(pst, cst) {
				// Read anything written between scan and rename.
				n, err := scan(cur, f.handle)
				if err != nil {
					if err == errStop {
						return nil
					}
					return err
				}
				_ = n
				// Catch up on files rotated since: those newer than
				// the one we held, or all of them if it is gone.
				if err := catchUp(path, cur, f); err != nil {
					if err == errStop {
						return nil
					}
					return err
				}
				nf, err := os.Open(path)
				if err == nil {
					old := cur
					cur, off = nf, 0
					old.Close()
					defer nf.Close()
					continue
				}
			}
		}
		if finishing {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-f.o.Done:
			finishing = true // one more pass reads what is left
		case <-tick.C:
		}
	}
}

// catchUp reads the rotated files newer than held, oldest first.
func catchUp(path string, held *os.File, f *filter) error {
	hst, err := held.Stat()
	if err != nil {
		return nil
	}
	files, err := Files(path)
	if err != nil {
		return nil
	}
	if len(files) > 0 && files[len(files)-1] == path {
		files = files[:len(files)-1]
	}
	start := 0
	for i, name := range files {
		if st, err := os.Stat(name); err == nil && sameFile(st, hst) {
			start = i + 1
		}
	}
	for _, name := range files[start:] {
		rf, err := os.Open(name)
		if err != nil {
			continue
		}
		_, err = scan(rf, f.handle)
		rf.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
