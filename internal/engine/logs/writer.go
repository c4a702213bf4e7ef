// Package logs owns container log files: the CRI log format (one record per
// line, "<RFC3339Nano UTC> <stdout|stderr> <F|P> <content>"), size-based
// rotation (path, path.1 … path.N-1) and a reader with tail, since/until and
// follow that continues across rotation.
//
// The package links only the standard library so the per-container shim can
// use it without growing.
package logs

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"sync"
	"time"
)

// Defaults for rotation, as Docker's json-file driver with max-size=10m,
// max-file=3.
const (
	DefaultMaxSize  = 10 << 20
	DefaultMaxFiles = 3
	// MaxLineSize is the size at which a line without a newline is split
	// into partial (P) records, as the CRI log writers do.
	MaxLineSize = 16 << 10
)

// Stream names as they appear in records.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// Writer appends CRI records to a log file and rotates it by size. It is safe
// for concurrent use by several streams.
type Writer struct {
	mu       sync.Mutex
	path     string
	maxSize  int64
	maxFiles int
	f        *os.File
	size     int64
	buf      []byte
	now      func() time.Time
}

// NewWriter opens (appending) the log at path. maxSize <= 0 means
// DefaultMaxSize; maxFiles <= 0 means DefaultMaxFiles. A maxFiles of 1 keeps
// only the current file: it is truncated when full.
func NewWriter(path string, maxSize int64, maxFiles int) (*Writer, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if maxFiles <= 0 {
		maxFiles = DefaultMaxFiles
	}
	w := &Writer{path: path, maxSize: maxSize, maxFiles: maxFiles, now: time.Now}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Writer) open() error {
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return wrapErr("open log "+strconv.Quote(w.path), err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return wrapErr("stat log "+strconv.Quote(w.path), err)
	}
	w.f, w.size = f, st.Size()
	return nil
}

// WriteRecord appends one record for stream with content (which must not
// contain a newline). partial marks a piece of a longer line.
func (w *Writer) WriteRecord(stream string, content []byte, partial bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return errors.New("log " + strconv.Quote(w.path) + ": writer closed")
	}
	b := w.buf[:0]
	b = w.now().UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, ' ')
	b = append(b, stream...)
	if partial {
		b = append(b, " P "...)
	} else {
		b = append(b, " F "...)
	}
	b = append(b, content...)
	b = append(b, '\n')
	w.buf = b
	if w.size > 0 && w.size+int64(len(b)) > w.maxSize {
		if err := w.rotate(); err != nil {
			return err
		}
	}
	n, err := w.f.Write(b)
	w.size += int64(n)
	if err != nil {
		return wrapErr("write log "+strconv.Quote(w.path), err)
	}
	return nil
}

func (w *Writer) rotate() error {
	if err := w.f.Close(); err != nil {
		return wrapErr("close log "+strconv.Quote(w.path), err)
	}
	w.f = nil
	if w.maxFiles == 1 {
		if err := os.Remove(w.path); err != nil && !os.IsNotExist(err) {
			return wrapErr("rotate log "+strconv.Quote(w.path), err)
		}
		return w.open()
	}
	for i := w.maxFiles - 1; i >= 1; i-- {
		from := w.path
		if i > 1 {
			from = w.path + "." + strconv.Itoa(i-1)
		}
		if err := os.Rename(from, w.path+"."+strconv.Itoa(i)); err != nil && !os.IsNotExist(err) {
			return wrapErr("rotate log "+strconv.Quote(w.path), err)
		}
	}
	return w.open()
}

// Close closes the current file.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// StreamWriter splits a byte stream into lines and writes each as a record
// of one stream. Lines longer than MaxLineSize become partial records. It is
// not safe for concurrent use; use one per stream.
type StreamWriter struct {
	w      *Writer
	stream string
	pend   []byte
}

// Stream returns an io.Writer for stream ("stdout" or "stderr"). Call Flush
// at end of stream to write a trailing line that has no newline.
func (w *Writer) Stream(stream string) *StreamWriter {
	return &StreamWriter{w: w, stream: stream}
}

// Write implements io.Writer. It always consumes all of p.
func (s *StreamWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := indexNL(p)
		if i < 0 {
			room := MaxLineSize - len(s.pend)
			if len(p) < room {
				s.pend = append(s.pend, p...)
				return n, nil
			}
			s.pend = append(s.pend, p[:room]...)
			p = p[room:]
			if err := s.w.WriteRecord(s.stream, s.pend, true); err != nil {
				s.pend = s.pend[:0]
				return n, err
			}
			s.pend = s.pend[:0]
			continue
		}
		line := p[:i]
		p = p[i+1:]
		var err error
		if len(s.pend) > 0 {
			// Split an over-long joined line first.
			for len(s.pend)+len(line) > MaxLineSize {
				room := MaxLineSize - len(s.pend)
				s.pend = append(s.pend, line[:room]...)
				line = line[room:]
				if err := s.w.WriteRecord(s.stream, s.pend, true); err != nil {
					s.pend = s.pend[:0]
					return n, err
				}
				s.pend = s.pend[:0]
			}
			s.pend = append(s.pend, line...)
			err = s.w.WriteRecord(s.stream, s.pend, false)
			s.pend = s.pend[:0]
		} else {
			for len(line) > MaxLineSize {
				if err := s.w.WriteRecord(s.stream, line[:MaxLineSize], true); err != nil {
					return n, err
				}
				line = line[MaxLineSize:]
			}
			err = s.w.WriteRecord(s.stream, line, false)
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Flush writes any buffered incomplete line as a partial record.
func (s *StreamWriter) Flush() error {
	if len(s.pend) == 0 {
		return nil
	}
	err := s.w.WriteRecord(s.stream, s.pend, true)
	s.pend = s.pend[:0]
	return err
}

func indexNL(p []byte) int { return bytes.IndexByte(p, '\n') }
