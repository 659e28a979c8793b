package transport

import (
	"encoding/binary"
	"fmt"
	"strconv"
)

// Limits of the End payload's fields, in bytes.
const (
	MaxCodeLen    = 64
	MaxMessageLen = 4096
	MaxTokenLen   = 4096
)

const endLayout = 1 // leading byte; a new layout takes a new number

// EndStatus is how a stream ended. Values are only ever appended.
type EndStatus uint8

const (
	EndOK        EndStatus = 0 // complete
	EndError     EndStatus = 1 // failed; retrying from scratch is the sender's call
	EndResumable EndStatus = 2 // failed, and Token resumes it (zfs send -t)
)

func (s EndStatus) String() string {
	switch s {
	case EndOK:
		return "ok"
	case EndError:
		return "error"
	case EndResumable:
		return "resumable"
	}
	return "EndStatus(" + strconv.Itoa(int(s)) + ")"
}

// End is the payload of an End frame, the last frame of a stream in either
// direction. It carries a failure across the link with its type (Code) so
// the other side can act on it, not just log it.
//
// Wire layout (big-endian):
//
//	layout  uint8 = 1
//	status  uint8 (0 ok, 1 error, 2 resumable)
//	code    uint8 length + bytes (a-z 0-9 . _ -), e.g. "zfs", "conflict", "stalled"
//	message uint16 length + bytes (UTF-8)
//	token   uint16 length + bytes (printable ASCII, no spaces)
//
// A failed End (status 1 or 2) must have a Code; only a resumable End may
// carry a Token. Use ClampText on Message when it comes from zfs's stderr.
type End struct {
	Status  EndStatus
	Code    string
	Message string
	Token   string
}

func (e End) validate() error {
	switch {
	case e.Status > EndResumable:
		return fmt.Errorf("%w: end: unknown status %d", ErrMalformed, uint8(e.Status))
	case len(e.Code) > MaxCodeLen:
		return fmt.Errorf("%w: end: code is %d bytes, limit %d", ErrMalformed, len(e.Code), MaxCodeLen)
	case e.Status != EndOK && e.Code == "":
		return fmt.Errorf("%w: end: status %s needs a code", ErrMalformed, e.Status)
	case e.Token != "" && e.Status != EndResumable:
		return fmt.Errorf("%w: end: status %s cannot carry a resume token", ErrMalformed, e.Status)
	case len(e.Token) > MaxTokenLen:
		return fmt.Errorf("%w: end: token is %d bytes, limit %d", ErrMalformed, len(e.Token), MaxTokenLen)
	}
	for i := 0; i < len(e.Code); i++ {
		if c := e.Code[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: end: code %q: only a-z, 0-9, '.', '_' and '-' are allowed", ErrMalformed, e.Code)
		}
	}
	for i := 0; i < len(e.Token); i++ {
		if c := e.Token[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("%w: end: token byte %d is 0x%02x, want printable ASCII", ErrMalformed, i, c)
		}
	}
	return checkText("end message", e.Message, MaxMessageLen)
}

// AppendBinary appends e's wire form.
func (e End) AppendBinary(b []byte) ([]byte, error) {
	if err := e.validate(); err != nil {
		return b, err
	}
	b = append(b, endLayout, byte(e.Status), byte(len(e.Code)))
	b = append(b, e.Code...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(e.Message)))
	b = append(b, e.Message...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(e.Token)))
	return append(b, e.Token...), nil
}

// MarshalBinary returns e's wire form.
func (e End) MarshalBinary() ([]byte, error) {
	return e.AppendBinary(make([]byte, 0, 7+len(e.Code)+len(e.Message)+len(e.Token)))
}

// UnmarshalBinary decodes and validates an End.
func (e *End) UnmarshalBinary(b []byte) error {
	*e = End{}
	r := msgReader{b: b, what: "end"}
	if l := r.u8("layout"); r.err == nil && l != endLayout {
		r.fail("unknown layout version %d", l)
	}
	var out End
	out.Status = EndStatus(r.u8("status"))
	out.Code = r.str8("code", MaxCodeLen)
	out.Message = r.str16("message", MaxMessageLen)
	out.Token = r.str16("token", MaxTokenLen)
	if err := r.done(); err != nil {
		return err
	}
	if err := out.validate(); err != nil {
		return err
	}
	*e = out
	return nil
}
