package transport

import (
	"io"
	"sync"
)

// NewBufferedPipe returns the two ends of an in-memory pipe that holds up to
// size bytes, to absorb the bursts of zfs send (or the stalls of zfs recv)
// without an external mbuffer. A write blocks while the buffer is full and
// never drops data; a read blocks until there is data or the writer closed.
// Data is read in the order written; concurrent writes are serialized, each
// kept whole. The buffer is allocated at once. It panics if size < 1.
func NewBufferedPipe(size int) (*BufWriter, *BufReader) {
	if size < 1 {
		panic("transport: NewBufferedPipe size must be at least 1")
	}
	p := &bufPipe{buf: make([]byte, size)}
	p.cond.L = &p.mu
	return &BufWriter{p}, &BufReader{p}
}

// BufWriter is the write end of a buffered pipe.
type BufWriter struct{ p *bufPipe }

// BufReader is the read end of a buffered pipe.
type BufReader struct{ p *bufPipe }

type bufPipe struct {
	wmu  sync.Mutex // serializes Writes
	mu   sync.Mutex
	cond sync.Cond // signalled on every change of n, werr or rerr
	buf  []byte    // ring
	r, n int       // read position and bytes pending
	werr error     // set by the writer's close: what reads return once drained
	rerr error     // set by the reader's close: what writes return

	// If set, called with mu held each time a write waits for room or a
	// read waits for data. For tests.
	onWriterBlock, onReaderBlock func()
}

// Write copies p into the buffer, blocking while it is full. It returns
// early with the reader's close error, or io.ErrClosedPipe after the
// writer's own close.
func (w *BufWriter) Write(p []byte) (int, error) {
	b := w.p
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	written := 0
	for {
		if b.rerr != nil {
			return written, b.rerr
		}
		if b.werr != nil {
			return written, io.ErrClosedPipe
		}
		if len(p) == 0 {
			return written, nil
		}
		free := len(b.buf) - b.n
		if free == 0 {
			if b.onWriterBlock != nil {
				b.onWriterBlock()
			}
			b.cond.Wait()
			continue
		}
		// Copy into the free region, which may wrap around the end.
		end := (b.r + b.n) % len(b.buf)
		k := copy(b.buf[end:min(len(b.buf), end+free)], p)
		if k < free && k < len(p) {
			k += copy(b.buf[:free-k], p[k:])
		}
		b.n += k
		written += k
		p = p[k:]
		b.cond.Broadcast()
	}
}

// Close closes the write end: the reader gets io.EOF once it has read
// everything written. It is CloseWithError(nil).
func (w *BufWriter) Close() error { return w.CloseWithError(nil) }

// CloseWithError closes the write end: the reader gets err (io.EOF if err
// is nil) once it has read everything written before. Only the first close
// counts. It never blocks and always returns nil.
func (w *BufWriter) CloseWithError(err error) error {
	if err == nil {
		err = io.EOF
	}
	b := w.p
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.werr == nil {
		b.werr = err
		b.cond.Broadcast()
	}
	return nil
}

// Read reads buffered data, blocking until there is some or the writer
// closed. After the writer's close it returns the rest of the data, then
// the close error (io.EOF for a plain Close).
func (r *BufReader) Read(p []byte) (int, error) {
	b := r.p
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.n == 0 {
		if b.rerr != nil {
			return 0, io.ErrClosedPipe
		}
		if b.werr != nil {
			return 0, b.werr
		}
		if len(p) == 0 {
			return 0, nil
		}
		if b.onReaderBlock != nil {
			b.onReaderBlock()
		}
		b.cond.Wait()
	}
	k := copy(p, b.buf[b.r:min(len(b.buf), b.r+b.n)])
	if k < len(p) && k < b.n {
		k += copy(p[k:], b.buf[:b.n-k])
	}
	b.r = (b.r + k) % len(b.buf)
	b.n -= k
	if b.n == 0 {
		b.r = 0 // keep later writes contiguous
	}
	b.cond.Broadcast()
	return k, nil
}

// Buffered returns the number of bytes written and not yet read.
func (r *BufReader) Buffered() int {
	b := r.p
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

// Close closes the read end: pending and later writes return
// io.ErrClosedPipe. It is CloseWithError(nil).
func (r *BufReader) Close() error { return r.CloseWithError(nil) }

// CloseWithError closes the read end and drops the buffered data: pending
// and later writes return err (io.ErrClosedPipe if err is nil), so the
// producer stops. Only the first close counts. It never blocks and always
// returns nil.
func (r *BufReader) CloseWithError(err error) error {
	if err == nil {
		err = io.ErrClosedPipe
	}
	b := r.p
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rerr == nil {
		b.rerr = err
		b.r, b.n = 0, 0
		b.cond.Broadcast()
	}
	return nil
}
