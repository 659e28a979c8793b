package transport

import (
	"context"
	"io"
	"time"

	"golang.org/x/time/rate"
)

// rateLimitPiece is the largest piece a limited writer passes to the
// underlying writer at once, and the limiter's burst: the link never sees
// more than this ahead of the configured rate.
const rateLimitPiece = 64 << 10

// NewLimitedWriter returns a writer that passes everything to w at no more
// than bytesPerSec bytes per second on average (transport.bandwidth_limit).
// Writes are split into pieces of at most 64 KiB (or bytesPerSec, if less),
// which is also the burst, so a large write never goes out faster than the
// rate. While waiting, a write returns ctx's error as soon as ctx is done,
// with the count of bytes already passed to w. bytesPerSec <= 0 means
// unlimited: w itself is returned. The limit is per writer: each stream
// gets its own share.
// NewSharedLimiter is one bandwidth budget for several streams (a root's
// datasets replicate side by side; transport.bandwidth_limit bounds them
// together). Pass it in StreamOptions.Limiter.
func NewSharedLimiter(bytesPerSec int64) *rate.Limiter {
	if bytesPerSec <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(bytesPerSec), int(min(bytesPerSec, rateLimitPiece)))
}

// NewSharedLimitedWriter writes through a limiter shared with other streams.
func NewSharedLimitedWriter(ctx context.Context, w io.Writer, lim *rate.Limiter) io.Writer {
	if lim == nil {
		return w
	}
	return &limitedWriter{ctx: ctx, w: w, lim: lim, piece: lim.Burst(), now: time.Now, sleep: rateSleep}
}

func NewLimitedWriter(ctx context.Context, w io.Writer, bytesPerSec int64) io.Writer {
	if bytesPerSec <= 0 {
		return w
	}
	piece := int(min(bytesPerSec, rateLimitPiece))
	return &limitedWriter{
		ctx:   ctx,
		w:     w,
		lim:   rate.NewLimiter(rate.Limit(bytesPerSec), piece),
		piece: piece,
		now:   time.Now,
		sleep: rateSleep,
	}
}

type limitedWriter struct {
	ctx   context.Context
	w     io.Writer
	lim   *rate.Limiter
	piece int
	// Clock, replaced in tests.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
}

func (lw *limitedWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), lw.piece)
		if err := lw.wait(n); err != nil {
			return written, err
		}
		m, err := lw.w.Write(p[:n])
		written += m
		if err != nil {
			return written, err
		}
		if m != n {
			return written, io.ErrShortWrite
		}
		p = p[n:]
	}
	return written, nil
}

// wait blocks until n bytes may go, or ctx is done.
func (lw *limitedWriter) wait(n int) error {
	if err := lw.ctx.Err(); err != nil {
		return err
	}
	now := lw.now()
	r := lw.lim.ReserveN(now, n) // n <= burst: always OK
	d := r.DelayFrom(now)
	if d <= 0 {
		return nil
	}
	if err := lw.sleep(lw.ctx, d); err != nil {
		r.CancelAt(lw.now())
		return err
	}
	return nil
}

func rateSleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
