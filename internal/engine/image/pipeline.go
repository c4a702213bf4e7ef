package image

// The ingest pipeline. IngestLayer's work on one layer blob is five jobs
// in a row: read it from the network, hash it (and keep it), gunzip it,
// hash the tar (the diff ID) and unpack it. The two sha256 passes are most
// of that work (1.0-1.8 GB/s each here, and the tar is about twice the
// blob), so in one goroutine a layer keeps one core busy at most, and the
// last layer of a pull runs alone on a machine with more. So the jobs run
// as stages in goroutines of their own (read+hash+keep+gunzip, hash, unpack:
// about equal shares) that hand each other fixed-size chunks through
// bounded queues, in order: memory stays bounded (about chunkSize ×
// (queueDepth + 2) per queue) and a chunk is not copied from one stage to
// the next.

import (
	"fmt"
	"io"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

const (
	chunkSize  = 256 << 10 // bytes per chunk
	queueDepth = 4         // chunks a queue holds
)

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// chunk is a pooled buffer holding n bytes of a stream.
type chunk struct {
	p *[]byte
	n int
}

func newChunk() chunk { return chunk{p: chunkPool.Get().(*[]byte)} }

func (c chunk) bytes() []byte { return (*c.p)[:c.n] }

func (c *chunk) free() {
	if c.p != nil {
		chunkPool.Put(c.p)
		c.p = nil
	}
}

// pipeline is what the stages of one ingest share: their stop signal and
// the wait for all of them.
type pipeline struct {
	stop     chan struct{} // closed to make every stage give up
	drain    atomic.Bool   // set before stop: the first stage reads its source to the end
	stopOnce sync.Once
	wg       sync.WaitGroup
	panicked atomic.Value // string: the first panic of a stage, with its stack
}

func newPipeline() *pipeline { return &pipeline{stop: make(chan struct{})} }

// run starts a stage. A stage that panics (a bug, or input that trips a
// library) stops the pipeline, and halt panics in its caller's goroutine
// with the stage's panic: where the work ran before it was split in
// stages, so that whatever recovers there still does.
func (p *pipeline) run(f func()) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer func() {
			if r := recover(); r != nil {
				p.panicked.CompareAndSwap(nil, fmt.Sprintf("layer ingest stage: %v\n%s", r, debug.Stack()))
				p.stopOnce.Do(func() { close(p.stop) })
			}
		}()
		f()
	}()
}

// halt makes every stage stop at its next hand-over and waits for all of
// them; with drain the first stage reads its source to the end first
// (the first halt decides). It panics if a stage did.
func (p *pipeline) halt(drain bool) {
	p.stopOnce.Do(func() {
		p.drain.Store(drain)
		close(p.stop)
	})
	p.wait()
}

// wait waits for every stage to end; it panics if a stage did.
func (p *pipeline) wait() {
	p.wg.Wait()
	if v := p.panicked.Load(); v != nil {
		panic(v)
	}
}

// stopped reports whether halt was called.
func (p *pipeline) stopped() bool {
	select {
	case <-p.stop:
		return true
	default:
		return false
	}
}

// queue carries chunks from one stage to the next, in order. err, set
// before ch is closed, says why the stream ended (nil: at its end).
type queue struct {
	p   *pipeline
	ch  chan chunk
	err error
}

func (p *pipeline) queue() *queue { return &queue{p: p, ch: make(chan chunk, queueDepth)} }

// put hands c on; after a stop it frees c and reports false.
func (q *queue) put(c chunk) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.p.stop:
		c.free()
		return false
	}
}

// close ends the stream with err (nil: its end).
func (q *queue) close(err error) {
	q.err = err
	close(q.ch)
}

// errStopped is what a stage reads once the pipeline was stopped.
var errStopped = io.ErrClosedPipe

// queueReader reads the stream a queue carries, freeing each chunk once
// read.
type queueReader struct {
	q   *queue
	c   chunk
	off int
	err error
}

// next makes the next chunk current; false at the end of the stream (err
// says why).
func (r *queueReader) next() bool {
	r.c.free()
	r.off = 0
	if r.err != nil {
		return false
	}
	select {
	case c, ok := <-r.q.ch:
		if !ok {
			r.err = r.q.err
			if r.err == nil {
				r.err = io.EOF
			}
			return false
		}
		r.c = c
		return true
	case <-r.q.p.stop:
		r.err = errStopped
		return false
	}
}

func (r *queueReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for r.c.p == nil || r.off == r.c.n {
		if !r.next() {
			return 0, r.err
		}
	}
	n := copy(p, (*r.c.p)[r.off:r.c.n])
	r.off += n
	return n, nil
}

// WriteTo hands w the rest of the stream, chunk by chunk.
func (r *queueReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if r.c.p != nil && r.off < r.c.n {
			n, err := w.Write((*r.c.p)[r.off:r.c.n])
			r.off += n
			total += int64(n)
			if err != nil {
				return total, err
			}
		}
		if !r.next() {
			if r.err == io.EOF {
				return total, nil
			}
			return total, r.err
		}
	}
}

// release frees the current chunk (after the reader's last use).
func (r *queueReader) release() { r.c.free() }

// readChunk reads r into c until c is full or r ends; err is r's error,
// io.EOF at its end.
func readChunk(r io.Reader, c *chunk) error {
	buf := *c.p
	for c.n < len(buf) {
		n, err := r.Read(buf[c.n:])
		c.n += n
		if err != nil {
			return err
		}
	}
	return nil
}

// fill reads r into chunks and puts them on out until r ends; the error
// that ended r (nil at its end) closes out. A stop ends it early.
func fill(r io.Reader, out *queue) {
	for {
		c := newChunk()
		err := readChunk(r, &c)
		if c.n == 0 {
			c.free()
		} else if !out.put(c) {
			out.close(errStopped)
			return
		}
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			out.close(err)
			return
		}
	}
}
