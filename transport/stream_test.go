package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

type recordingHandler struct {
	got    chan []byte
	errs   chan error
	failAt int // stop reading after this many bytes and fail (0 = never)
}

func (h *recordingHandler) Call(ctx context.Context, req []byte) ([]byte, error) {
	if string(req) == "fail" {
		return nil, errors.New("no such method")
	}
	return append([]byte("echo:"), req...), nil
}

func (h *recordingHandler) Stream(ctx context.Context, header []byte, r io.Reader) End {
	var buf bytes.Buffer
	var err error
	if h.failAt > 0 {
		_, err = io.CopyN(&buf, r, int64(h.failAt))
		h.got <- buf.Bytes()
		return End{Status: EndResumable, Code: "zfs", Message: "cannot receive: incomplete stream", Token: "1-abc"}
	}
	_, err = io.Copy(&buf, r)
	h.got <- buf.Bytes()
	h.errs <- err
	if err != nil {
		return ErrorEnd(err)
	}
	return End{Status: EndOK}
}

// pair starts a plaintext listener on loopback and returns a dial func.
func pair(t *testing.T, h Handler, stall time.Duration) func() *Conn {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ln, err := Listen("127.0.0.1:0", "beta", "alpha", Security{Plaintext: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			go Serve(ctx, c, h, stall)
		}
	}()
	return func() *Conn {
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		defer dcancel()
		c, err := Dial(dctx, ln.Addr().String(), "alpha", "beta", PurposeData, Security{Plaintext: true}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
}

func mixed(n int) []byte {
	b := make([]byte, n)
	rand.Read(b[:n/2])
	for i := n / 2; i < n; i++ {
		b[i] = "zfs send stream text "[i%21]
	}
	return b
}

func TestStreamRoundTrip(t *testing.T) {
	for _, mode := range []Mode{ModeZstd, ModeLZ4, ModeNone, ModeAuto} {
		t.Run(mode.String(), func(t *testing.T) {
			h := &recordingHandler{got: make(chan []byte, 1), errs: make(chan error, 1)}
			dial := pair(t, h, 5*time.Second)
			data := mixed(5<<20 + 123)
			stats := &StreamStats{}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			end, err := dial().SendStream(ctx, []byte("hdr"), bytes.NewReader(data), StreamOptions{Mode: mode, Level: 3, Stats: stats})
			if err != nil || end.Status != EndOK {
				t.Fatalf("%v %v", end, err)
			}
			if got := <-h.got; !bytes.Equal(got, data) {
				t.Fatalf("received %d bytes, differ from the %d sent", len(got), len(data))
			}
			if stats.BytesIn.Load() != int64(len(data)) {
				t.Fatalf("stats in=%d", stats.BytesIn.Load())
			}
			if mode == ModeZstd && stats.Ratio() > 0.8 {
				t.Fatalf("zstd ratio %.2f on half-text data", stats.Ratio())
			}
		})
	}
}

func TestStreamReceiverFailsEarly(t *testing.T) {
	h := &recordingHandler{got: make(chan []byte, 1), failAt: 1 << 20}
	dial := pair(t, h, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	end, err := dial().SendStream(ctx, nil, bytes.NewReader(mixed(64<<20)), StreamOptions{Mode: ModeNone})
	var pe *PeerError
	if !errors.As(err, &pe) || end.Status != EndResumable || end.Token != "1-abc" {
		t.Fatalf("want the receiver's resumable End, got %+v %v", end, err)
	}
}

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("zfs send: cannot send: I/O error")
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	f.n -= len(p)
	return len(p), nil
}

func TestStreamSenderFailureReachesReceiver(t *testing.T) {
	h := &recordingHandler{got: make(chan []byte, 1), errs: make(chan error, 1)}
	dial := pair(t, h, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := dial().SendStream(ctx, nil, &failingReader{n: 3 << 20}, StreamOptions{Mode: ModeZstd})
	if err == nil || !strings.Contains(err.Error(), "I/O error") {
		t.Fatalf("sender error lost: %v", err)
	}
	<-h.got
	rerr := <-h.errs
	var pe *PeerError
	if !errors.As(rerr, &pe) || !strings.Contains(pe.End.Message, "I/O error") {
		t.Fatalf("receiver saw %v, want the sender's error", rerr)
	}
}

// blockingReader sends a little, then nothing, as a hung zfs send would.
type blockingReader struct {
	sent    bool
	release chan struct{}
}

func (b *blockingReader) Read(p []byte) (int, error) {
	if !b.sent {
		b.sent = true
		return copy(p, mixed(len(p))), nil
	}
	<-b.release
	return 0, io.EOF
}

func TestStreamStallDetected(t *testing.T) {
	h := &recordingHandler{got: make(chan []byte, 1), errs: make(chan error, 1)}
	dial := pair(t, h, 300*time.Millisecond)
	br := &blockingReader{release: make(chan struct{})}
	defer close(br.release)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go dial().SendStream(ctx, nil, br, StreamOptions{Mode: ModeNone})
	start := time.Now()
	<-h.got
	err := <-h.errs
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("want ErrStalled, got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("stall detected after %v", d)
	}
}

func TestCall(t *testing.T) {
	h := &recordingHandler{}
	dial := pair(t, h, 5*time.Second)
	ctx := context.Background()
	resp, err := dial().Call(ctx, []byte("tree"), 5*time.Second)
	if err != nil || string(resp) != "echo:tree" {
		t.Fatalf("%q %v", resp, err)
	}
	_, err = dial().Call(ctx, []byte("fail"), 5*time.Second)
	var pe *PeerError
	if !errors.As(err, &pe) || !strings.Contains(pe.End.Message, "no such method") {
		t.Fatalf("%v", err)
	}
}

func TestWrongPeerRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ln, err := Listen("127.0.0.1:0", "beta", "alpha", Security{Plaintext: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go ln.Accept(ctx)
	_, err = Dial(ctx, ln.Addr().String(), "mallory", "beta", PurposeData, Security{Plaintext: true}, nil)
	var re *RejectedError
	if !errors.As(err, &re) || !strings.Contains(re.Reason, "not the configured peer") {
		t.Fatalf("want a rejection, got %v", err)
	}
	if _, err := Dial(ctx, ln.Addr().String(), "alpha", "beta", PurposeData, Security{}, nil); err == nil || !strings.Contains(err.Error(), "plaintext") {
		t.Fatalf("no security configured must be refused: %v", err)
	}
}

// Streams sharing a limiter stay within its budget together.
func TestSharedLimiterBoundsStreamsTogether(t *testing.T) {
	h := &recordingHandler{got: make(chan []byte, 2), errs: make(chan error, 2)}
	dial := pair(t, h, 5*time.Second)
	lim := NewSharedLimiter(4 << 20)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	done := make(chan error, 2)
	for i := 0; i < 2; i++ {
		c := dial()
		go func() {
			_, err := c.SendStream(ctx, nil, bytes.NewReader(mixed(2<<20)), StreamOptions{Mode: ModeNone, Limiter: lim})
			done <- err
		}()
	}
	for i := 0; i < 2; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	// 4 MiB at 4 MiB/s shared (one 64 KiB burst): at least ~0.9 s; two
	// separate limiters would take half that.
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("two streams moved 4 MiB in %v through a 4 MiB/s shared limit", d)
	}
}
