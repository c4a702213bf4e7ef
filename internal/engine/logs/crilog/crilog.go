// Package crilog writes container logs in the CRI format (one record per
// line, "<RFC3339Nano UTC> <stdout|stderr> <F|P> <content>") with size-based
// rotation (path, path.1 … path.N-1). Package logs reads what it writes.
//
// It is the writing half of package logs, split off because the
// per-container monitor (berth-shim) links it: it uses only package syscall,
// never os, time or strconv. With the kernel's fault-around, a small
// static binary is resident almost whole, so every package linked into the
// monitor costs every container its size in RSS.
package crilog

import (
	"sync"
	"syscall"
)

// Defaults for rotation, as Docker's json-file driver with max-size=10m,
// max-file=3.
const (
	DefaultMaxSize  = 10 << 20
	DefaultMaxFiles = 3
	// MaxLineSize is the size at which a line without a newline is split
	// into partial (P) records, as the CRI log writers do.
	MaxLineSize = 16 << 10

	// flushSize is how much a Writer queues before it writes.
	flushSize = 32 << 10
)

// Stream names as they appear in records.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// Writer appends CRI records to a log file and rotates it by size. It is safe
// for concurrent use by several streams.
type Writer struct {
	// Clock returns the wall time for new records (default: Now). Tests
	// set it before the first write.
	Clock func() (sec int64, nsec int32)

	mu       sync.Mutex
	path     string
	maxSize  int64
	maxFiles int
	fd       int // -1 once closed
	size     int64
	buf      []byte // records not yet written
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
	// The queue is allocated once at its largest: growing it by appends
	// would leave garbage that stays resident in the monitor.
	w := &Writer{Clock: Now, path: path, maxSize: maxSize, maxFiles: maxFiles, fd: -1,
		buf: make([]byte, 0, flushSize+MaxLineSize+128)}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Writer) open() error {
	fd, err := syscall.Open(w.path, syscall.O_WRONLY|syscall.O_APPEND|syscall.O_CREAT|syscall.O_CLOEXEC, 0o640)
	if err != nil {
		return &Error{"open log", w.path, err}
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return &Error{"stat log", w.path, err}
	}
	w.fd, w.size = fd, st.Size
	return nil
}

// WriteRecord appends one record for stream with content (which must not
// contain a newline). partial marks a piece of a longer line.
func (w *Writer) WriteRecord(stream string, content []byte, partial bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	sec, nsec := w.Clock()
	if err := w.add(sec, nsec, stream, content, partial); err != nil {
		return err
	}
	return w.flush()
}

// add queues one record, first writing out what is queued and rotating if
// the record would not fit in the current file. Callers hold mu.
func (w *Writer) add(sec int64, nsec int32, stream string, content []byte, partial bool) error {
	if w.fd < 0 {
		return &Error{"write log", w.path, errClosed}
	}
	if len(w.buf) >= flushSize {
		// Bounded, so a burst of short lines does not grow the buffer
		// (and the monitor's heap) to several times the burst.
		if err := w.flush(); err != nil {
			return err
		}
	}
	n := len(w.buf)
	b := AppendTimestamp(w.buf, sec, nsec)
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
	if rec := int64(len(b) - n); w.size+int64(n) > 0 && w.size+int64(len(b)) > w.maxSize {
		// The queued records before this one go to the current file; this
		// one starts the next.
		w.buf = b[:n]
		if err := w.flush(); err != nil {
			return err
		}
		if w.size > 0 {
			if err := w.rotate(); err != nil {
				return err
			}
		}
		w.buf = append(w.buf[:0], b[n:n+int(rec)]...)
	}
	return nil
}

// flush writes the queued records. Callers hold mu.
func (w *Writer) flush() error {
	b := w.buf
	w.buf = w.buf[:0]
	for len(b) > 0 {
		n, err := syscall.Write(w.fd, b)
		if n > 0 {
			w.size += int64(n)
			b = b[n:]
		}
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return &Error{"write log", w.path, err}
		}
		if n == 0 {
			return &Error{"write log", w.path, syscall.EIO}
		}
	}
	return nil
}

func (w *Writer) rotate() error {
	syscall.Close(w.fd)
	w.fd = -1
	if w.maxFiles == 1 {
		if err := syscall.Unlink(w.path); err != nil && err != syscall.ENOENT {
			return &Error{"rotate log", w.path, err}
		}
		return w.open()
	}
	for i := w.maxFiles - 1; i >= 1; i-- {
		from := w.path
		if i > 1 {
			from = w.path + "." + Itoa(i-1)
		}
		if err := syscall.Rename(from, w.path+"."+Itoa(i)); err != nil && err != syscall.ENOENT {
			return &Error{"rotate log", w.path, err}
		}
	}
	return w.open()
}

// Close closes the current file.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fd < 0 {
		return nil
	}
	err := w.flush()
	if cerr := syscall.Close(w.fd); err == nil && cerr != nil {
		err = &Error{"close log", w.path, cerr}
	}
	w.fd = -1
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

// Write implements io.Writer. It always consumes all of p. Every record of
// one call carries the same time (the bytes arrived together) and the
// records go to the file in one write where rotation allows.
func (s *StreamWriter) Write(p []byte) (int, error) {
	n := len(p)
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	sec, nsec := w.Clock()
	rec := func(content []byte, partial bool) error {
		return w.add(sec, nsec, s.stream, content, partial)
	}
	var err error
	for len(p) > 0 && err == nil {
		i := indexNL(p)
		if s.pend == nil && (i < 0 || len(p) > MaxLineSize) {
			s.pend = make([]byte, 0, MaxLineSize)
		}
		if i < 0 {
			room := MaxLineSize - len(s.pend)
			if len(p) < room {
				s.pend = append(s.pend, p...)
				break
			}
			s.pend = append(s.pend, p[:room]...)
			p = p[room:]
			err = rec(s.pend, true)
			s.pend = s.pend[:0]
			continue
		}
		line := p[:i]
		p = p[i+1:]
		// A pending start of line joins this one; an over-long result is
		// split into partial records first.
		for len(s.pend)+len(line) > MaxLineSize && err == nil {
			room := MaxLineSize - len(s.pend)
			if len(s.pend) == 0 {
				err = rec(line[:room], true)
			} else {
				s.pend = append(s.pend, line[:room]...)
				err = rec(s.pend, true)
				s.pend = s.pend[:0]
			}
			line = line[room:]
		}
		if err != nil {
			break
		}
		if len(s.pend) > 0 {
			s.pend = append(s.pend, line...)
			err = rec(s.pend, false)
			s.pend = s.pend[:0]
		} else {
			err = rec(line, false)
		}
	}
	if ferr := w.flush(); err == nil {
		err = ferr
	}
	return n, err
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

func indexNL(p []byte) int {
	for i, c := range p {
		if c == '\n' {
			return i
		}
	}
	return -1
}

// Error is a failed log file operation.
type Error struct {
	Op, Path string
	Err      error
}

func (e *Error) Error() string { return e.Op + " \"" + e.Path + "\": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

type closedError struct{}

func (closedError) Error() string { return "writer closed" }

var errClosed error = closedError{}
