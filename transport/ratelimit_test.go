package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

// pieceRecordingWriter records the size of every write.
type pieceRecordingWriter struct {
	bytes.Buffer
	pieces []int
}

func (p *pieceRecordingWriter) Write(b []byte) (int, error) {
	p.pieces = append(p.pieces, len(b))
	return p.Buffer.Write(b)
}

// fakeRateClock makes a limited writer sleep on a simulated clock.
type fakeRateClock struct {
	t     time.Time
	slept time.Duration
}

func (c *fakeRateClock) install(w io.Writer) {
	lw := w.(*limitedWriter)
	lw.now = func() time.Time { return c.t }
	lw.sleep = func(ctx context.Context, d time.Duration) error {
		c.t = c.t.Add(d)
		c.slept += d
		return ctx.Err()
	}
}

func TestLimitedWriterUnlimited(t *testing.T) {
	var buf bytes.Buffer
	for _, rate := range []int64{0, -1} {
		if w := NewLimitedWriter(context.Background(), &buf, rate); w != io.Writer(&buf) {
			t.Fatalf("rate %d: got a wrapper, want w itself", rate)
		}
	}
}

func TestLimitedWriterRateFakeClock(t *testing.T) {
	for _, tc := range []struct {
		rate      int64
		size      int
		maxPiece  int
		wantSlept time.Duration
	}{
		// The first piece uses the initial burst; the rest waits.
		{4 << 20, 1 << 20, 64 << 10, time.Duration(float64((1<<20)-(64<<10)) / float64(4<<20) * float64(time.Second))},
		{1000, 5000, 1000, 4 * time.Second},
		{100 << 20, 10 << 20, 64 << 10, time.Duration(float64((10<<20)-(64<<10)) / float64(100<<20) * float64(time.Second))},
	} {
		var rec pieceRecordingWriter
		w := NewLimitedWriter(context.Background(), &rec, tc.rate)
		clock := &fakeRateClock{t: time.Unix(1e9, 0)}
		clock.install(w)
		data := streamText(tc.size, 40)
		// One big write and some small ones.
		half := tc.size / 2
		if n, err := w.Write(data[:half]); n != half || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		for off := half; off < tc.size; off += 999 {
			w.Write(data[off:min(tc.size, off+999)])
		}
		if !bytes.Equal(rec.Bytes(), data) {
			t.Fatal("data changed")
		}
		for _, p := range rec.pieces {
			if p > tc.maxPiece {
				t.Fatalf("rate %d: a piece of %d bytes, burst is %d", tc.rate, p, tc.maxPiece)
			}
		}
		if diff := clock.slept - tc.wantSlept; diff < -time.Millisecond || diff > time.Millisecond {
			t.Errorf("rate %d, %d bytes: slept %v, want %v", tc.rate, tc.size, clock.slept, tc.wantSlept)
		}
	}
}

// Real time, generously: 1 MiB at 4 MiB/s takes about 234 ms.
func TestLimitedWriterRealTime(t *testing.T) {
	var rec pieceRecordingWriter
	w := NewLimitedWriter(context.Background(), &rec, 4<<20)
	start := time.Now()
	if n, err := w.Write(make([]byte, 1<<20)); n != 1<<20 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 10*time.Second {
		t.Fatalf("1 MiB at 4 MiB/s took %v", d)
	}
}

func TestLimitedWriterCancelWhileWaiting(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var rec pieceRecordingWriter
	w := NewLimitedWriter(ctx, &rec, 1000)
	lw := w.(*limitedWriter)
	sleeping := make(chan time.Duration, 1)
	lw.sleep = func(ctx context.Context, d time.Duration) error {
		sleeping <- d
		return rateSleep(ctx, d)
	}
	type result struct {
		n   int
		err error
	}
	res := make(chan result, 1)
	go func() {
		n, err := w.Write(make([]byte, 5000))
		res <- result{n, err}
	}()
	d := <-sleeping // the second piece waits ~1s for tokens
	if d < 500*time.Millisecond {
		t.Fatalf("wait %v", d)
	}
	start := time.Now()
	cancel()
	got := <-res
	if got.n != 1000 || !errors.Is(got.err, context.Canceled) {
		t.Fatalf("Write = %d, %v; want 1000, canceled", got.n, got.err)
	}
	if e := time.Since(start); e > d/2 {
		t.Fatalf("cancel took %v", e)
	}
	// A done context stops later writes at once.
	if n, err := w.Write([]byte("x")); n != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("Write after cancel = %d, %v", n, err)
	}
}

func TestLimitedWriterUnderlyingErrors(t *testing.T) {
	w := NewLimitedWriter(context.Background(), &failingWriter{after: 100}, 1<<30)
	if n, err := w.Write(make([]byte, 200)); n != 100 || !errors.Is(err, errChunkWire) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	w = NewLimitedWriter(context.Background(), &failingWriter{after: 100, short: true}, 1<<30)
	if n, err := w.Write(make([]byte, 200)); n != 100 || !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("short Write = %d, %v", n, err)
	}
}
