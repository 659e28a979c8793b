package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"
)

// ProtocolMagic opens every Hello, so a stray client (or a port scan that got
// through TLS) is told apart from an old zrepl-ha release.
const ProtocolMagic = "ZRHA"

// ProtocolVersion is the frame protocol this release speaks. Both nodes must
// speak the same version; there is no negotiation.
const ProtocolVersion uint16 = 2 // 2: heartbeat flags WantRoute and Routing

// Limits of the handshake messages.
const (
	MaxNodeNameLen = 63   // as node.name in the config
	MaxReasonLen   = 1024 // Reject.Reason, in bytes
)

// handshakeMaxPayload bounds what either side reads during the handshake; a
// Reject is at most 2+MaxReasonLen bytes.
const handshakeMaxPayload = 4096

// Purpose says what a connection carries. Heartbeats travel on their own
// control connection so that they never queue behind stream data.
type Purpose string

const (
	PurposeControl Purpose = "control" // heartbeats and small requests
	PurposeData    Purpose = "data"    // send streams: Data, End, Credit, Cancel
)

// Wire codes of the purposes; like frame types, only ever appended.
const (
	purposeControlCode = 1
	purposeDataCode    = 2
)

func (p Purpose) code() (byte, bool) {
	switch p {
	case PurposeControl:
		return purposeControlCode, true
	case PurposeData:
		return purposeDataCode, true
	}
	return 0, false
}

// Handshake and message errors; returned errors wrap them with %w.
var (
	ErrBadMagic        = errors.New("transport: not a zrepl-ha hello (bad magic)")
	ErrVersionMismatch = errors.New("transport: protocol version mismatch")
	ErrBadName         = errors.New("transport: invalid node name")
	// ErrUnexpectedFrame is a valid frame of the wrong type, stream or
	// flags for the protocol's state (e.g. Data before the handshake).
	ErrUnexpectedFrame = errors.New("transport: unexpected frame")
	// ErrMalformed is a payload that does not decode: short, overlong,
	// trailing bytes, out-of-range values, bad characters.
	ErrMalformed = errors.New("transport: malformed message")
)

// RejectedError is the client's error when the server answered Reject.
type RejectedError struct {
	Reason string
}

func (e *RejectedError) Error() string {
	if e.Reason == "" {
		return "transport: handshake rejected by peer (no reason given)"
	}
	return "transport: handshake rejected by peer: " + e.Reason
}

func versionMismatch(peer uint16) error {
	return fmt.Errorf("%w: peer speaks protocol version %d, this node speaks %d; upgrade both nodes to the same zrepl-ha release", ErrVersionMismatch, peer, ProtocolVersion)
}

// Hello is the client's first frame.
//
// Wire layout (payload of a Hello frame):
//
//	magic   4 bytes "ZRHA"
//	version uint16
//	purpose uint8 (1 control, 2 data)
//	node    uint8 length + bytes
//
// Magic and version come first in every protocol version, forever: a node
// must be able to read them from any release to refuse it politely.
type Hello struct {
	Magic   string
	Version uint16
	Node    string
	Purpose Purpose
}

// AppendBinary appends h's wire form. Any Version may be encoded (the peer
// decides whether it speaks it); everything else must be valid.
func (h Hello) AppendBinary(b []byte) ([]byte, error) {
	if h.Magic != ProtocolMagic {
		return b, fmt.Errorf("%w: %q", ErrBadMagic, h.Magic)
	}
	if err := checkNodeName("hello node", h.Node); err != nil {
		return b, err
	}
	pc, ok := h.Purpose.code()
	if !ok {
		return b, fmt.Errorf("%w: hello: unknown purpose %q", ErrMalformed, h.Purpose)
	}
	b = append(b, h.Magic...)
	b = binary.BigEndian.AppendUint16(b, h.Version)
	b = append(b, pc, byte(len(h.Node)))
	return append(b, h.Node...), nil
}

// MarshalBinary returns h's wire form.
func (h Hello) MarshalBinary() ([]byte, error) { return h.AppendBinary(nil) }

// UnmarshalBinary decodes and validates a Hello. On ErrVersionMismatch only
// Magic and Version are set: another version may lay out the rest
// differently.
func (h *Hello) UnmarshalBinary(b []byte) error {
	*h = Hello{}
	if len(b) < 6 {
		return fmt.Errorf("%w: hello is %d bytes, need at least 6", ErrMalformed, len(b))
	}
	if string(b[:4]) != ProtocolMagic {
		return fmt.Errorf("%w: got %q, want %q", ErrBadMagic, b[:4], ProtocolMagic)
	}
	v := binary.BigEndian.Uint16(b[4:6])
	if v != ProtocolVersion {
		h.Magic, h.Version = ProtocolMagic, v
		return versionMismatch(v)
	}
	r := msgReader{b: b[6:], what: "hello"}
	var out Hello
	out.Magic, out.Version = ProtocolMagic, v
	switch pc := r.u8("purpose"); {
	case r.err != nil:
	case pc == purposeControlCode:
		out.Purpose = PurposeControl
	case pc == purposeDataCode:
		out.Purpose = PurposeData
	default:
		r.fail("unknown purpose code %d", pc)
	}
	out.Node = r.str8("node", 255) // length checked by checkNodeName, as ErrBadName
	if err := r.done(); err != nil {
		return err
	}
	if err := checkNodeName("hello node", out.Node); err != nil {
		return err
	}
	*h = out
	return nil
}

// HelloAck is the server's acceptance.
//
// Wire layout: version uint16, node uint8 length + bytes.
type HelloAck struct {
	Version uint16
	Node    string
}

// AppendBinary appends a's wire form.
func (a HelloAck) AppendBinary(b []byte) ([]byte, error) {
	if err := checkNodeName("hello-ack node", a.Node); err != nil {
		return b, err
	}
	b = binary.BigEndian.AppendUint16(b, a.Version)
	b = append(b, byte(len(a.Node)))
	return append(b, a.Node...), nil
}

// MarshalBinary returns a's wire form.
func (a HelloAck) MarshalBinary() ([]byte, error) { return a.AppendBinary(nil) }

// UnmarshalBinary decodes and validates a HelloAck. On ErrVersionMismatch
// only Version is set.
func (a *HelloAck) UnmarshalBinary(b []byte) error {
	*a = HelloAck{}
	r := msgReader{b: b, what: "hello-ack"}
	v := r.u16("version")
	if r.err != nil {
		return r.err
	}
	if v != ProtocolVersion {
		a.Version = v
		return versionMismatch(v)
	}
	node := r.str8("node", 255) // length checked by checkNodeName, as ErrBadName
	if err := r.done(); err != nil {
		return err
	}
	if err := checkNodeName("hello-ack node", node); err != nil {
		return err
	}
	*a = HelloAck{Version: v, Node: node}
	return nil
}

// Reject is the server's refusal. Its layout is frozen across versions, like
// Hello's first six bytes, so that every release can read why it was refused.
//
// Wire layout: reason uint16 length + bytes (UTF-8, at most MaxReasonLen).
type Reject struct {
	Reason string
}

// AppendBinary appends r's wire form.
func (rj Reject) AppendBinary(b []byte) ([]byte, error) {
	if err := checkText("reject reason", rj.Reason, MaxReasonLen); err != nil {
		return b, err
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(rj.Reason)))
	return append(b, rj.Reason...), nil
}

// MarshalBinary returns r's wire form.
func (rj Reject) MarshalBinary() ([]byte, error) { return rj.AppendBinary(nil) }

// UnmarshalBinary decodes and validates a Reject.
func (rj *Reject) UnmarshalBinary(b []byte) error {
	*rj = Reject{}
	r := msgReader{b: b, what: "reject"}
	reason := r.str16("reason", MaxReasonLen)
	if err := r.done(); err != nil {
		return err
	}
	if err := checkText("reject reason", reason, MaxReasonLen); err != nil {
		return err
	}
	rj.Reason = reason
	return nil
}

// ClientHandshake sends hello and waits for the server's answer. A zero
// Magic or Version is filled in with ProtocolMagic and ProtocolVersion.
// It returns the server's HelloAck, a *RejectedError carrying the server's
// reason, or an I/O or protocol error.
//
// ctx is honoured through deadlines when rw has SetDeadline (a net.Conn):
// its deadline bounds the exchange and cancelling it interrupts a blocked
// read or write; the deadline is cleared on return. Otherwise ctx is only
// checked before starting. On any error the caller closes the connection.
func ClientHandshake(ctx context.Context, rw io.ReadWriter, hello Hello) (HelloAck, error) {
	if hello.Magic == "" {
		hello.Magic = ProtocolMagic
	}
	if hello.Version == 0 {
		hello.Version = ProtocolVersion
	}
	payload, err := hello.MarshalBinary()
	if err != nil {
		return HelloAck{}, err
	}
	if err := ctx.Err(); err != nil {
		return HelloAck{}, fmt.Errorf("transport: handshake: %w", err)
	}
	stop := watchContext(ctx, rw)
	ack, err := clientHandshake(rw, payload)
	stop()
	if err != nil {
		return HelloAck{}, contextError(ctx, err)
	}
	return ack, nil
}

func clientHandshake(rw io.ReadWriter, payload []byte) (HelloAck, error) {
	if err := NewEncoder(rw, handshakeMaxPayload).Encode(Frame{Type: FrameHello, Payload: payload}); err != nil {
		return HelloAck{}, err
	}
	f, err := NewDecoder(rw, handshakeMaxPayload).Next()
	if err == io.EOF {
		return HelloAck{}, fmt.Errorf("transport: peer closed the connection before answering the Hello: %w", io.ErrUnexpectedEOF)
	}
	if err != nil {
		return HelloAck{}, err
	}
	if f.Stream != 0 || f.Flags != 0 || (f.Type != FrameHelloAck && f.Type != FrameReject) {
		return HelloAck{}, fmt.Errorf("%w: expected HelloAck or Reject on stream 0, got %s (stream %d, flags 0x%02x)", ErrUnexpectedFrame, f.Type, f.Stream, f.Flags)
	}
	if f.Type == FrameReject {
		var rj Reject
		if err := rj.UnmarshalBinary(f.Payload); err != nil {
			return HelloAck{}, fmt.Errorf("transport: peer rejected the handshake with an unreadable Reject: %w", err)
		}
		return HelloAck{}, &RejectedError{Reason: rj.Reason}
	}
	var ack HelloAck
	if err := ack.UnmarshalBinary(f.Payload); err != nil {
		return HelloAck{}, err
	}
	return ack, nil
}

// ServerHandshake reads the client's Hello and answers it: Reject with the
// reason when the Hello is malformed, of another protocol version
// (ErrVersionMismatch), or refused by accept (nil accepts every valid
// Hello); otherwise HelloAck{ProtocolVersion, local}. It returns the
// accepted Hello, or an error wrapping the cause (accept's error included).
// ctx is honoured as in ClientHandshake.
func ServerHandshake(ctx context.Context, rw io.ReadWriter, local string, accept func(Hello) error) (Hello, error) {
	if err := checkNodeName("local node", local); err != nil {
		return Hello{}, err
	}
	if err := ctx.Err(); err != nil {
		return Hello{}, fmt.Errorf("transport: handshake: %w", err)
	}
	stop := watchContext(ctx, rw)
	h, err := serverHandshake(rw, local, accept)
	stop()
	if err != nil {
		return Hello{}, contextError(ctx, err)
	}
	return h, nil
}

func serverHandshake(rw io.ReadWriter, local string, accept func(Hello) error) (Hello, error) {
	enc := NewEncoder(rw, handshakeMaxPayload)
	f, err := NewDecoder(rw, handshakeMaxPayload).Next()
	if err == io.EOF {
		return Hello{}, fmt.Errorf("transport: peer closed the connection before its Hello: %w", io.ErrUnexpectedEOF)
	}
	if err != nil {
		return Hello{}, err
	}
	// reject tells the client why, best effort: cause is what we return.
	reject := func(reason string, cause error) (Hello, error) {
		payload, _ := Reject{Reason: ClampText(reason, MaxReasonLen)}.MarshalBinary() // valid by construction
		if werr := enc.Encode(Frame{Type: FrameReject, Payload: payload}); werr != nil {
			return Hello{}, fmt.Errorf("%w (sending Reject also failed: %v)", cause, werr)
		}
		return Hello{}, cause
	}
	if f.Type != FrameHello || f.Stream != 0 || f.Flags != 0 {
		err := fmt.Errorf("%w: expected Hello on stream 0, got %s (stream %d, flags 0x%02x)", ErrUnexpectedFrame, f.Type, f.Stream, f.Flags)
		return reject(err.Error(), err)
	}
	var h Hello
	if err := h.UnmarshalBinary(f.Payload); err != nil {
		if errors.Is(err, ErrVersionMismatch) {
			// Worded so that it reads right on both nodes' logs.
			return reject(fmt.Sprintf("protocol version mismatch: the accepting node %s speaks protocol version %d, the connecting node speaks %d; upgrade both nodes to the same zrepl-ha release",
				local, ProtocolVersion, h.Version), err)
		}
		return reject(err.Error(), err)
	}
	if accept != nil {
		if err := accept(h); err != nil {
			return reject(err.Error(), fmt.Errorf("transport: refused %s connection from node %s: %w", h.Purpose, h.Node, err))
		}
	}
	payload, err := HelloAck{Version: ProtocolVersion, Node: local}.MarshalBinary()
	if err != nil {
		return Hello{}, err
	}
	if err := enc.Encode(Frame{Type: FrameHelloAck, Payload: payload}); err != nil {
		return Hello{}, err
	}
	return h, nil
}

// watchContext maps ctx onto rw's deadline when rw is a net.Conn (or has
// SetDeadline). The returned stop must be called once the exchange is over;
// it clears the deadline, after waiting out a concurrent cancellation so
// that a stale past deadline is never left on the connection.
func watchContext(ctx context.Context, rw io.ReadWriter) (stop func()) {
	dl, ok := rw.(interface{ SetDeadline(time.Time) error })
	if !ok || ctx.Done() == nil {
		return func() {}
	}
	if d, ok := ctx.Deadline(); ok {
		_ = dl.SetDeadline(d)
	}
	fired := make(chan struct{})
	stopAfter := context.AfterFunc(ctx, func() {
		_ = dl.SetDeadline(time.Unix(1, 0)) // in the past: blocked I/O returns now
		close(fired)
	})
	return func() {
		if !stopAfter() {
			<-fired
		}
		_ = dl.SetDeadline(time.Time{})
	}
}

// contextError attributes an I/O failure to ctx when ctx caused it (the
// connection deadline may fire a moment before ctx's own timer).
func contextError(ctx context.Context, err error) error {
	cerr := ctx.Err()
	if cerr == nil && errors.Is(err, os.ErrDeadlineExceeded) {
		if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
			cerr = context.DeadlineExceeded
		}
	}
	if cerr == nil {
		return err
	}
	return fmt.Errorf("transport: handshake: %w: %w", cerr, err)
}

// checkNodeName enforces the config's node.name rule: 1 to 63 bytes of
// a-z, 0-9 and '-'.
func checkNodeName(what, s string) error {
	if s == "" || len(s) > MaxNodeNameLen {
		return fmt.Errorf("%w: %s %q must be 1 to %d characters", ErrBadName, what, ClampText(s, 80), MaxNodeNameLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("%w: %s %q: only a-z, 0-9 and '-' are allowed", ErrBadName, what, s)
		}
	}
	return nil
}

// checkText: at most max bytes of valid UTF-8 (free text: reasons, messages).
func checkText(what, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%w: %s is %d bytes, limit %d", ErrMalformed, what, len(s), max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrMalformed, what)
	}
	return nil
}

// ClampText makes s acceptable as a free-text field of at most max bytes
// (Reject.Reason, End.Message): invalid UTF-8 is replaced and the result is
// cut at a character boundary. Use it on text from outside (zfs's stderr,
// an error's message) before encoding.
func ClampText(s string, max int) string {
	if max <= 0 {
		return ""
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// msgReader decodes the fixed binary layouts of the message payloads. The
// first failure sticks, so a decoder reads every field and checks once.
type msgReader struct {
	b    []byte
	what string // message name for errors
	err  error
}

func (r *msgReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s: %s", ErrMalformed, r.what, fmt.Sprintf(format, args...))
	}
}

func (r *msgReader) take(n int, field string) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.fail("%s needs %d bytes, %d left", field, n, len(r.b))
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *msgReader) u8(field string) uint8 {
	if b := r.take(1, field); b != nil {
		return b[0]
	}
	return 0
}

func (r *msgReader) u16(field string) uint16 {
	if b := r.take(2, field); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *msgReader) u64(field string) uint64 {
	if b := r.take(8, field); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *msgReader) str(n, max int, field string) string {
	if r.err == nil && n > max {
		r.fail("%s is %d bytes, limit %d", field, n, max)
	}
	return string(r.take(n, field))
}

// str8 and str16 read a string with a uint8 or uint16 length prefix.
func (r *msgReader) str8(field string, max int) string {
	return r.str(int(r.u8(field+" length")), max, field)
}

func (r *msgReader) str16(field string, max int) string {
	return r.str(int(r.u16(field+" length")), max, field)
}

// done reports the first failure, or trailing bytes: every layout is exact,
// so one value has exactly one encoding.
func (r *msgReader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	return r.err
}
