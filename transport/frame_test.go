package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// rawHeader builds a header with any field values, valid or not.
func rawHeader(typ, flags uint8, reserved uint16, stream, length uint32) []byte {
	b := make([]byte, HeaderSize)
	b[0], b[1] = typ, flags
	binary.BigEndian.PutUint16(b[2:], reserved)
	binary.BigEndian.PutUint32(b[4:], stream)
	binary.BigEndian.PutUint32(b[8:], length)
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func encodeFrames(t testing.TB, max int, frames ...Frame) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := NewEncoder(&buf, max)
	for _, f := range frames {
		if err := enc.Encode(f); err != nil {
			t.Fatalf("Encode(%v): %v", f.Type, err)
		}
	}
	return buf.Bytes()
}

// decodeAll reads frames until an error, copying payloads.
func decodeAll(r io.Reader, max int) ([]Frame, error) {
	dec := NewDecoder(r, max)
	var out []Frame
	for {
		f, err := dec.Next()
		if err != nil {
			return out, err
		}
		f.Payload = bytes.Clone(f.Payload)
		out = append(out, f)
	}
}

func framesEqual(a, b []Frame) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Type != b[i].Type || a[i].Flags != b[i].Flags || a[i].Stream != b[i].Stream || !bytes.Equal(a[i].Payload, b[i].Payload) {
			return false
		}
	}
	return true
}

func TestFrameTypeString(t *testing.T) {
	want := map[FrameType]string{
		1: "Hello", 2: "HelloAck", 3: "Reject", 4: "Heartbeat", 5: "HeartbeatAck", 6: "Request",
		7: "Response", 8: "Data", 9: "End", 10: "Credit", 11: "Cancel",
		0: "FrameType(0)", 12: "FrameType(12)", 255: "FrameType(255)",
	}
	for ft, s := range want {
		if got := ft.String(); got != s {
			t.Errorf("FrameType(%d).String() = %q, want %q", uint8(ft), got, s)
		}
		if known := !strings.HasPrefix(s, "FrameType("); ft.Known() != known {
			t.Errorf("FrameType(%d).Known() = %v", uint8(ft), ft.Known())
		}
	}
}

// The wire format is frozen: this pins it byte by byte (docs/transport.md).
func TestFrameGolden(t *testing.T) {
	got := encodeFrames(t, 0, Frame{Type: FrameData, Flags: 0x05, Stream: 0x01020304, Payload: []byte("abc")})
	want := []byte{8, 0x05, 0, 0, 1, 2, 3, 4, 0, 0, 0, 3, 'a', 'b', 'c'}
	if !bytes.Equal(got, want) {
		t.Fatalf("encoded % x, want % x", got, want)
	}
}

func TestFrameRoundTrip(t *testing.T) {
	var frames []Frame
	for ft := FrameHello; ft <= FrameCancel; ft++ {
		frames = append(frames,
			Frame{Type: ft},
			Frame{Type: ft, Flags: 0xff, Stream: 0xffffffff, Payload: []byte{0}},
			Frame{Type: ft, Flags: 1, Stream: uint32(ft), Payload: bytes.Repeat([]byte{byte(ft)}, 1000)},
		)
	}
	frames = append(frames,
		Frame{Type: FrameData, Stream: 7, Payload: bytes.Repeat([]byte("z"), coalesceLimit)},   // largest single-buffer frame
		Frame{Type: FrameData, Stream: 7, Payload: bytes.Repeat([]byte("y"), coalesceLimit+1)}, // header and payload written separately
		Frame{Type: FrameData, Stream: 7, Payload: bytes.Repeat([]byte("x"), DefaultMaxPayload)},
	)
	wire := encodeFrames(t, 0, frames...)
	readers := map[string]func() io.Reader{
		"whole":    func() io.Reader { return bytes.NewReader(wire) },
		"one-byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(wire)) },
		"half":     func() io.Reader { return iotest.HalfReader(bytes.NewReader(wire)) },
	}
	for name, r := range readers {
		got, err := decodeAll(r(), 0)
		if err != io.EOF {
			t.Errorf("%s: final error %v, want io.EOF", name, err)
		}
		if !framesEqual(got, frames) {
			t.Errorf("%s: decoded %d frames, not equal to the %d encoded", name, len(got), len(frames))
		}
	}
}

func TestDecoderErrors(t *testing.T) {
	valid := encodeFrames(t, 0, Frame{Type: FrameHeartbeat, Payload: []byte("hb")})
	tests := []struct {
		name    string
		in      []byte
		max     int
		frames  int // decoded before the error
		want    error
		wantMsg string // the offending value must be named
	}{
		{name: "empty input is a clean EOF", in: nil, want: io.EOF},
		{name: "EOF after a whole frame is clean", in: valid, frames: 1, want: io.EOF},
		{name: "truncated header", in: valid[:5], want: ErrTruncated, wantMsg: "after 5 of 12 header bytes"},
		{name: "truncated header after a frame", in: cat(valid, valid[:11]), frames: 1, want: ErrTruncated, wantMsg: "after 11 of 12 header bytes"},
		{name: "truncated payload", in: valid[:13], want: ErrTruncated, wantMsg: "Heartbeat frame ended after 1 of 2 payload bytes"},
		{name: "header without payload", in: valid[:12], want: ErrTruncated, wantMsg: "after 0 of 2 payload bytes"},
		{name: "type 0", in: rawHeader(0, 0, 0, 0, 0), want: ErrUnknownFrameType, wantMsg: "unknown frame type 0"},
		{name: "type 12", in: rawHeader(12, 0, 0, 0, 0), want: ErrUnknownFrameType, wantMsg: "unknown frame type 12"},
		{name: "type 255", in: rawHeader(255, 0, 0, 0, 0), want: ErrUnknownFrameType, wantMsg: "255"},
		{name: "corrupt type after a good frame", in: cat(valid, rawHeader(99, 0, 0, 0, 0)), frames: 1, want: ErrUnknownFrameType, wantMsg: "99"},
		{name: "reserved low bit", in: rawHeader(8, 0, 1, 0, 0), want: ErrReservedBits, wantMsg: "0x0001"},
		{name: "reserved high bit", in: rawHeader(8, 0, 0x8000, 0, 0), want: ErrReservedBits, wantMsg: "0x8000"},
		{name: "one byte over the default limit", in: rawHeader(8, 0, 0, 1, DefaultMaxPayload+1), want: ErrFrameTooLarge,
			wantMsg: "Data frame of 262145 bytes exceeds the 262144-byte limit"},
		{name: "example from the brief", in: rawHeader(8, 0, 0, 1, 99999999), want: ErrFrameTooLarge,
			wantMsg: "frame of 99999999 bytes exceeds the 262144-byte limit"},
		{name: "4 GiB claim at the hard cap", in: rawHeader(8, 0, 0, 1, 0xffffffff), max: MaxPayloadLimit, want: ErrFrameTooLarge,
			wantMsg: "frame of 4294967295 bytes exceeds the 16777216-byte limit"},
		{name: "configured limit above the hard cap is capped", in: rawHeader(8, 0, 0, 1, MaxPayloadLimit+1), max: 1 << 30, want: ErrFrameTooLarge,
			wantMsg: "16777217 bytes exceeds the 16777216-byte limit"},
		{name: "small configured limit", in: rawHeader(4, 0, 0, 0, 101), max: 100, want: ErrFrameTooLarge, wantMsg: "Heartbeat frame of 101 bytes exceeds the 100-byte limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec := NewDecoder(bytes.NewReader(tt.in), tt.max)
			var err error
			n := 0
			for ; ; n++ {
				if _, err = dec.Next(); err != nil {
					break
				}
			}
			if n != tt.frames {
				t.Errorf("decoded %d frames before the error, want %d", n, tt.frames)
			}
			if tt.want == io.EOF {
				if err != io.EOF { // unwrapped, so `err == io.EOF` works for callers
					t.Fatalf("got %v, want io.EOF itself", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if tt.want == ErrTruncated && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("%v does not wrap io.ErrUnexpectedEOF", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
			if _, again := dec.Next(); again != err {
				t.Errorf("error is not sticky: next call gave %v", again)
			}
		})
	}
}

// A reader failure (a deadline, a reset) is passed through, not mistaken
// for truncation.
func TestDecoderReaderError(t *testing.T) {
	boom := errors.New("connection reset")
	in := io.MultiReader(bytes.NewReader(rawHeader(8, 0, 0, 1, 10)), bytes.NewReader([]byte("abc")), iotest.ErrReader(boom))
	_, err := NewDecoder(in, 0).Next()
	if !errors.Is(err, boom) || errors.Is(err, ErrTruncated) {
		t.Fatalf("got %v, want the reader's error and not ErrTruncated", err)
	}
	if !strings.Contains(err.Error(), "3 of 10 bytes") {
		t.Errorf("error %q does not say how far it got", err)
	}
}

// A peer that stalls mid-frame is caught by the caller's deadline.
func TestDecoderStalledPeerHitsDeadline(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() { _, _ = b.Write(rawHeader(8, 0, 0, 1, 100)) }() // then nothing
	if err := a.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	_, err := NewDecoder(a, 0).Next()
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %v, want os.ErrDeadlineExceeded", err)
	}
}

// The point of the 4 GiB test: the length is checked before any allocation.
func TestDecoderMemoryBounded(t *testing.T) {
	huge := rawHeader(uint8(FrameData), 0, 0, 1, 0xffffffff)
	for _, max := range []int{0, MaxPayloadLimit} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := NewDecoder(bytes.NewReader(huge), max).Next()
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("max %d: got %v, want ErrFrameTooLarge", max, err)
		}
		if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
			t.Errorf("max %d: decoding a 4 GiB claim allocated %d bytes", max, d)
		}
	}
	allocs := testing.AllocsPerRun(100, func() {
		_, _ = NewDecoder(bytes.NewReader(huge), MaxPayloadLimit).Next()
	})
	if allocs > 10 { // the decoder, the reader and the error text; no payload buffer
		t.Errorf("%v allocations per 4 GiB claim", allocs)
	}

	// A claim within the limit but never sent costs at most the limit.
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := NewDecoder(bytes.NewReader(cat(rawHeader(8, 0, 0, 1, MaxPayloadLimit), []byte("short"))), MaxPayloadLimit).Next()
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("got %v, want ErrTruncated", err)
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > MaxPayloadLimit+1<<20 {
		t.Errorf("a frame at the limit allocated %d bytes", d)
	}
}

// cycleReader repeats b forever.
type cycleReader struct {
	b   []byte
	off int
}

func (r *cycleReader) Read(p []byte) (int, error) {
	n := copy(p, r.b[r.off:])
	r.off = (r.off + n) % len(r.b)
	return n, nil
}

// Steady state decoding reuses its buffer: no allocation per frame.
func TestDecoderReusesBuffer(t *testing.T) {
	wire := encodeFrames(t, 0,
		Frame{Type: FrameData, Stream: 1, Payload: make([]byte, 64<<10)},
		Frame{Type: FrameCredit, Stream: 1, Payload: make([]byte, 8)},
	)
	dec := NewDecoder(&cycleReader{b: wire}, 0)
	if allocs := testing.AllocsPerRun(200, func() {
		if _, err := dec.Next(); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Errorf("%v allocations per frame, want 0", allocs)
	}
	if c := cap(dec.buf); c > dec.MaxPayload() {
		t.Errorf("buffer grew to %d, over the %d limit", c, dec.MaxPayload())
	}
}

func TestDecoderLimits(t *testing.T) {
	for in, want := range map[int]int{-1: DefaultMaxPayload, 0: DefaultMaxPayload, 1: 1, MaxPayloadLimit: MaxPayloadLimit, MaxPayloadLimit + 1: MaxPayloadLimit} {
		if got := NewDecoder(nil, in).MaxPayload(); got != want {
			t.Errorf("NewDecoder(max %d).MaxPayload() = %d, want %d", in, got, want)
		}
		if got := NewEncoder(nil, in).MaxPayload(); got != want {
			t.Errorf("NewEncoder(max %d).MaxPayload() = %d, want %d", in, got, want)
		}
	}
}

type writeRecorder struct {
	writes [][]byte
	fail   error
}

func (w *writeRecorder) Write(p []byte) (int, error) {
	if w.fail != nil {
		return 0, w.fail
	}
	w.writes = append(w.writes, bytes.Clone(p))
	return len(p), nil
}

func TestEncoder(t *testing.T) {
	t.Run("one write per small frame", func(t *testing.T) {
		w := &writeRecorder{}
		enc := NewEncoder(w, 0)
		for _, n := range []int{0, 1, 1000, coalesceLimit} {
			w.writes = nil
			if err := enc.Encode(Frame{Type: FrameData, Payload: make([]byte, n)}); err != nil {
				t.Fatal(err)
			}
			if len(w.writes) != 1 || len(w.writes[0]) != HeaderSize+n {
				t.Errorf("payload %d: %d writes, want 1 of %d bytes", n, len(w.writes), HeaderSize+n)
			}
		}
	})
	t.Run("oversized payload refused, nothing written", func(t *testing.T) {
		w := &writeRecorder{}
		enc := NewEncoder(w, 100)
		err := enc.Encode(Frame{Type: FrameData, Payload: make([]byte, 101)})
		if !errors.Is(err, ErrFrameTooLarge) || !strings.Contains(err.Error(), "101 bytes exceeds the 100-byte limit") {
			t.Fatalf("got %v", err)
		}
		if len(w.writes) != 0 {
			t.Fatalf("wrote %d times", len(w.writes))
		}
		if err := enc.Encode(Frame{Type: FrameData, Payload: make([]byte, 100)}); err != nil {
			t.Fatalf("encoder unusable after a refused frame: %v", err)
		}
	})
	t.Run("unknown type refused", func(t *testing.T) {
		w := &writeRecorder{}
		for _, ft := range []FrameType{0, 12, 255} {
			if err := NewEncoder(w, 0).Encode(Frame{Type: ft}); !errors.Is(err, ErrUnknownFrameType) {
				t.Errorf("type %d: got %v", uint8(ft), err)
			}
		}
		if len(w.writes) != 0 {
			t.Fatalf("wrote %d times", len(w.writes))
		}
	})
	t.Run("write error is sticky", func(t *testing.T) {
		boom := errors.New("broken pipe")
		w := &writeRecorder{fail: boom}
		enc := NewEncoder(w, 0)
		for _, n := range []int{10, coalesceLimit + 1} {
			if err := enc.Encode(Frame{Type: FrameData, Payload: make([]byte, n)}); !errors.Is(err, boom) {
				t.Fatalf("got %v", err)
			}
		}
		w.fail = nil
		if err := enc.Encode(Frame{Type: FrameData}); !errors.Is(err, boom) {
			t.Fatalf("after a failed write: got %v, want the first error again", err)
		}
	})
	t.Run("short write", func(t *testing.T) {
		if err := NewEncoder(shortWriter{}, 0).Encode(Frame{Type: FrameEnd, Payload: []byte("x")}); !errors.Is(err, io.ErrShortWrite) {
			t.Fatalf("got %v", err)
		}
	})
}

type shortWriter struct{}

func (shortWriter) Write(p []byte) (int, error) { return len(p) / 2, nil }

func BenchmarkDecode(b *testing.B) {
	payload := bytes.Repeat([]byte("zfs send stream "), 64<<10/16)
	wire := encodeFrames(b, 0, Frame{Type: FrameData, Stream: 3, Payload: payload})
	dec := NewDecoder(&cycleReader{b: wire}, 0)
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := dec.Next(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	payload := bytes.Repeat([]byte("zfs send stream "), 64<<10/16)
	enc := NewEncoder(io.Discard, 0)
	b.SetBytes(int64(HeaderSize + len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if err := enc.Encode(Frame{Type: FrameData, Stream: 3, Payload: payload}); err != nil {
			b.Fatal(err)
		}
	}
}
