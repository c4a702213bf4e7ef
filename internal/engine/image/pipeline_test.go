package image

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// A stream through fill and a queueReader comes out whole, by Read and by
// WriteTo, and the reader passes iotest's checks.
func TestQueueCarriesStream(t *testing.T) {
	data := make([]byte, 3*chunkSize+123)
	for i := range data {
		data[i] = byte(i * 7)
	}
	start := func(src io.Reader) (*pipeline, *queueReader) {
		p := newPipeline()
		q := p.queue()
		p.run(func() { fill(src, q) })
		return p, &queueReader{q: q}
	}
	before := runtime.NumGoroutine()

	p, r := start(iotest.HalfReader(bytes.NewReader(data)))
	if err := iotest.TestReader(r, data); err != nil {
		t.Error(err)
	}
	r.release()
	p.halt(false)

	p, r = start(bytes.NewReader(data))
	var buf bytes.Buffer
	if n, err := r.WriteTo(&buf); err != nil || n != int64(len(data)) || !bytes.Equal(buf.Bytes(), data) {
		t.Errorf("WriteTo: %d, %v", n, err)
	}
	p.halt(false)
	noGoroutinesLeft(t, before)
}

// The producer's error reaches the reader after the bytes before it; a
// stop unblocks a producer that nobody reads.
func TestQueueErrorAndStop(t *testing.T) {
	before := runtime.NumGoroutine()
	boom := errors.New("boom")
	p := newPipeline()
	q := p.queue()
	p.run(func() { fill(&failAfter{bytes.NewReader(make([]byte, 5*chunkSize)), chunkSize + 5, boom}, q) })
	r := &queueReader{q: q}
	n, err := io.Copy(io.Discard, r)
	if n != chunkSize+5 || !errors.Is(err, boom) {
		t.Errorf("read %d bytes, %v; want %d, %v", n, err, chunkSize+5, boom)
	}
	p.halt(false)

	// More chunks than the queue holds, never read: halt must not hang.
	p = newPipeline()
	q = p.queue()
	p.run(func() { fill(bytes.NewReader(make([]byte, (queueDepth+3)*chunkSize)), q) })
	p.halt(false)
	r = &queueReader{q: q}
	if _, err := io.Copy(io.Discard, r); err == nil {
		t.Error("reading a stopped queue to its end: no error")
	}
	noGoroutinesLeft(t, before)
}

// A stage that panics stops the pipeline (a reader of its queue is not
// left waiting) and its panic comes out of halt, in the caller's goroutine.
func TestStagePanicReachesCaller(t *testing.T) {
	before := runtime.NumGoroutine()
	p := newPipeline()
	q := p.queue()
	p.run(func() { panic("boom in a stage") })
	if _, err := io.Copy(io.Discard, &queueReader{q: q}); err == nil {
		t.Error("reading the queue of a stage that panicked: no error")
	}
	func() {
		defer func() {
			r := recover()
			if s, _ := r.(string); !strings.Contains(s, "boom in a stage") {
				t.Errorf("halt: recovered %v, want the stage's panic", r)
			}
		}()
		p.halt(true)
		t.Error("halt did not panic")
	}()
	noGoroutinesLeft(t, before)
}
