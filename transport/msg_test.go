package transport

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestHeartbeatGolden(t *testing.T) {
	h := Heartbeat{Seq: 1, SentUnixNano: 2, Role: 3, Epoch: 4, PublicOK: true, NewestSnapshot: "p/d@s"}
	b, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	want := cat(
		[]byte{1},
		[]byte{0, 0, 0, 0, 0, 0, 0, 1},
		[]byte{0, 0, 0, 0, 0, 0, 0, 2},
		[]byte{3},
		[]byte{0, 0, 0, 0, 0, 0, 0, 4},
		[]byte{1, 5}, []byte("p/d@s"),
	)
	if !bytes.Equal(b, want) {
		t.Fatalf("encoded % x, want % x", b, want)
	}
	a, _ := HeartbeatAck{Seq: 1, EchoSentUnixNano: -1}.MarshalBinary()
	if want := cat([]byte{1, 0, 0, 0, 0, 0, 0, 0, 1}, bytes.Repeat([]byte{0xff}, 8)); !bytes.Equal(a, want) {
		t.Fatalf("ack encoded % x, want % x", a, want)
	}
}

func TestHeartbeatRoundTrip(t *testing.T) {
	for _, h := range []Heartbeat{
		{},
		{Seq: 1, SentUnixNano: 1732630000123456789, Role: 1, Epoch: 7, PublicOK: true, NewestSnapshot: "tank/data@zrepl-ha_20241126T153000Z_42"},
		{Seq: math.MaxUint64, SentUnixNano: math.MinInt64, Role: 255, Epoch: math.MaxUint64},
		{Role: 1, WantRoute: true},
		{Role: 2, Routing: true, PublicOK: true},
		{SentUnixNano: -1, NewestSnapshot: strings.Repeat("s", MaxSnapshotNameLen)},
		{NewestSnapshot: "pool/ds with space@snap:1.2_3-4 ✓"},
	} {
		b, err := h.MarshalBinary()
		if err != nil {
			t.Fatalf("%+v: %v", h, err)
		}
		var got Heartbeat
		if err := got.UnmarshalBinary(b); err != nil || got != h {
			t.Fatalf("round trip of %+v: %+v, %v", h, got, err)
		}
	}
	for _, a := range []HeartbeatAck{{}, {Seq: 9, EchoSentUnixNano: 1732630000123456789}, {Seq: math.MaxUint64, EchoSentUnixNano: math.MinInt64}} {
		b, _ := a.MarshalBinary()
		var got HeartbeatAck
		if err := got.UnmarshalBinary(b); err != nil || got != a {
			t.Fatalf("round trip of %+v: %+v, %v", a, got, err)
		}
	}
}

func TestHeartbeatErrors(t *testing.T) {
	good, _ := Heartbeat{Seq: 1, NewestSnapshot: "p@s"}.MarshalBinary()
	with := func(i int, v byte) []byte { b := bytes.Clone(good); b[i] = v; return b }
	tests := []struct {
		name    string
		in      []byte
		wantMsg string
	}{
		{"empty", nil, "layout needs 1 bytes, 0 left"},
		{"layout 0", with(0, 0), "unknown layout version 0"},
		{"layout 2", with(0, 2), "unknown layout version 2"},
		{"short", good[:20], "epoch needs 8 bytes"},
		{"no snapshot length", good[:27], "snapshot length needs 1 bytes"},
		{"unknown flag", with(26, 0x09), "unknown flag bits 0x08"},
		{"bool byte not canonical", with(26, 0x80), "unknown flag bits 0x80"},
		{"snapshot longer than the data", with(27, 4), "snapshot needs 4 bytes, 3 left"},
		{"trailing", cat(good, []byte{0}), "1 trailing bytes"},
		{"newline in snapshot", cat(good[:27], []byte{3, 'p', '\n', 's'}), "control character"},
		{"C1 control in snapshot", cat(good[:27], []byte{4, 'p', 0xc2, 0x85, 's'}), "control character"},
		{"invalid UTF-8", cat(good[:27], []byte{3, 'p', 0xff, 's'}), "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Heartbeat
			err := h.UnmarshalBinary(tt.in)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("got %v, want ErrMalformed with %q", err, tt.wantMsg)
			}
			if h != (Heartbeat{}) {
				t.Errorf("value set on error: %+v", h)
			}
		})
	}
	if _, err := (Heartbeat{NewestSnapshot: strings.Repeat("s", 256)}).MarshalBinary(); !errors.Is(err, ErrMalformed) {
		t.Errorf("256-byte snapshot encoded: %v", err)
	}
	if _, err := (Heartbeat{NewestSnapshot: "a\tb"}).MarshalBinary(); !errors.Is(err, ErrMalformed) {
		t.Errorf("control character encoded: %v", err)
	}

	ack, _ := HeartbeatAck{Seq: 1}.MarshalBinary()
	for _, in := range [][]byte{nil, ack[:16], cat(ack, []byte{0}), cat([]byte{2}, ack[1:])} {
		var a HeartbeatAck
		if err := a.UnmarshalBinary(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("ack % x: got %v", in, err)
		}
	}
}

func TestEndGolden(t *testing.T) {
	b, err := End{Status: EndResumable, Code: "stalled", Message: "no progress for 30s", Token: "1-abc-0"}.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	want := cat([]byte{1, 2, 7}, []byte("stalled"), []byte{0, 19}, []byte("no progress for 30s"), []byte{0, 7}, []byte("1-abc-0"))
	if !bytes.Equal(b, want) {
		t.Fatalf("encoded % x, want % x", b, want)
	}
}

func TestEndRoundTrip(t *testing.T) {
	for _, e := range []End{
		{},
		{Status: EndOK, Message: "12 GiB received"},
		{Status: EndError, Code: "zfs", Message: "cannot receive incremental stream: destination tank/data has been modified\nsince most recent snapshot"},
		{Status: EndError, Code: "conflict", Message: "ünïcödé"},
		{Status: EndResumable, Code: "stalled", Token: "1-e604ea4bf-e0-789c63a2c11e"},
		{Status: EndResumable, Code: strings.Repeat("c", MaxCodeLen), Message: strings.Repeat("m", MaxMessageLen), Token: strings.Repeat("t", MaxTokenLen)},
		{Status: EndError, Code: "zfs.recv_busy-2"},
	} {
		b, err := e.MarshalBinary()
		if err != nil {
			t.Fatalf("%+v: %v", e, err)
		}
		var got End
		if err := got.UnmarshalBinary(b); err != nil || got != e {
			t.Fatalf("round trip of %+v: %+v, %v", e, got, err)
		}
	}
}

func TestEndErrors(t *testing.T) {
	tests := []struct {
		name    string
		e       End
		wantMsg string
	}{
		{"unknown status", End{Status: 3, Code: "x"}, "unknown status 3"},
		{"failure without a code", End{Status: EndError}, "status error needs a code"},
		{"resumable without a code", End{Status: EndResumable, Token: "t"}, "needs a code"},
		{"token on an error", End{Status: EndError, Code: "zfs", Token: "1-a"}, "cannot carry a resume token"},
		{"token on ok", End{Token: "1-a"}, "cannot carry a resume token"},
		{"code too long", End{Status: EndError, Code: strings.Repeat("c", 65)}, "code is 65 bytes, limit 64"},
		{"upper-case code", End{Status: EndError, Code: "ZFS"}, `code "ZFS"`},
		{"code with space", End{Status: EndError, Code: "z fs"}, "only a-z"},
		{"message too long", End{Status: EndError, Code: "zfs", Message: strings.Repeat("m", 4097)}, "4097 bytes, limit 4096"},
		{"message not UTF-8", End{Status: EndError, Code: "zfs", Message: "\xff"}, "not valid UTF-8"},
		{"token too long", End{Status: EndResumable, Code: "zfs", Token: strings.Repeat("t", 4097)}, "token is 4097 bytes"},
		{"token with space", End{Status: EndResumable, Code: "zfs", Token: "1 a"}, "token byte 1 is 0x20"},
		{"token with DEL", End{Status: EndResumable, Code: "zfs", Token: "\x7f"}, "0x7f"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.e.MarshalBinary()
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("encode: got %v, want ErrMalformed with %q", err, tt.wantMsg)
			}
			// The decoder applies the same rules to the same bytes.
			raw := cat([]byte{1, byte(tt.e.Status), byte(len(tt.e.Code))}, []byte(tt.e.Code),
				[]byte{byte(len(tt.e.Message) >> 8), byte(len(tt.e.Message))}, []byte(tt.e.Message),
				[]byte{byte(len(tt.e.Token) >> 8), byte(len(tt.e.Token))}, []byte(tt.e.Token))
			var got End
			if err := got.UnmarshalBinary(raw); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("decode: got %v, want ErrMalformed with %q", err, tt.wantMsg)
			}
			if got != (End{}) {
				t.Errorf("value set on error: %+v", got)
			}
		})
	}
	good, _ := End{Status: EndError, Code: "zfs", Message: "m"}.MarshalBinary()
	for _, in := range [][]byte{nil, {2}, good[:len(good)-1], cat(good, []byte{0}), cat([]byte{0}, good[1:])} {
		var e End
		if err := e.UnmarshalBinary(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("% x: got %v", in, err)
		}
	}
}

func TestEndStatusString(t *testing.T) {
	for s, want := range map[EndStatus]string{EndOK: "ok", EndError: "error", EndResumable: "resumable", 9: "EndStatus(9)"} {
		if got := s.String(); got != want {
			t.Errorf("%d: %q, want %q", uint8(s), got, want)
		}
	}
}

// Frames and messages compose: an End travels in an End frame.
func TestEndInFrame(t *testing.T) {
	e := End{Status: EndResumable, Code: "stalled", Message: ClampText(strings.Repeat("zfs stderr ", 1000), MaxMessageLen), Token: "1-abc"}
	p, err := e.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	frames, _ := decodeAll(bytes.NewReader(encodeFrames(t, 0, Frame{Type: FrameEnd, Stream: 5, Payload: p})), 0)
	var got End
	if len(frames) != 1 || got.UnmarshalBinary(frames[0].Payload) != nil || got != e {
		t.Fatalf("got %+v", got)
	}
}
