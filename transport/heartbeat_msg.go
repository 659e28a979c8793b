package transport

import (
	"encoding/binary"
	"fmt"
)

// MaxSnapshotNameLen bounds Heartbeat.NewestSnapshot, as ZFS bounds names.
const MaxSnapshotNameLen = 255

// Layout versions of the heartbeat payloads: the leading byte. A change of
// layout takes a new number (and a ProtocolVersion bump), never an edit.
const (
	heartbeatLayout    = 1
	heartbeatAckLayout = 1
)

const (
	heartbeatFixedLen = 28 // everything but the snapshot name
	heartbeatAckLen   = 17

	hbFlagPublicOK  = 1 << 0
	hbFlagWantRoute = 1 << 1
	hbFlagRouting   = 1 << 2
	hbFlags         = hbFlagPublicOK | hbFlagWantRoute | hbFlagRouting
)

// Heartbeat is the payload of a Heartbeat frame. Transport only carries it;
// failover gives the fields their meaning.
//
// Wire layout (big-endian):
//
//	0  layout     uint8 = 1
//	1  seq        uint64
//	9  sent       int64, Unix nanoseconds
//	17 role       uint8
//	18 epoch      uint64
//	26 flags      uint8, bit 0 PublicOK, bit 1 WantRoute, bit 2 Routing,
//	              other bits 0 (bits 1 and 2 came with protocol version 2)
//	27 snapshot   uint8 length + bytes (UTF-8, no control characters)
type Heartbeat struct {
	Seq          uint64
	SentUnixNano int64
	Role         uint8
	Epoch        uint64
	PublicOK     bool
	// WantRoute: the sender serves but its public network is down, and
	// asks the peer to route the VIP's traffic to it over the link.
	WantRoute bool
	// Routing: the sender routes the peer's VIP traffic now.
	Routing        bool
	NewestSnapshot string
}

// AppendBinary appends h's wire form.
func (h Heartbeat) AppendBinary(b []byte) ([]byte, error) {
	if err := checkPrintable("heartbeat snapshot", h.NewestSnapshot, MaxSnapshotNameLen); err != nil {
		return b, err
	}
	var flags byte
	if h.PublicOK {
		flags |= hbFlagPublicOK
	}
	if h.WantRoute {
		flags |= hbFlagWantRoute
	}
	if h.Routing {
		flags |= hbFlagRouting
	}
	b = append(b, heartbeatLayout)
	b = binary.BigEndian.AppendUint64(b, h.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(h.SentUnixNano))
	b = append(b, h.Role)
	b = binary.BigEndian.AppendUint64(b, h.Epoch)
	b = append(b, flags, byte(len(h.NewestSnapshot)))
	return append(b, h.NewestSnapshot...), nil
}

// MarshalBinary returns h's wire form.
func (h Heartbeat) MarshalBinary() ([]byte, error) {
	return h.AppendBinary(make([]byte, 0, heartbeatFixedLen+len(h.NewestSnapshot)))
}

// UnmarshalBinary decodes and validates a Heartbeat.
func (h *Heartbeat) UnmarshalBinary(b []byte) error {
	*h = Heartbeat{}
	r := msgReader{b: b, what: "heartbeat"}
	if l := r.u8("layout"); r.err == nil && l != heartbeatLayout {
		r.fail("unknown layout version %d", l)
	}
	var out Heartbeat
	out.Seq = r.u64("seq")
	out.SentUnixNano = int64(r.u64("sent"))
	out.Role = r.u8("role")
	out.Epoch = r.u64("epoch")
	flags := r.u8("flags")
	if r.err == nil && flags&^hbFlags != 0 {
		r.fail("unknown flag bits 0x%02x", flags&^hbFlags)
	}
	out.PublicOK = flags&hbFlagPublicOK != 0
	out.WantRoute = flags&hbFlagWantRoute != 0
	out.Routing = flags&hbFlagRouting != 0
	out.NewestSnapshot = r.str8("snapshot", MaxSnapshotNameLen)
	if err := r.done(); err != nil {
		return err
	}
	if err := checkPrintable("heartbeat snapshot", out.NewestSnapshot, MaxSnapshotNameLen); err != nil {
		return err
	}
	*h = out
	return nil
}

// HeartbeatAck echoes a heartbeat so the sender can measure the round trip
// on its own clock: RTT = now - EchoSentUnixNano.
//
// Wire layout: layout uint8 = 1, seq uint64, echo int64 (17 bytes).
type HeartbeatAck struct {
	Seq              uint64
	EchoSentUnixNano int64
}

// AppendBinary appends a's wire form; every value is valid.
func (a HeartbeatAck) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, heartbeatAckLayout)
	b = binary.BigEndian.AppendUint64(b, a.Seq)
	return binary.BigEndian.AppendUint64(b, uint64(a.EchoSentUnixNano)), nil
}

// MarshalBinary returns a's wire form.
func (a HeartbeatAck) MarshalBinary() ([]byte, error) {
	return a.AppendBinary(make([]byte, 0, heartbeatAckLen))
}

// UnmarshalBinary decodes a HeartbeatAck.
func (a *HeartbeatAck) UnmarshalBinary(b []byte) error {
	*a = HeartbeatAck{}
	r := msgReader{b: b, what: "heartbeat-ack"}
	if l := r.u8("layout"); r.err == nil && l != heartbeatAckLayout {
		r.fail("unknown layout version %d", l)
	}
	seq := r.u64("seq")
	echo := int64(r.u64("echo"))
	if err := r.done(); err != nil {
		return err
	}
	*a = HeartbeatAck{Seq: seq, EchoSentUnixNano: echo}
	return nil
}

// checkPrintable: at most max bytes of UTF-8 without control characters,
// for names that end up in logs and status output.
func checkPrintable(what, s string, max int) error {
	if err := checkText(what, s, max); err != nil {
		return err
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) {
			return fmt.Errorf("%w: %s %q contains control character %U", ErrMalformed, what, s, c)
		}
	}
	return nil
}
