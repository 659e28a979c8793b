package transport

import (
	"bytes"
	"encoding"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// Seeds for all four fuzzers are files in testdata/fuzz/<FuzzName>/, valid
// and malformed; `go test` runs them as regression tests.

// fuzzMaxPayload is small so that the fuzzer reaches the size limit easily.
const fuzzMaxPayload = 1024

// FuzzDecoder: Next never panics, fails only with a named error, reads the
// same frames whatever the read sizes, and every frame it returns re-encodes
// to exactly the bytes it came from (the header has one valid encoding).
func FuzzDecoder(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		frames, err := decodeAll(bytes.NewReader(data), fuzzMaxPayload)
		if err != io.EOF && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrUnknownFrameType) &&
			!errors.Is(err, ErrReservedBits) && !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("unnamed error %v", err)
		}
		if errors.Is(err, ErrTruncated) != errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("ErrTruncated and io.ErrUnexpectedEOF disagree: %v", err)
		}
		slow, slowErr := decodeAll(iotest.OneByteReader(bytes.NewReader(data)), fuzzMaxPayload)
		if !framesEqual(frames, slow) || slowErr.Error() != err.Error() {
			t.Fatalf("byte-by-byte reads differ: %d frames, %v vs %d frames, %v", len(frames), err, len(slow), slowErr)
		}
		wire := encodeFrames(t, fuzzMaxPayload, frames...)
		if !bytes.HasPrefix(data, wire) {
			t.Fatalf("re-encoding differs from the input")
		}
		if err == io.EOF && len(wire) != len(data) {
			t.Fatalf("clean EOF after %d of %d bytes", len(wire), len(data))
		}
		again, err := decodeAll(bytes.NewReader(wire), fuzzMaxPayload)
		if err != io.EOF || !framesEqual(again, frames) {
			t.Fatalf("re-encoded frames decode differently: %v", err)
		}
	})
}

// binaryMsg is what every message codec implements.
type binaryMsg interface {
	encoding.BinaryMarshaler
	encoding.BinaryUnmarshaler
}

// checkMsg decodes data into fresh, and if that succeeds checks that the
// value re-encodes to exactly data (every layout is exact, so one value has
// one encoding) and decodes back to an equal value. It returns the decode
// error, which must wrap one of allowed.
func checkMsg[T comparable, P interface {
	*T
	binaryMsg
}](t *testing.T, data []byte, allowed ...error) {
	t.Helper()
	var v T
	err := P(&v).UnmarshalBinary(data)
	if err != nil {
		for _, a := range allowed {
			if errors.Is(err, a) {
				return
			}
		}
		t.Fatalf("%T: unnamed error %v", v, err)
	}
	b, err := P(&v).MarshalBinary()
	if err != nil {
		t.Fatalf("%T %+v decoded but does not encode: %v", v, v, err)
	}
	if !bytes.Equal(b, data) {
		t.Fatalf("%T %+v re-encodes to % x, decoded from % x", v, v, b, data)
	}
	var again T
	if err := P(&again).UnmarshalBinary(b); err != nil || again != v {
		t.Fatalf("%T: %+v decodes back as %+v, %v", v, v, again, err)
	}
}

// FuzzHello covers the three handshake payloads.
func FuzzHello(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		checkMsg[Hello](t, data, ErrMalformed, ErrBadMagic, ErrVersionMismatch, ErrBadName)
		checkMsg[HelloAck](t, data, ErrMalformed, ErrVersionMismatch, ErrBadName)
		checkMsg[Reject](t, data, ErrMalformed)
	})
}

// FuzzHeartbeat covers Heartbeat and HeartbeatAck.
func FuzzHeartbeat(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		checkMsg[Heartbeat](t, data, ErrMalformed)
		checkMsg[HeartbeatAck](t, data, ErrMalformed)
	})
}

func FuzzEnd(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		checkMsg[End](t, data, ErrMalformed)
	})
}
