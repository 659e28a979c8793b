package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// --- test data ---

func streamRandom(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

var streamTextWords = strings.Fields(`the a zfs send receive snapshot dataset pool
	bookmark replication stream resume token guid txg block record object
	property mountpoint compression checksum error warning info debug node
	active passive heartbeat epoch fence failover link latency bytes seconds
	tank data home var log backup incremental full written used available
	referenced quota reservation recordsize volblocksize encryption key`)

var (
	streamTextOnce   sync.Once
	streamTextCorpus []byte
)

// streamText returns n bytes of log-like text: compressible, but not
// trivially. It cycles through a 4 MiB corpus made once, starting at a
// place chosen by seed.
func streamText(n int, seed uint64) []byte {
	streamTextOnce.Do(func() { streamTextCorpus = makeStreamText(4<<20, 0) })
	b := make([]byte, 0, n)
	off := int(seed*7919*64) % len(streamTextCorpus)
	for len(b) < n {
		b = append(b, streamTextCorpus[off:min(len(streamTextCorpus), off+n-len(b))]...)
		off = 0
	}
	return b
}

func makeStreamText(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, 0, n+256)
	for len(b) < n {
		b = fmt.Appendf(b, "2025-%02d-%02dT%02d:%02d:%02dZ node%d ", 1+r.IntN(12), 1+r.IntN(28), r.IntN(24), r.IntN(60), r.IntN(60), r.IntN(2))
		for w := 3 + r.IntN(10); w > 0; w-- {
			b = append(b, streamTextWords[r.IntN(len(streamTextWords))]...)
			if r.IntN(5) == 0 {
				b = append(b, '=')
				b = strconv.AppendInt(b, int64(r.IntN(100000)), 10)
			}
			b = append(b, ' ')
		}
		b = append(b, '\n')
	}
	return b[:n]
}

// streamMixed is half random, half text, alternating in 128 KiB blocks.
func streamMixed(n int, seed uint64) []byte {
	const block = 128 << 10
	rnd, txt := streamRandom(n, seed), streamText(n, seed)
	b := make([]byte, n)
	for off := 0; off < n; off += block {
		end := min(n, off+block)
		if (off/block)%2 == 0 {
			copy(b[off:end], rnd[off:end])
		} else {
			copy(b[off:end], txt[off:end])
		}
	}
	return b
}

type chunkInfo struct {
	codec        Codec
	payload, raw int
}

// parseChunks walks the headers of a well-formed chunk stream, end marker
// included.
func parseChunks(t testing.TB, wire []byte) []chunkInfo {
	t.Helper()
	var cs []chunkInfo
	for len(wire) > 0 {
		if len(wire) < chunkHeaderSize {
			t.Fatalf("trailing %d bytes", len(wire))
		}
		c := chunkInfo{Codec(wire[0]), int(binary.BigEndian.Uint32(wire[1:5])), int(binary.BigEndian.Uint32(wire[5:9]))}
		cs = append(cs, c)
		wire = wire[chunkHeaderSize+c.payload:]
	}
	if len(cs) == 0 || cs[len(cs)-1] != (chunkInfo{}) {
		t.Fatalf("stream does not end with the end marker: %v", cs)
	}
	return cs
}

func chunkCodecs(cs []chunkInfo) []Codec {
	out := make([]Codec, len(cs))
	for i, c := range cs {
		out[i] = c.codec
	}
	return out
}

// encodeChunks writes data in irregular pieces and returns the wire bytes.
func encodeChunks(t testing.TB, mode Mode, level int, data []byte, stats *StreamStats) []byte {
	t.Helper()
	var wire bytes.Buffer
	w, err := NewChunkWriter(&wire, mode, level, stats)
	if err != nil {
		t.Fatal(err)
	}
	writeIrregular(t, w, data, uint64(len(data)))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return wire.Bytes()
}

func writeIrregular(t testing.TB, w io.Writer, data []byte, seed uint64) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 3))
	for len(data) > 0 {
		n := min(len(data), 1+r.IntN(300<<10))
		if k, err := w.Write(data[:n]); err != nil || k != n {
			t.Fatalf("Write(%d) = %d, %v", n, k, err)
		}
		data = data[n:]
	}
}

func decodeChunks(wire []byte, stats *StreamStats) ([]byte, error) {
	r := NewChunkReader(bytes.NewReader(wire), stats)
	defer r.Close()
	return io.ReadAll(r)
}

// --- names and policy ---

func TestCodecAndModeString(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{CodecNone.String(), "none"}, {CodecZstd.String(), "zstd"}, {CodecLZ4.String(), "lz4"}, {Codec(9).String(), "codec(9)"},
		{ModeNone.String(), "none"}, {ModeZstd.String(), "zstd"}, {ModeLZ4.String(), "lz4"}, {ModeAuto.String(), "auto"}, {Mode(7).String(), "mode(7)"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	// Wire values are frozen.
	if CodecNone != 0 || CodecZstd != 1 || CodecLZ4 != 2 {
		t.Fatal("codec wire values changed")
	}
}

func TestParseCompression(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Mode
	}{
		{"zstd", ModeZstd}, {"lz4", ModeLZ4}, {"none", ModeNone}, {"auto", ModeAuto}, {" ZSTD ", ModeZstd}, {"Auto", ModeAuto},
	} {
		got, err := ParseCompression(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseCompression(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if back, err := ParseCompression(got.String()); err != nil || back != got {
			t.Errorf("String round trip of %v: %v, %v", got, back, err)
		}
	}
	for _, in := range []string{"", "gzip", "zstd-3", "lz4hc"} {
		_, err := ParseCompression(in)
		if err == nil {
			t.Errorf("ParseCompression(%q): no error", in)
			continue
		}
		if want := `must be one of zstd, lz4, none, auto, got "` + in + `"`; !strings.Contains(err.Error(), want) {
			t.Errorf("ParseCompression(%q) error %q, want it to contain %q", in, err, want)
		}
	}
}

func TestChooseCodec(t *testing.T) {
	for _, tc := range []struct {
		mode            Mode
		raw, compressed bool
		want            Codec
	}{
		{ModeAuto, false, false, CodecZstd},
		{ModeAuto, true, false, CodecNone},
		{ModeAuto, false, true, CodecNone},
		{ModeAuto, true, true, CodecNone},
		// Explicit modes are obeyed, whatever the stream.
		{ModeZstd, true, true, CodecZstd},
		{ModeLZ4, true, false, CodecLZ4},
		{ModeLZ4, false, false, CodecLZ4},
		{ModeNone, false, false, CodecNone},
		{Mode(42), false, false, CodecNone},
	} {
		if got := ChooseCodec(tc.mode, tc.raw, tc.compressed); got != tc.want {
			t.Errorf("ChooseCodec(%v, raw=%v, compressed=%v) = %v, want %v", tc.mode, tc.raw, tc.compressed, got, tc.want)
		}
		want := tc.mode
		if tc.mode == ModeAuto && tc.want == CodecNone {
			want = ModeNone
		}
		if got := tc.mode.ForStream(tc.raw, tc.compressed); got != want {
			t.Errorf("%v.ForStream(%v, %v) = %v, want %v", tc.mode, tc.raw, tc.compressed, got, want)
		}
	}
}

func TestStreamStatsRatio(t *testing.T) {
	var s StreamStats
	if r := s.Ratio(); r != 1 {
		t.Fatalf("empty ratio %v, want 1", r)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				s.add(4, 1)
				_ = s.Ratio()
			}
		})
	}
	wg.Wait()
	if s.BytesIn.Load() != 16000 || s.BytesOut.Load() != 4000 || s.Ratio() != 0.25 {
		t.Fatalf("in %d out %d ratio %v", s.BytesIn.Load(), s.BytesOut.Load(), s.Ratio())
	}
	var nilStats *StreamStats
	nilStats.add(1, 1) // no-op, no panic
}

// --- round trips ---

func TestChunkRoundTrip(t *testing.T) {
	sizes := []int{0, 1, 13, 1000, MaxChunkSize - 1, MaxChunkSize, MaxChunkSize + 1, 2*MaxChunkSize + 12345}
	for _, mode := range []Mode{ModeNone, ModeZstd, ModeLZ4, ModeAuto} {
		for _, n := range sizes {
			t.Run(fmt.Sprintf("%v/%d", mode, n), func(t *testing.T) {
				data := streamMixed(n, uint64(n))
				var ws, rs StreamStats
				wire := encodeChunks(t, mode, 0, data, &ws)

				cs := parseChunks(t, wire)
				if want := (n+MaxChunkSize-1)/MaxChunkSize + 1; len(cs) != want {
					t.Fatalf("%d chunks, want %d", len(cs), want)
				}
				for _, c := range cs[:len(cs)-1] {
					if c.raw == 0 || c.raw > MaxChunkSize || c.payload > c.raw {
						t.Fatalf("bad chunk %+v", c)
					}
					if mode == ModeNone && c.codec != CodecNone {
						t.Fatalf("mode none sent %v", c.codec)
					}
				}

				got, err := decodeChunks(wire, &rs)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("round trip mismatch: %d bytes back, want %d", len(got), len(data))
				}
				// Small and odd reads give the same bytes.
				var cr io.Reader = NewChunkReader(iotest.HalfReader(bytes.NewReader(wire)), nil)
				if n <= MaxChunkSize+1 {
					cr = iotest.OneByteReader(cr)
				}
				got2, err := io.ReadAll(cr)
				if err != nil || !bytes.Equal(got2, data) {
					t.Fatalf("odd reads: %v, equal=%v", err, bytes.Equal(got2, data))
				}

				if ws.BytesIn.Load() != int64(n) || ws.BytesOut.Load() != int64(len(wire)) {
					t.Fatalf("writer stats in %d out %d; want %d, %d", ws.BytesIn.Load(), ws.BytesOut.Load(), n, len(wire))
				}
				if rs.BytesIn.Load() != ws.BytesIn.Load() || rs.BytesOut.Load() != ws.BytesOut.Load() {
					t.Fatalf("reader stats in %d out %d, writer %d %d", rs.BytesIn.Load(), rs.BytesOut.Load(), ws.BytesIn.Load(), ws.BytesOut.Load())
				}
				// Never more than the raw bytes plus one header per chunk.
				if limit := n + chunkHeaderSize*len(cs); len(wire) > limit {
					t.Fatalf("%d wire bytes for %d raw, limit %d", len(wire), n, limit)
				}
			})
		}
	}
}

func TestChunkWriterLevels(t *testing.T) {
	data := streamMixed(MaxChunkSize+100, 5)
	for _, level := range []int{0, 1, 3, 6, 10, 22} {
		var s StreamStats
		wire := encodeChunks(t, ModeZstd, level, data, &s)
		got, err := decodeChunks(wire, nil)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("level %d: %v", level, err)
		}
		if r := s.Ratio(); r > 0.8 {
			t.Errorf("level %d: ratio %.3f on mixed data", level, r)
		}
	}
	for _, level := range []int{-1, 23} {
		if _, err := NewChunkWriter(io.Discard, ModeZstd, level, nil); err == nil {
			t.Errorf("level %d accepted", level)
		}
	}
	if _, err := NewChunkWriter(io.Discard, Mode(9), 0, nil); err == nil {
		t.Error("unknown mode accepted")
	}
}

func TestChunkCodecsCompressText(t *testing.T) {
	data := streamText(3*MaxChunkSize, 7)
	for _, tc := range []struct {
		mode  Mode
		codec Codec
	}{{ModeZstd, CodecZstd}, {ModeLZ4, CodecLZ4}, {ModeAuto, CodecZstd}} {
		var s StreamStats
		cs := parseChunks(t, encodeChunks(t, tc.mode, 0, data, &s))
		for _, c := range cs[:len(cs)-1] {
			if c.codec != tc.codec {
				t.Fatalf("%v: chunk codecs %v", tc.mode, chunkCodecs(cs))
			}
		}
		if r := s.Ratio(); r > 0.6 {
			t.Errorf("%v: ratio %.3f on text", tc.mode, r)
		}
		t.Logf("%v: text ratio %.3f", tc.mode, s.Ratio())
	}
}

// A chunk that does not shrink goes as none, whatever the codec.
func TestChunkIncompressibleGoesAsNone(t *testing.T) {
	data := streamRandom(2*MaxChunkSize+5, 9)
	for _, mode := range []Mode{ModeZstd, ModeLZ4} {
		var s StreamStats
		wire := encodeChunks(t, mode, 0, data, &s)
		cs := parseChunks(t, wire)
		for _, c := range cs {
			if c.codec != CodecNone {
				t.Fatalf("%v: codecs %v on random data", mode, chunkCodecs(cs))
			}
		}
		if want := len(data) + chunkHeaderSize*len(cs); len(wire) != want {
			t.Fatalf("%v: %d wire bytes, want %d", mode, len(wire), want)
		}
	}
}

// --- auto mode ---

func TestAutoStaysZstdOnText(t *testing.T) {
	// Past the first judgement, with the fastest level (the decision does
	// not depend on it) to keep the race-enabled run short.
	data := streamText(autoProbeFirst+2*MaxChunkSize, 11)
	var s StreamStats
	cs := parseChunks(t, encodeChunks(t, ModeAuto, 1, data, &s))
	for i, c := range cs[:len(cs)-1] {
		if c.codec != CodecZstd {
			t.Fatalf("chunk %d is %v: %v", i, c.codec, chunkCodecs(cs))
		}
	}
	t.Logf("auto on text: ratio %.3f", s.Ratio())
}

func TestAutoSwitchesToNoneOnRandom(t *testing.T) {
	// Random for the probe window, then text: once auto gave up on zstd, the
	// text goes uncompressed too. With fixed zstd the text is compressed.
	data := append(streamRandom(autoProbeFirst, 12), streamText(4*MaxChunkSize, 12)...)
	for _, tc := range []struct {
		mode      Mode
		textCodec Codec
	}{{ModeAuto, CodecNone}, {ModeZstd, CodecZstd}} {
		wire := encodeChunks(t, tc.mode, 1, data, nil)
		cs := parseChunks(t, wire)
		first := autoProbeFirst / MaxChunkSize
		for i, c := range cs[:len(cs)-1] {
			want := CodecNone
			if i >= first {
				want = tc.textCodec
			}
			if c.codec != want {
				t.Fatalf("%v: chunk %d is %v, want %v: %v", tc.mode, i, c.codec, want, chunkCodecs(cs))
			}
		}
		got, err := decodeChunks(wire, nil)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%v: round trip: %v", tc.mode, err)
		}
	}
}

func TestAutoRecheckWindows(t *testing.T) {
	// Small windows: first judged at 2 MiB, then every 4 MiB. Text (0-4 MiB),
	// random (4-12), text (12-16). Windows: 0-2 text (keep), 2-6 half text
	// (keep), 6-10 random (give up). From chunk 10 on everything is none.
	const M = MaxChunkSize
	data := append(append(streamText(4*M, 13), streamRandom(8*M, 13)...), streamText(4*M, 14)...)
	var wire bytes.Buffer
	cw, err := newChunkWriter(&wire, ModeAuto, 1, nil, 2*M, 4*M)
	if err != nil {
		t.Fatal(err)
	}
	writeIrregular(t, cw, data, 1)
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	cs := parseChunks(t, wire.Bytes())
	if len(cs) != 17 {
		t.Fatalf("%d chunks", len(cs))
	}
	for i, c := range cs[:16] {
		want := CodecNone
		if i < 4 {
			want = CodecZstd
		}
		if c.codec != want {
			t.Fatalf("chunk %d is %v, want %v: %v", i, c.codec, want, chunkCodecs(cs))
		}
	}
	if cw.codec != CodecNone || cw.zenc != nil {
		t.Fatalf("writer still on %v", cw.codec)
	}
	got, err := decodeChunks(wire.Bytes(), nil)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("round trip: %v", err)
	}
}

func TestAutoForRawStreamsSendsNone(t *testing.T) {
	mode := ModeAuto.ForStream(true, false)
	cs := parseChunks(t, encodeChunks(t, mode, 0, streamText(2*MaxChunkSize, 15), nil))
	for _, c := range cs {
		if c.codec != CodecNone {
			t.Fatalf("raw stream in auto mode: %v", chunkCodecs(cs))
		}
	}
}

// --- writer behaviour ---

type closeTrackingBuffer struct {
	bytes.Buffer
	closed bool
}

func (c *closeTrackingBuffer) Close() error { c.closed = true; return nil }

func TestChunkWriterCloseKeepsUnderlyingOpen(t *testing.T) {
	var ct closeTrackingBuffer
	w, err := NewChunkWriter(&ct, ModeZstd, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if ct.Len() != 0 {
		t.Fatal("wrote before a chunk was full or Close")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if ct.closed {
		t.Fatal("Close closed the underlying writer")
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Fatal("Write after Close succeeded")
	}
}

type failingWriter struct {
	after int // bytes accepted before failing
	short bool
}

var errChunkWire = errors.New("wire broke")

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) <= f.after {
		f.after -= len(p)
		return len(p), nil
	}
	n := f.after
	f.after = 0
	if f.short {
		return n, nil
	}
	return n, errChunkWire
}

func TestChunkWriterUnderlyingErrors(t *testing.T) {
	data := streamText(2*MaxChunkSize, 16)
	for _, tc := range []struct {
		fw   *failingWriter
		want error
	}{
		{&failingWriter{after: 100}, errChunkWire},
		{&failingWriter{after: 100, short: true}, io.ErrShortWrite},
	} {
		w, err := NewChunkWriter(tc.fw, ModeLZ4, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		n, err := w.Write(data)
		if !errors.Is(err, tc.want) || n >= len(data) {
			t.Fatalf("Write = %d, %v; want < %d, %v", n, err, len(data), tc.want)
		}
		if _, err := w.Write([]byte("x")); !errors.Is(err, tc.want) {
			t.Fatalf("later Write: %v", err)
		}
		if err := w.Close(); !errors.Is(err, tc.want) {
			t.Fatalf("Close: %v", err)
		}
	}
	// A failure in Close's own write is reported by Close.
	w, _ := NewChunkWriter(&failingWriter{after: 10}, ModeZstd, 0, nil)
	w.Write([]byte("short"))
	if err := w.Close(); !errors.Is(err, errChunkWire) {
		t.Fatalf("Close: %v", err)
	}
}

// --- reader: corrupt, truncated and hostile input ---

func TestChunkReaderStopsAtEndMarker(t *testing.T) {
	data := streamText(MaxChunkSize+10, 17)
	wire := encodeChunks(t, ModeZstd, 0, data, nil)
	src := bytes.NewReader(append(append([]byte{}, wire...), "TRAILER"...))
	r := NewChunkReader(src, nil)
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("%v", err)
	}
	if n, err := r.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("Read after end = %d, %v; want 0, EOF", n, err)
	}
	rest, _ := io.ReadAll(src)
	if string(rest) != "TRAILER" {
		t.Fatalf("reader consumed past the end marker: %q left", rest)
	}
	r.Close()
	if _, err := r.Read(make([]byte, 1)); err == nil || err == io.EOF {
		t.Fatalf("Read after Close: %v", err)
	}
}

func TestChunkReaderTruncated(t *testing.T) {
	for _, mode := range []Mode{ModeNone, ModeZstd, ModeLZ4} {
		data := streamMixed(2*MaxChunkSize+777, 18)
		wire := encodeChunks(t, mode, 0, data, nil)
		cuts := []int{0, 1, len(wire) - 1, len(wire) - chunkHeaderSize, len(wire) - chunkHeaderSize - 1}
		for i := range 2 * chunkHeaderSize {
			cuts = append(cuts, i)
		}
		r := rand.New(rand.NewPCG(18, 0))
		for range 30 {
			cuts = append(cuts, r.IntN(len(wire)))
		}
		for _, cut := range cuts {
			got, err := decodeChunks(wire[:cut], nil)
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("%v: cut at %d of %d: err %v, want unexpected EOF", mode, cut, len(wire), err)
			}
			if !bytes.HasPrefix(data, got) {
				t.Fatalf("%v: cut at %d: returned bytes are not a prefix of the data", mode, cut)
			}
		}
	}
}

func TestChunkReaderCorrupt(t *testing.T) {
	text := streamText(100<<10, 19)
	streams := map[Mode][]byte{}
	for _, mode := range []Mode{ModeNone, ModeZstd, ModeLZ4} {
		streams[mode] = encodeChunks(t, mode, 0, text, nil)
	}
	header := func(codec Codec, plen, rlen, crc uint32) []byte {
		b := make([]byte, chunkHeaderSize)
		putChunkHeader(b, codec, int(plen), int(rlen), crc)
		return b
	}
	mutate := func(mode Mode, f func(b []byte)) []byte {
		b := append([]byte{}, streams[mode]...)
		f(b)
		return b
	}
	tests := []struct {
		name string
		wire []byte
		want error
	}{
		{"unknown codec", mutate(ModeZstd, func(b []byte) { b[0] = 7 }), ErrCorruptChunk},
		{"raw length too large", header(CodecNone, 10, MaxChunkSize+1, 0), ErrChunkTooLarge},
		{"payload length too large", header(CodecZstd, MaxChunkSize+1, 100, 0), ErrChunkTooLarge},
		{"huge lengths", header(CodecLZ4, 0xffffffff, 0xffffffff, 0), ErrChunkTooLarge},
		{"none with payload != raw", header(CodecNone, 10, 11, 0), ErrCorruptChunk},
		{"zstd payload not smaller", header(CodecZstd, 100, 100, 0), ErrCorruptChunk},
		{"lz4 empty payload", header(CodecLZ4, 0, 100, 0), ErrCorruptChunk},
		{"end marker with crc", header(CodecNone, 0, 0, 1), ErrCorruptChunk},
		{"end marker with codec", header(CodecZstd, 0, 0, 0), ErrCorruptChunk},
		{"end marker with payload", header(CodecNone, 5, 0, 0), ErrCorruptChunk},
	}
	for _, mode := range []Mode{ModeNone, ModeZstd, ModeLZ4} {
		tests = append(tests,
			struct {
				name string
				wire []byte
				want error
			}{mode.String() + " crc flipped", mutate(mode, func(b []byte) { b[9] ^= 1 }), ErrCorruptChunk},
			struct {
				name string
				wire []byte
				want error
			}{mode.String() + " payload flipped", mutate(mode, func(b []byte) { b[chunkHeaderSize+len(b)/3] ^= 0x40 }), ErrCorruptChunk},
			struct {
				name string
				wire []byte
				want error
			}{mode.String() + " raw length off by one", mutate(mode, func(b []byte) {
				binary.BigEndian.PutUint32(b[5:9], binary.BigEndian.Uint32(b[5:9])-1)
			}), ErrCorruptChunk},
		)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeChunks(tc.wire, nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			// Errors are sticky.
			r := NewChunkReader(bytes.NewReader(tc.wire), nil)
			io.Copy(io.Discard, r)
			if _, err := r.Read(make([]byte, 1)); !errors.Is(err, tc.want) {
				t.Fatalf("second read: %v", err)
			}
		})
	}
}

// rawChunk frames a payload as the writer would, with the CRC of raw.
func rawChunk(codec Codec, payload []byte, rawLen int, raw []byte) []byte {
	b := make([]byte, chunkHeaderSize, chunkHeaderSize+len(payload))
	putChunkHeader(b, codec, len(payload), rawLen, crc32.Checksum(raw, chunkCRCTable))
	return append(b, payload...)
}

func endMarker() []byte { return make([]byte, chunkHeaderSize) }

// Payloads that decompress to far more than their header announces are cut
// off without allocating their full size.
func TestChunkReaderBombs(t *testing.T) {
	zeros := make([]byte, 16<<20)
	// A zstd stream frame without content size, and one with a window far
	// beyond the chunk size.
	var zbuf bytes.Buffer
	zw, _ := zstd.NewWriter(&zbuf, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(8<<20))
	zw.Write(zeros)
	zw.Close()
	var zbuf1 bytes.Buffer
	zw1, _ := zstd.NewWriter(&zbuf1, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(MaxChunkSize))
	zw1.Write(zeros)
	zw1.Close()
	zAll, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	zframe := zAll.EncodeAll(zeros[:4<<20], nil) // content size 4 MiB
	zAll.Close()
	lzbuf := make([]byte, lz4.CompressBlockBound(4<<20))
	var lc lz4.Compressor
	n, err := lc.CompressBlock(zeros[:4<<20], lzbuf)
	if err != nil || n == 0 {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		wire []byte
	}{
		{"zstd stream 16 MiB", rawChunk(CodecZstd, zbuf.Bytes(), MaxChunkSize, zeros[:MaxChunkSize])},
		{"zstd stream 16 MiB small window", rawChunk(CodecZstd, zbuf1.Bytes(), MaxChunkSize, zeros[:MaxChunkSize])},
		{"zstd frame 4 MiB", rawChunk(CodecZstd, zframe, 1000, zeros[:1000])},
		{"lz4 block 4 MiB", rawChunk(CodecLZ4, lzbuf[:n], MaxChunkSize, zeros[:MaxChunkSize])},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.wire)-chunkHeaderSize > MaxChunkSize {
				t.Fatalf("bomb payload too large: %d", len(tc.wire))
			}
			wire := append(tc.wire, endMarker()...)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := decodeChunks(wire, nil)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrCorruptChunk) {
				t.Fatalf("err %v, want corrupt chunk", err)
			}
			t.Log(err)
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
				t.Fatalf("decoding allocated %d MiB", alloc>>20)
			}
		})
	}
}

// A hand-built stream of all three codecs decodes: the reader needs no
// agreement with the writer beyond the chunk format.
func TestChunkReaderMixedCodecs(t *testing.T) {
	a, b, c := streamText(5000, 20), streamText(7000, 21), []byte("plain")
	zenc, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	za := zenc.EncodeAll(a, nil)
	zenc.Close()
	lzb := make([]byte, lz4.CompressBlockBound(len(b)))
	var lc lz4.Compressor
	n, _ := lc.CompressBlock(b, lzb)
	var wire []byte
	wire = append(wire, rawChunk(CodecZstd, za, len(a), a)...)
	wire = append(wire, rawChunk(CodecNone, c, len(c), c)...)
	wire = append(wire, rawChunk(CodecLZ4, lzb[:n], len(b), b)...)
	wire = append(wire, endMarker()...)
	got, err := decodeChunks(wire, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := string(a) + string(c) + string(b); string(got) != want {
		t.Fatal("mixed-codec stream decoded wrong")
	}
}

// --- fuzzing ---

const fuzzSeedDir = "testdata/fuzz/FuzzChunkReader"

func FuzzChunkReader(f *testing.F) {
	f.Add([]byte{})
	f.Add(endMarker())
	f.Add(encodeChunks(f, ModeZstd, 0, streamText(3000, 1), nil))
	f.Add(encodeChunks(f, ModeLZ4, 0, streamText(3000, 2), nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s StreamStats
		src := bytes.NewReader(data)
		r := NewChunkReader(src, &s)
		defer r.Close()
		buf := make([]byte, 64<<10)
		var total int64
		var err error
		for err == nil {
			var n int
			n, err = r.Read(buf)
			total += int64(n)
		}
		// Every chunk has a header, and no chunk holds more than
		// MaxChunkSize bytes.
		if limit := int64(len(data)/chunkHeaderSize) * MaxChunkSize; total > limit {
			t.Fatalf("%d bytes out of %d in", total, len(data))
		}
		if s.BytesIn.Load() != total {
			t.Fatalf("stats in %d, read %d", s.BytesIn.Load(), total)
		}
		if err == io.EOF {
			if consumed := int64(len(data) - src.Len()); s.BytesOut.Load() != consumed {
				t.Fatalf("stats out %d, consumed %d", s.BytesOut.Load(), consumed)
			}
		} else if !errors.Is(err, ErrCorruptChunk) && !errors.Is(err, ErrChunkTooLarge) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("unexpected error kind: %v", err)
		}
	})
}

// The checked-in seeds are in the go corpus format and at least one of them
// is a valid stream of each codec.
func TestFuzzChunkReaderSeeds(t *testing.T) {
	entries, err := os.ReadDir(fuzzSeedDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) < 4 {
		t.Fatalf("%d seed files, want at least 4", len(entries))
	}
	valid := map[Codec]bool{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(fuzzSeedDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitN(strings.TrimRight(string(b), "\n"), "\n", 2)
		if len(lines) != 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "[]byte(") || !strings.HasSuffix(lines[1], ")") {
			t.Fatalf("%s: not a go fuzz corpus file", e.Name())
		}
		data, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		if _, err := decodeChunks([]byte(data), nil); err == nil {
			for _, c := range parseChunks(t, []byte(data)) {
				valid[c.codec] = true
			}
		}
	}
	for _, c := range []Codec{CodecNone, CodecZstd, CodecLZ4} {
		if !valid[c] {
			t.Errorf("no valid seed with a %v chunk", c)
		}
	}
}

func FuzzChunkRoundTrip(f *testing.F) {
	f.Add([]byte("hello hello hello hello"), uint8(ModeZstd), uint16(3))
	f.Add([]byte{}, uint8(ModeAuto), uint16(1))
	f.Add(bytes.Repeat([]byte("ab"), 5000), uint8(ModeLZ4), uint16(777))
	f.Fuzz(func(t *testing.T, data []byte, mode uint8, piece uint16) {
		m := Mode(mode % 4)
		var wire bytes.Buffer
		w, err := NewChunkWriter(&wire, m, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		step := int(piece) + 1
		for rest := data; len(rest) > 0; {
			n := min(step, len(rest))
			if _, err := w.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		got, err := decodeChunks(wire.Bytes(), nil)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%v: round trip: %v", m, err)
		}
	})
}

// --- benchmarks ---

const benchChunkSize = 16 << 20

var (
	benchChunkOnce sync.Once
	benchChunkData []byte
)

func benchChunkInput() []byte {
	benchChunkOnce.Do(func() { benchChunkData = streamMixed(benchChunkSize, 42) })
	return benchChunkData
}

type benchCountWriter struct{ n int64 }

func (c *benchCountWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

func benchChunkWriter(b *testing.B, mode Mode) {
	data := benchChunkInput()
	b.SetBytes(int64(len(data)))
	var cw benchCountWriter
	for b.Loop() {
		cw.n = 0
		w, err := NewChunkWriter(&cw, mode, 0, nil)
		if err != nil {
			b.Fatal(err)
		}
		// zfs send output arrives in pipe-sized pieces.
		for off := 0; off < len(data); off += 128 << 10 {
			w.Write(data[off:min(len(data), off+128<<10)])
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cw.n)/float64(len(data)), "ratio")
}

func BenchmarkChunkWriterZstd(b *testing.B) { benchChunkWriter(b, ModeZstd) }
func BenchmarkChunkWriterLZ4(b *testing.B)  { benchChunkWriter(b, ModeLZ4) }
func BenchmarkChunkWriterNone(b *testing.B) { benchChunkWriter(b, ModeNone) }
func BenchmarkChunkWriterAuto(b *testing.B) { benchChunkWriter(b, ModeAuto) }

func BenchmarkChunkReaderZstd(b *testing.B) {
	data := benchChunkInput()
	wire := encodeChunks(b, ModeZstd, 0, data, nil)
	b.SetBytes(int64(len(data)))
	buf := make([]byte, 128<<10)
	for b.Loop() {
		r := NewChunkReader(bytes.NewReader(wire), nil)
		if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, buf); err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
	b.ReportMetric(float64(len(wire))/float64(len(data)), "ratio")
}
