package transport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"
)

// pipeBlockSignal returns a hook that reports each block on the returned
// channel without ever blocking the pipe.
func pipeBlockSignal() (func(), chan struct{}) {
	ch := make(chan struct{}, 1)
	return func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}, ch
}

func pipeDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestBufferedPipeOrdering(t *testing.T) {
	for _, size := range []int{1, 7, 4096, 1 << 20, 4 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := streamMixed(min(1<<20+3, size*5000+3), 30)
			w, r := NewBufferedPipe(size)
			go func() {
				rng := rand.New(rand.NewPCG(uint64(size), 1))
				for rest := data; len(rest) > 0; {
					n := min(len(rest), 1+rng.IntN(3*size+10))
					if k, err := w.Write(rest[:n]); err != nil || k != n {
						w.CloseWithError(fmt.Errorf("Write(%d) = %d, %v", n, k, err))
						return
					}
					rest = rest[n:]
				}
				w.Close()
			}()
			rng := rand.New(rand.NewPCG(uint64(size), 2))
			var got bytes.Buffer
			buf := make([]byte, 2*size+20)
			for {
				n, err := r.Read(buf[:1+rng.IntN(len(buf))])
				got.Write(buf[:n])
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(got.Bytes(), data) {
				t.Fatalf("got %d bytes, not the %d written in order", got.Len(), len(data))
			}
		})
	}
}

func TestBufferedPipeBackpressure(t *testing.T) {
	w, r := NewBufferedPipe(16)
	hook, blocked := pipeBlockSignal()
	w.p.onWriterBlock = hook

	// Up to the bound, writes do not block.
	if n, err := w.Write([]byte("0123456789abcdef")); n != 16 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if pipeDone(blocked) {
		t.Fatal("writer blocked below the bound")
	}
	if got := r.Buffered(); got != 16 {
		t.Fatalf("Buffered = %d", got)
	}

	// One byte more blocks until the reader makes room.
	done := make(chan struct{})
	var n int
	var werr error
	go func() {
		n, werr = w.Write([]byte("ghijk"))
		close(done)
	}()
	<-blocked // the writer waits for room, with the buffer full
	if pipeDone(done) {
		t.Fatal("write past the bound did not block")
	}
	buf := make([]byte, 3)
	if k, err := r.Read(buf); k != 3 || err != nil || string(buf) != "012" {
		t.Fatalf("Read = %d %q, %v", k, buf[:k], err)
	}
	<-blocked // 3 bytes in, 2 still waiting: it blocks again
	if pipeDone(done) {
		t.Fatal("write completed without room")
	}
	if got := r.Buffered(); got != 16 {
		t.Fatalf("Buffered = %d while writer blocked", got)
	}
	rest, err := io.ReadAll(io.LimitReader(r, 18))
	if err != nil {
		t.Fatal(err)
	}
	<-done
	if n != 5 || werr != nil {
		t.Fatalf("blocked Write = %d, %v", n, werr)
	}
	if string(rest) != "3456789abcdefghijk" {
		t.Fatalf("read %q", rest)
	}
}

func TestBufferedPipeReadBlocksUntilData(t *testing.T) {
	w, r := NewBufferedPipe(8)
	hook, blocked := pipeBlockSignal()
	r.p.onReaderBlock = hook
	type result struct {
		b   string
		err error
	}
	res := make(chan result, 1)
	go func() {
		buf := make([]byte, 8)
		n, err := r.Read(buf)
		res <- result{string(buf[:n]), err}
	}()
	<-blocked
	w.Write([]byte("hi"))
	if got := <-res; got.b != "hi" || got.err != nil {
		t.Fatalf("Read = %q, %v", got.b, got.err)
	}

	// A blocked read wakes on close.
	go func() {
		n, err := r.Read(make([]byte, 8))
		res <- result{fmt.Sprint(n), err}
	}()
	<-blocked
	w.Close()
	if got := <-res; got.b != "0" || got.err != io.EOF {
		t.Fatalf("Read after close = %s, %v", got.b, got.err)
	}
}

func TestBufferedPipeWriterError(t *testing.T) {
	w, r := NewBufferedPipe(64)
	errSend := errors.New("zfs send: exit status 1")
	w.Write([]byte("partial"))
	w.CloseWithError(errSend)
	w.CloseWithError(errors.New("second close is ignored"))
	got, err := io.ReadAll(r)
	if string(got) != "partial" || !errors.Is(err, errSend) {
		t.Fatalf("ReadAll = %q, %v; want the data, then %v", got, err, errSend)
	}
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, errSend) {
		t.Fatalf("read after error: %v", err)
	}
	if _, err := w.Write([]byte("x")); err != io.ErrClosedPipe {
		t.Fatalf("write after close: %v", err)
	}

	// Plain Close gives EOF after the data.
	w, r = NewBufferedPipe(64)
	w.Write([]byte("all"))
	w.Close()
	if got, err := io.ReadAll(r); string(got) != "all" || err != nil {
		t.Fatalf("ReadAll = %q, %v", got, err)
	}
}

func TestBufferedPipeReaderCloseStopsWriter(t *testing.T) {
	w, r := NewBufferedPipe(4)
	hook, blocked := pipeBlockSignal()
	w.p.onWriterBlock = hook
	errRecv := errors.New("zfs recv died")
	type result struct {
		n   int
		err error
	}
	res := make(chan result, 1)
	go func() {
		n, err := w.Write([]byte("0123456789"))
		res <- result{n, err}
	}()
	<-blocked
	r.CloseWithError(errRecv)
	if got := <-res; got.n != 4 || !errors.Is(got.err, errRecv) {
		t.Fatalf("Write = %d, %v; want 4, %v", got.n, got.err, errRecv)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, errRecv) {
		t.Fatalf("later Write: %v", err)
	}
	if n, err := r.Read(make([]byte, 4)); n != 0 || err != io.ErrClosedPipe {
		t.Fatalf("Read after own close = %d, %v", n, err)
	}
	if r.Buffered() != 0 {
		t.Fatal("close kept the buffered data")
	}

	// Plain Close: writes get io.ErrClosedPipe.
	w, r = NewBufferedPipe(4)
	r.Close()
	if _, err := w.Write([]byte("x")); err != io.ErrClosedPipe {
		t.Fatalf("Write after reader Close: %v", err)
	}
}

// Concurrent writes are serialized: each one's bytes stay together.
func TestBufferedPipeConcurrentWritesStayWhole(t *testing.T) {
	const writers, writes, size = 4, 50, 1000
	w, r := NewBufferedPipe(100)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			block := bytes.Repeat([]byte{byte('a' + i)}, size)
			for range writes {
				if _, err := w.Write(block); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	go func() { wg.Wait(); w.Close() }()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != writers*writes*size {
		t.Fatalf("read %d bytes", len(got))
	}
	for off := 0; off < len(got); off += size {
		if !bytes.Equal(got[off:off+size], bytes.Repeat(got[off:off+1], size)) {
			t.Fatalf("write at %d interleaved", off)
		}
	}
}

func TestBufferedPipeEdgeCases(t *testing.T) {
	w, r := NewBufferedPipe(4)
	if n, err := w.Write(nil); n != 0 || err != nil {
		t.Fatalf("empty Write = %d, %v", n, err)
	}
	if n, err := r.Read(nil); n != 0 || err != nil {
		t.Fatalf("empty Read = %d, %v", n, err)
	}
	for _, size := range []int{0, -1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewBufferedPipe(%d) did not panic", size)
				}
			}()
			NewBufferedPipe(size)
		}()
	}
}

// Blocked readers and writers all return once the other end closes: no
// goroutine is left behind.
func TestBufferedPipeNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	var wg sync.WaitGroup
	for i := range 20 {
		w, r := NewBufferedPipe(8)
		hook, blocked := pipeBlockSignal()
		if i%2 == 0 {
			// A writer blocked on a full buffer; the reader goes away.
			w.p.onWriterBlock = hook
			wg.Go(func() { w.Write(make([]byte, 100)) })
			<-blocked
			r.CloseWithError(errors.New("gone"))
		} else {
			// A reader blocked on an empty buffer; the writer goes away.
			r.p.onReaderBlock = hook
			wg.Go(func() { io.Copy(io.Discard, r) })
			<-blocked
			w.CloseWithError(errors.New("gone"))
		}
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, %d before", runtime.NumGoroutine(), before)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

// The pipe between zfs send and the compressor: end to end with a chunk
// writer and reader.
func TestBufferedPipeWithChunks(t *testing.T) {
	data := streamMixed(3*MaxChunkSize+99, 31)
	w, r := NewBufferedPipe(256 << 10)
	go func() {
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 100000)
			if _, err := w.Write(rest[:n]); err != nil {
				w.CloseWithError(err)
				return
			}
			rest = rest[n:]
		}
		w.Close()
	}()
	var wire bytes.Buffer
	cw, err := NewChunkWriter(&wire, ModeAuto, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(cw, r); err != nil {
		t.Fatal(err)
	}
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := decodeChunks(wire.Bytes(), nil)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("round trip through the pipe: %v", err)
	}
}
