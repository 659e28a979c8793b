package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
)

// Frame header layout, big-endian:
//
//	offset size field
//	0      1    type
//	1      1    flags
//	2      2    reserved, must be 0
//	4      4    stream
//	8      4    length of the payload that follows
//
// The header is frozen for every protocol version: it is what lets two
// releases read each other's Hello and Reject.
const HeaderSize = 12

// Payload limits. DefaultMaxPayload fits a 64 KiB stream chunk with room to
// spare; MaxPayloadLimit bounds what any configuration may ask for, so a
// corrupt length can never make a node allocate more than 16 MiB.
const (
	DefaultMaxPayload = 256 << 10
	MaxPayloadLimit   = 16 << 20
)

// coalesceLimit is the largest payload the Encoder copies behind its header
// into one buffer. One Write per frame means one TLS record and one syscall
// instead of two; above this the copy would cost more than the extra write.
const coalesceLimit = 64 << 10

// FrameType says what a frame's payload is.
type FrameType uint8

// Frame types. Values are only ever appended, never renumbered or reused: a
// number on the wire must mean the same thing in every release.
const (
	FrameHello        FrameType = 1  // client -> server, first frame on a connection
	FrameHelloAck     FrameType = 2  // server accepts the Hello
	FrameReject       FrameType = 3  // server refuses the Hello, with a reason
	FrameHeartbeat    FrameType = 4  // liveness and state, on the control connection
	FrameHeartbeatAck FrameType = 5  // echo of a heartbeat, for RTT
	FrameRequest      FrameType = 6  // a request on a stream
	FrameResponse     FrameType = 7  // the answer to a Request
	FrameData         FrameType = 8  // a chunk of a send stream
	FrameEnd          FrameType = 9  // end of a stream, ok or failed (End payload)
	FrameCredit       FrameType = 10 // receiver grants the sender more bytes
	FrameCancel       FrameType = 11 // either side abandons a stream
)

var frameTypeNames = [...]string{
	FrameHello:        "Hello",
	FrameHelloAck:     "HelloAck",
	FrameReject:       "Reject",
	FrameHeartbeat:    "Heartbeat",
	FrameHeartbeatAck: "HeartbeatAck",
	FrameRequest:      "Request",
	FrameResponse:     "Response",
	FrameData:         "Data",
	FrameEnd:          "End",
	FrameCredit:       "Credit",
	FrameCancel:       "Cancel",
}

// Known reports whether t is a frame type of this protocol version.
func (t FrameType) Known() bool {
	return int(t) < len(frameTypeNames) && frameTypeNames[t] != ""
}

func (t FrameType) String() string {
	if t.Known() {
		return frameTypeNames[t]
	}
	return "FrameType(" + strconv.Itoa(int(t)) + ")"
}

// Frame is one decoded or to-be-encoded frame. Stream 0 is the connection
// itself (handshake, heartbeats); other numbers name multiplexed streams.
type Frame struct {
	Type    FrameType
	Flags   uint8
	Stream  uint32
	Payload []byte
}

// Frame errors. The errors returned wrap one of these with %w and name the
// offending value.
var (
	ErrFrameTooLarge    = errors.New("transport: frame too large")
	ErrUnknownFrameType = errors.New("transport: unknown frame type")
	ErrReservedBits     = errors.New("transport: reserved header bits set")
	// ErrTruncated is EOF inside a header or payload. Errors wrapping it
	// also wrap io.ErrUnexpectedEOF.
	ErrTruncated = errors.New("transport: truncated frame")
)

// clampMax turns a configured limit into an effective one: 0 or less means
// the default, and nothing may exceed the hard cap.
func clampMax(n int) int {
	switch {
	case n <= 0:
		return DefaultMaxPayload
	case n > MaxPayloadLimit:
		return MaxPayloadLimit
	}
	return n
}

// Encoder writes frames to an io.Writer. It is not safe for concurrent use:
// a connection has one writer goroutine, or callers serialise Encode.
type Encoder struct {
	w   io.Writer
	max int
	hdr [HeaderSize]byte // a field, not a local: a local escapes via net.Buffers
	buf []byte
	err error // sticky: after a failed write the stream is mid-frame
}

// NewEncoder returns an Encoder that refuses payloads larger than
// maxPayload (0 or less: DefaultMaxPayload; capped at MaxPayloadLimit).
func NewEncoder(w io.Writer, maxPayload int) *Encoder {
	return &Encoder{w: w, max: clampMax(maxPayload)}
}

// MaxPayload is the effective payload limit.
func (e *Encoder) MaxPayload() int { return e.max }

// Encode writes f, in a single Write when the payload is at most 64 KiB.
// A frame refused for its type or size writes nothing and leaves the
// Encoder usable; after a write error every later call returns that error,
// because the peer may have seen part of a frame.
func (e *Encoder) Encode(f Frame) error {
	if e.err != nil {
		return e.err
	}
	if !f.Type.Known() {
		return fmt.Errorf("%w %d", ErrUnknownFrameType, uint8(f.Type))
	}
	if len(f.Payload) > e.max {
		return fmt.Errorf("%w: %s frame of %d bytes exceeds the %d-byte limit", ErrFrameTooLarge, f.Type, len(f.Payload), e.max)
	}
	putHeader(e.hdr[:], f.Type, f.Flags, f.Stream, uint32(len(f.Payload)))
	var err error
	if len(f.Payload) <= coalesceLimit {
		e.buf = append(append(e.buf[:0], e.hdr[:]...), f.Payload...)
		err = writeAll(e.w, e.buf)
	} else {
		// net.Buffers uses writev on a plain TCP conn: one syscall, no copy.
		bufs := net.Buffers{e.hdr[:], f.Payload}
		var n int64
		n, err = bufs.WriteTo(e.w)
		if err == nil && n != int64(HeaderSize+len(f.Payload)) {
			err = io.ErrShortWrite
		}
	}
	if err != nil {
		e.err = fmt.Errorf("transport: writing %s frame: %w", f.Type, err)
	}
	return e.err
}

func writeAll(w io.Writer, b []byte) error {
	n, err := w.Write(b)
	if err == nil && n != len(b) {
		err = io.ErrShortWrite
	}
	return err
}

func putHeader(b []byte, t FrameType, flags uint8, stream, length uint32) {
	b[0] = byte(t)
	b[1] = flags
	b[2], b[3] = 0, 0
	binary.BigEndian.PutUint32(b[4:8], stream)
	binary.BigEndian.PutUint32(b[8:12], length)
}

// Decoder reads frames from an io.Reader.
//
// Memory is bounded: the header is checked before any payload buffer is
// allocated, and the one reused buffer never exceeds MaxPayload, whatever
// the input claims.
//
// The Decoder reads exactly one frame per Next, never ahead, so the reader
// can be handed to a new Decoder (e.g. after the handshake) without losing
// bytes. It sets no deadlines: a peer that stalls mid-frame is detected by
// the deadline the caller sets on its net.Conn, and Next then returns the
// reader's timeout error. Any error is final: the stream position is lost,
// so later calls return the same error and the caller closes the connection.
//
// A Decoder is not safe for concurrent use.
type Decoder struct {
	r   io.Reader
	max int
	hdr [HeaderSize]byte
	buf []byte
	err error
}

// NewDecoder returns a Decoder refusing payloads larger than maxPayload
// (0 or less: DefaultMaxPayload; capped at MaxPayloadLimit).
func NewDecoder(r io.Reader, maxPayload int) *Decoder {
	return &Decoder{r: r, max: clampMax(maxPayload)}
}

// MaxPayload is the effective payload limit.
func (d *Decoder) MaxPayload() int { return d.max }

// Next reads the next frame. The returned Payload aliases the Decoder's
// buffer and is valid only until the next call to Next: copy it (for
// example with bytes.Clone) to keep it.
//
// Errors: io.EOF, unwrapped, when the input ends cleanly between frames;
// otherwise an error wrapping ErrTruncated (and io.ErrUnexpectedEOF),
// ErrUnknownFrameType, ErrReservedBits, ErrFrameTooLarge or the reader's
// own error.
func (d *Decoder) Next() (Frame, error) {
	if d.err != nil {
		return Frame{}, d.err
	}
	f, err := d.next()
	if err != nil {
		d.err = err
	}
	return f, err
}

func (d *Decoder) next() (Frame, error) {
	if n, err := io.ReadFull(d.r, d.hdr[:]); err != nil {
		switch {
		case err == io.EOF: // nothing read: a clean end between frames
			return Frame{}, io.EOF
		case err == io.ErrUnexpectedEOF:
			return Frame{}, fmt.Errorf("%w: input ended after %d of %d header bytes: %w", ErrTruncated, n, HeaderSize, io.ErrUnexpectedEOF)
		default:
			return Frame{}, fmt.Errorf("transport: reading frame header (%d of %d bytes read): %w", n, HeaderSize, err)
		}
	}
	t := FrameType(d.hdr[0])
	if !t.Known() {
		return Frame{}, fmt.Errorf("%w %d", ErrUnknownFrameType, uint8(t))
	}
	if r := binary.BigEndian.Uint16(d.hdr[2:4]); r != 0 {
		return Frame{}, fmt.Errorf("%w: %s frame has reserved field 0x%04x, want 0", ErrReservedBits, t, r)
	}
	length := binary.BigEndian.Uint32(d.hdr[8:12])
	// Compare as uint64: on 32-bit platforms a 4 GiB claim must not wrap.
	if uint64(length) > uint64(d.max) {
		return Frame{}, fmt.Errorf("%w: %s frame of %d bytes exceeds the %d-byte limit", ErrFrameTooLarge, t, length, d.max)
	}
	f := Frame{Type: t, Flags: d.hdr[1], Stream: binary.BigEndian.Uint32(d.hdr[4:8])}
	n := int(length)
	if cap(d.buf) < n {
		// Double to avoid reallocating for every slightly larger frame, but
		// never past the limit: at most one buffer of at most max bytes.
		c := max(n, min(2*cap(d.buf), d.max))
		d.buf = make([]byte, c)
	}
	f.Payload = d.buf[:n]
	if got, err := io.ReadFull(d.r, f.Payload); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return Frame{}, fmt.Errorf("%w: %s frame ended after %d of %d payload bytes: %w", ErrTruncated, t, got, n, io.ErrUnexpectedEOF)
		}
		return Frame{}, fmt.Errorf("transport: reading %s frame payload (%d of %d bytes read): %w", t, got, n, err)
	}
	return f, nil
}
