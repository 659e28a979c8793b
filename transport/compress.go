package transport

// Per-stream compression: a replication stream travels as a sequence of
// self-describing chunks, each naming its own codec, so the sender may change
// codec mid-stream (auto mode) and the receiver needs no negotiation. The
// wire format is described in docs/transport.md, "Compression and flow
// control".

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Codec names the compression of one chunk on the wire. The values are wire
// values: append new codecs, never renumber.
type Codec uint8

const (
	CodecNone Codec = 0 // payload is the raw bytes
	CodecZstd Codec = 1 // payload is one zstd frame
	CodecLZ4  Codec = 2 // payload is one LZ4 block (no LZ4 frame header)
)

// String returns the codec's config name ("none", "zstd", "lz4").
func (c Codec) String() string {
	switch c {
	case CodecNone:
		return "none"
	case CodecZstd:
		return "zstd"
	case CodecLZ4:
		return "lz4"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

// Mode is the configured compression policy of a stream
// (transport.compression). The fixed modes have the value of their codec.
type Mode uint8

const (
	ModeNone Mode = Mode(CodecNone)
	ModeZstd Mode = Mode(CodecZstd)
	ModeLZ4  Mode = Mode(CodecLZ4)
	// ModeAuto sends zstd and gives up on it for the rest of the stream when
	// it does not pay (see NewChunkWriter). Streams that are already
	// compressed or encrypted go uncompressed (see ChooseCodec).
	ModeAuto Mode = 3
)

// String returns the mode's config name.
func (m Mode) String() string {
	if m == ModeAuto {
		return "auto"
	}
	if m <= ModeLZ4 {
		return Codec(m).String()
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// ParseCompression parses a transport.compression config value. Case and
// surrounding blanks are ignored.
func ParseCompression(s string) (Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "zstd":
		return ModeZstd, nil
	case "lz4":
		return ModeLZ4, nil
	case "none":
		return ModeNone, nil
	case "auto":
		return ModeAuto, nil
	}
	return 0, fmt.Errorf("transport: compression must be one of zstd, lz4, none, auto, got %q", s)
}

// ChooseCodec returns the codec a stream starts with. An explicit mode is
// obeyed as configured. ModeAuto picks none for streams that are already
// incompressible to us — raw sends (zfs send -w, which carries encrypted
// blocks as they are on disk) and compressed sends (zfs send -c) — and zstd
// for everything else.
func ChooseCodec(mode Mode, raw bool, compressedSend bool) Codec {
	switch mode {
	case ModeZstd:
		return CodecZstd
	case ModeLZ4:
		return CodecLZ4
	case ModeAuto:
		if raw || compressedSend {
			return CodecNone
		}
		return CodecZstd
	}
	return CodecNone
}

// ForStream returns the mode to hand NewChunkWriter for a stream: ModeNone
// where ChooseCodec picks none for an auto stream, else m unchanged.
func (m Mode) ForStream(raw bool, compressedSend bool) Mode {
	if m == ModeAuto && ChooseCodec(m, raw, compressedSend) == CodecNone {
		return ModeNone
	}
	return m
}

// StreamStats counts one stream's bytes; it is safe to read while the stream
// runs. BytesIn counts uncompressed bytes (what zfs send produced, or what
// is handed to zfs recv); BytesOut counts bytes on the wire, chunk headers
// included. A zero StreamStats is ready to use; it must not be copied.
type StreamStats struct {
	BytesIn  atomic.Int64
	BytesOut atomic.Int64
}

// Ratio returns BytesOut/BytesIn: below 1 the compression saved bandwidth.
// It is 1 before any data went through.
func (s *StreamStats) Ratio() float64 {
	in, out := s.BytesIn.Load(), s.BytesOut.Load()
	if in == 0 {
		return 1
	}
	return float64(out) / float64(in)
}

func (s *StreamStats) add(in, out int) {
	if s == nil {
		return
	}
	s.BytesIn.Add(int64(in))
	s.BytesOut.Add(int64(out))
}

// Chunk format and limits.
const (
	// MaxChunkSize bounds the uncompressed bytes of one chunk, and so also
	// its payload: a writer never sends a payload larger than its raw bytes.
	MaxChunkSize = 1 << 20

	// chunkHeaderSize: codec (1), payload length (4), raw length (4),
	// CRC-32C of the raw bytes (4); integers big-endian.
	chunkHeaderSize = 13

	// Auto mode measures zstd's ratio over the first autoProbeFirst raw
	// bytes, then over each following autoProbeEvery bytes, and sends the
	// rest of the stream uncompressed once a window's ratio exceeds
	// autoMaxRatio.
	autoProbeFirst = 8 << 20
	autoProbeEvery = 64 << 20
	autoMaxRatio   = 0.95

	// zstdDefaultLevel is used for level 0, as the zstd CLI does.
	zstdDefaultLevel = 3
	zstdMaxLevel     = 22
)

var (
	// ErrChunkTooLarge is returned by a chunk reader for a chunk header
	// that announces more than MaxChunkSize bytes.
	ErrChunkTooLarge = errors.New("transport: chunk too large")
	// ErrCorruptChunk is returned by a chunk reader for a chunk that does
	// not decode to the raw bytes its header announces: unknown codec,
	// inconsistent lengths, undecodable payload, or a CRC mismatch.
	ErrCorruptChunk = errors.New("transport: corrupt chunk")
	// errChunkWriterClosed is returned by Write after Close.
	errChunkWriterClosed = errors.New("transport: write to closed chunk writer")
	errChunkReaderClosed = errors.New("transport: read from closed chunk reader")
)

var chunkCRCTable = crc32.MakeTable(crc32.Castagnoli)

// NewChunkWriter returns a writer that cuts what is written into chunks of
// up to MaxChunkSize raw bytes and writes them, compressed according to
// mode, to w. Close sends the rest and an end-of-stream marker; it does not
// close w. Writes after an error on w return that error.
//
// level is the zstd level, 1..22 (0 = 3), mapped onto the klauspost
// encoder's fastest/default/better/best levels; lz4 always uses its fast
// level. ModeAuto starts with zstd and switches to none for the rest of the
// stream when zstd stops paying (ratio above 0.95 over the first 8 MiB or
// any later 64 MiB window). With every codec, a chunk that does not get
// smaller is sent as none, so the wire never carries more than the raw
// bytes plus 13 bytes per chunk. stats may be nil.
func NewChunkWriter(w io.Writer, mode Mode, level int, stats *StreamStats) (io.WriteCloser, error) {
	return newChunkWriter(w, mode, level, stats, autoProbeFirst, autoProbeEvery)
}

func newChunkWriter(w io.Writer, mode Mode, level int, stats *StreamStats, probeFirst, probeEvery int64) (*chunkWriter, error) {
	if level < 0 || level > zstdMaxLevel {
		return nil, fmt.Errorf("transport: zstd level must be 0..%d, got %d", zstdMaxLevel, level)
	}
	if level == 0 {
		level = zstdDefaultLevel
	}
	cw := &chunkWriter{
		w:          w,
		mode:       mode,
		stats:      stats,
		buf:        make([]byte, 0, MaxChunkSize),
		probeEvery: probeEvery,
		nextCheck:  probeFirst,
	}
	switch mode {
	case ModeNone:
		cw.codec = CodecNone
	case ModeLZ4:
		cw.codec = CodecLZ4
		cw.lz = new(lz4.Compressor)
	case ModeZstd, ModeAuto:
		cw.codec = CodecZstd
		enc, err := zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
			// One encoder state per stream: the writer calls EncodeAll
			// from a single goroutine, so more states would only hold
			// memory (the default is one per CPU, each with its own
			// tables). On our 2-core nodes the other core is busy with
			// zfs send, TLS and the socket; parallel streams use it too.
			zstd.WithEncoderConcurrency(1),
			// A chunk is one frame of at most MaxChunkSize bytes, so a
			// larger window cannot help; it also bounds the reader.
			zstd.WithWindowSize(MaxChunkSize),
			// Each chunk carries a CRC-32C of its raw bytes.
			zstd.WithEncoderCRC(false),
		)
		if err != nil {
			return nil, fmt.Errorf("transport: zstd encoder: %w", err)
		}
		cw.zenc = enc
	default:
		return nil, fmt.Errorf("transport: unknown compression mode %d", uint8(mode))
	}
	cw.out = make([]byte, chunkHeaderSize, chunkHeaderSize+MaxChunkSize)
	return cw, nil
}

type chunkWriter struct {
	w     io.Writer
	mode  Mode
	codec Codec // codec for the next chunk
	zenc  *zstd.Encoder
	lz    *lz4.Compressor
	stats *StreamStats
	buf   []byte // raw bytes of the chunk being filled
	out   []byte // header + payload of the chunk being sent
	err   error  // sticky

	// Auto mode: raw bytes written so far, the total at which the current
	// window is judged, and the window's raw and wire bytes.
	total, nextCheck, probeEvery int64
	winIn, winOut                int64
}

func (cw *chunkWriter) Write(p []byte) (int, error) {
	if cw.err != nil {
		return 0, cw.err
	}
	n := 0
	for len(p) > 0 {
		k := min(len(p), MaxChunkSize-len(cw.buf))
		cw.buf = append(cw.buf, p[:k]...)
		n += k
		p = p[k:]
		if len(cw.buf) == MaxChunkSize {
			if err := cw.flush(); err != nil {
				// The bytes of the failed chunk count as not written.
				return n - k, err
			}
		}
	}
	return n, nil
}

// flush sends buf as one chunk.
func (cw *chunkWriter) flush() error {
	raw := cw.buf
	if len(raw) == 0 {
		return nil
	}
	codec, out := cw.codec, cw.out[:chunkHeaderSize]
	switch codec {
	case CodecZstd:
		out = cw.zenc.EncodeAll(raw, out)
	case CodecLZ4:
		// A destination one byte short of the input makes the
		// compressor give up on data that would not shrink.
		dst := out[chunkHeaderSize : chunkHeaderSize+len(raw)-1]
		n, err := cw.lz.CompressBlock(raw, dst)
		if err != nil || n == 0 {
			codec = CodecNone
		} else {
			out = out[:chunkHeaderSize+n]
		}
	}
	if codec != CodecNone && len(out)-chunkHeaderSize >= len(raw) {
		codec = CodecNone
	}
	if codec == CodecNone {
		out = append(out[:chunkHeaderSize], raw...)
	}
	if cap(out) > cap(cw.out) {
		cw.out = out[:chunkHeaderSize]
	}
	putChunkHeader(out, codec, len(out)-chunkHeaderSize, len(raw), crc32.Checksum(raw, chunkCRCTable))
	if err := cw.send(out); err != nil {
		return err
	}
	cw.stats.add(len(raw), len(out))
	cw.buf = cw.buf[:0]
	if cw.mode == ModeAuto && cw.codec == CodecZstd {
		cw.judge(len(raw), len(out))
	}
	return nil
}

// judge accounts one auto-mode zstd chunk and, at the end of a window, drops
// zstd for the rest of the stream if it did not pay.
func (cw *chunkWriter) judge(in, out int) {
	cw.total += int64(in)
	cw.winIn += int64(in)
	cw.winOut += int64(out)
	if cw.total < cw.nextCheck {
		return
	}
	if float64(cw.winOut) > autoMaxRatio*float64(cw.winIn) {
		cw.codec = CodecNone
		cw.zenc.Close()
		cw.zenc = nil
		return
	}
	cw.winIn, cw.winOut = 0, 0
	cw.nextCheck = cw.total + cw.probeEvery
}

func (cw *chunkWriter) send(b []byte) error {
	n, err := cw.w.Write(b)
	if err == nil && n != len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		cw.err = err
	}
	return err
}

// Close sends the buffered bytes and the end-of-stream marker. It does not
// close the underlying writer.
func (cw *chunkWriter) Close() error {
	if cw.err == errChunkWriterClosed {
		return nil
	}
	if cw.err != nil {
		cw.release()
		return cw.err
	}
	if err := cw.flush(); err != nil {
		cw.release()
		return err
	}
	var end [chunkHeaderSize]byte
	putChunkHeader(end[:], CodecNone, 0, 0, 0)
	if err := cw.send(end[:]); err != nil {
		cw.release()
		return err
	}
	cw.stats.add(0, len(end))
	cw.release()
	cw.err = errChunkWriterClosed
	return nil
}

func (cw *chunkWriter) release() {
	if cw.zenc != nil {
		cw.zenc.Close()
		cw.zenc = nil
	}
}

func putChunkHeader(b []byte, codec Codec, payload, raw int, crc uint32) {
	b[0] = byte(codec)
	binary.BigEndian.PutUint32(b[1:5], uint32(payload))
	binary.BigEndian.PutUint32(b[5:9], uint32(raw))
	binary.BigEndian.PutUint32(b[9:13], crc)
}

// NewChunkReader returns a reader of the raw bytes of the chunk stream that
// r carries. It returns io.EOF after the end-of-stream marker, reading
// nothing past it, and io.ErrUnexpectedEOF if r ends before the marker.
// Memory is bounded whatever r sends: a chunk header announcing more than
// MaxChunkSize bytes fails with ErrChunkTooLarge, and the zstd decoder
// refuses frames or windows larger than the chunk. Any chunk that does not
// decode to exactly what its header announces (CRC included) fails with
// ErrCorruptChunk. Close releases the decoder; it does not close r. stats
// may be nil.
func NewChunkReader(r io.Reader, stats *StreamStats) io.ReadCloser {
	return &chunkReader{r: r, stats: stats}
}

type chunkReader struct {
	r       io.Reader
	stats   *StreamStats
	zdec    *zstd.Decoder
	hdr     [chunkHeaderSize]byte
	payload []byte // payload buffer, grown up to MaxChunkSize
	rawBuf  []byte // decode buffer, grown up to MaxChunkSize
	raw     []byte // the current chunk's raw bytes not yet read
	err     error  // sticky; io.EOF after the end marker
}

func (cr *chunkReader) Read(p []byte) (int, error) {
	for len(cr.raw) == 0 {
		if cr.err != nil {
			return 0, cr.err
		}
		if len(p) == 0 {
			return 0, nil
		}
		cr.err = cr.next()
	}
	n := copy(p, cr.raw)
	cr.raw = cr.raw[n:]
	return n, nil
}

// next reads and decodes one chunk into cr.raw.
func (cr *chunkReader) next() error {
	if _, err := io.ReadFull(cr.r, cr.hdr[:]); err != nil {
		if err == io.EOF {
			return fmt.Errorf("transport: chunk stream ended without its end marker: %w", io.ErrUnexpectedEOF)
		}
		return err
	}
	codec := Codec(cr.hdr[0])
	plen := binary.BigEndian.Uint32(cr.hdr[1:5])
	rlen := binary.BigEndian.Uint32(cr.hdr[5:9])
	crc := binary.BigEndian.Uint32(cr.hdr[9:13])
	if rlen == 0 {
		if codec != CodecNone || plen != 0 || crc != 0 {
			return fmt.Errorf("%w: empty %v chunk with payload %d, crc %#x", ErrCorruptChunk, codec, plen, crc)
		}
		cr.stats.add(0, chunkHeaderSize)
		cr.release()
		return io.EOF
	}
	if rlen > MaxChunkSize || plen > MaxChunkSize {
		return fmt.Errorf("%w: raw %d, payload %d bytes, at most %d", ErrChunkTooLarge, rlen, plen, MaxChunkSize)
	}
	switch codec {
	case CodecNone:
		if plen != rlen {
			return fmt.Errorf("%w: none chunk with payload %d != raw %d", ErrCorruptChunk, plen, rlen)
		}
	case CodecZstd, CodecLZ4:
		if plen == 0 || plen >= rlen {
			return fmt.Errorf("%w: %v chunk with payload %d for raw %d", ErrCorruptChunk, codec, plen, rlen)
		}
	default:
		return fmt.Errorf("%w: unknown codec %d", ErrCorruptChunk, uint8(codec))
	}
	if cap(cr.payload) < int(plen) {
		cr.payload = make([]byte, plen, max(plen, min(2*uint32(cap(cr.payload)), MaxChunkSize)))
	}
	payload := cr.payload[:plen]
	if _, err := io.ReadFull(cr.r, payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("transport: chunk payload: %w", err)
	}
	var raw []byte
	switch codec {
	case CodecNone:
		raw = payload
	case CodecZstd:
		if err := cr.initZstd(); err != nil {
			return err
		}
		// The capacity limit makes the decoder stop at rlen bytes.
		out, err := cr.zdec.DecodeAll(payload, cr.rawBuffer(rlen)[:0:rlen])
		if err != nil {
			return fmt.Errorf("%w: zstd: %v", ErrCorruptChunk, err)
		}
		raw = out
	case CodecLZ4:
		buf := cr.rawBuffer(rlen)[:rlen]
		n, err := lz4.UncompressBlock(payload, buf)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrCorruptChunk, err)
		}
		raw = buf[:n]
	}
	if len(raw) != int(rlen) {
		return fmt.Errorf("%w: %v chunk decoded to %d bytes, header says %d", ErrCorruptChunk, codec, len(raw), rlen)
	}
	if got := crc32.Checksum(raw, chunkCRCTable); got != crc {
		return fmt.Errorf("%w: %v chunk CRC %#x, header says %#x", ErrCorruptChunk, codec, got, crc)
	}
	cr.stats.add(int(rlen), chunkHeaderSize+int(plen))
	cr.raw = raw
	return nil
}

func (cr *chunkReader) rawBuffer(n uint32) []byte {
	if cap(cr.rawBuf) < int(n) {
		cr.rawBuf = make([]byte, 0, max(n, min(2*uint32(cap(cr.rawBuf)), MaxChunkSize)))
	}
	return cr.rawBuf
}

func (cr *chunkReader) initZstd() error {
	if cr.zdec != nil {
		return nil
	}
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		// A chunk never holds more than MaxChunkSize bytes, so neither
		// the decoded size nor the window may exceed it: a hostile frame
		// cannot make the decoder allocate more.
		zstd.WithDecoderMaxMemory(MaxChunkSize),
		zstd.WithDecoderMaxWindow(MaxChunkSize),
		zstd.WithDecodeAllCapLimit(true),
	)
	if err != nil {
		return fmt.Errorf("transport: zstd decoder: %w", err)
	}
	cr.zdec = dec
	return nil
}

func (cr *chunkReader) release() {
	if cr.zdec != nil {
		cr.zdec.Close()
		cr.zdec = nil
	}
}

// Close releases the decoder. It does not close the underlying reader.
func (cr *chunkReader) Close() error {
	cr.release()
	cr.raw = nil
	if cr.err == nil || cr.err == io.EOF {
		cr.err = errChunkReaderClosed
	}
	return nil
}
