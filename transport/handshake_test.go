package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestHelloCodec(t *testing.T) {
	h := Hello{Magic: ProtocolMagic, Version: ProtocolVersion, Node: "alpha-1", Purpose: PurposeData}
	b, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	want := cat([]byte("ZRHA"), []byte{0, 2, 2, 7}, []byte("alpha-1"))
	if !bytes.Equal(b, want) {
		t.Fatalf("encoded % x, want % x", b, want)
	}
	for _, h := range []Hello{
		h,
		{Magic: ProtocolMagic, Version: ProtocolVersion, Node: "a", Purpose: PurposeControl},
		{Magic: ProtocolMagic, Version: ProtocolVersion, Node: strings.Repeat("z", 63), Purpose: PurposeControl},
		{Magic: ProtocolMagic, Version: ProtocolVersion, Node: "0-9", Purpose: PurposeData},
	} {
		b, err := h.MarshalBinary()
		if err != nil {
			t.Fatalf("%+v: %v", h, err)
		}
		var got Hello
		if err := got.UnmarshalBinary(b); err != nil || got != h {
			t.Fatalf("round trip of %+v: got %+v, %v", h, got, err)
		}
	}
}

func helloBytes(magic string, version uint16, purpose byte, node string) []byte {
	return cat([]byte(magic), []byte{byte(version >> 8), byte(version), purpose, byte(len(node))}, []byte(node))
}

func TestHelloDecodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    error
		wantMsg string
	}{
		{"empty", nil, ErrMalformed, "0 bytes"},
		{"short", []byte("ZRHA\x00"), ErrMalformed, "5 bytes"},
		{"wrong magic", helloBytes("ZRHX", 2, 1, "alpha"), ErrBadMagic, `"ZRHX"`},
		{"http", []byte("GET / HTTP/1.1\r\n"), ErrBadMagic, `"GET "`},
		{"version 3", helloBytes("ZRHA", 3, 1, "alpha"), ErrVersionMismatch,
			"peer speaks protocol version 3, this node speaks 2; upgrade both nodes to the same zrepl-ha release"},
		{"version 0", helloBytes("ZRHA", 0, 1, "alpha"), ErrVersionMismatch, "version 0"},
		{"version 3 with an unknown layout", cat([]byte("ZRHA\x00\x03"), bytes.Repeat([]byte{0xff}, 40)), ErrVersionMismatch, "version 3"},
		{"purpose 0", helloBytes("ZRHA", 2, 0, "alpha"), ErrMalformed, "purpose code 0"},
		{"purpose 3", helloBytes("ZRHA", 2, 3, "alpha"), ErrMalformed, "purpose code 3"},
		{"no purpose", []byte("ZRHA\x00\x02"), ErrMalformed, "purpose"},
		{"empty name", helloBytes("ZRHA", 2, 1, ""), ErrBadName, "1 to 63"},
		{"name of 64", helloBytes("ZRHA", 2, 1, strings.Repeat("a", 64)), ErrBadName, "1 to 63"},
		{"upper case name", helloBytes("ZRHA", 2, 1, "Alpha"), ErrBadName, `"Alpha"`},
		{"underscore", helloBytes("ZRHA", 2, 1, "al_pha"), ErrBadName, "a-z, 0-9"},
		{"dot", helloBytes("ZRHA", 2, 1, "alpha.lan"), ErrBadName, "a-z, 0-9"},
		{"NUL in name", helloBytes("ZRHA", 2, 1, "al\x00pha"), ErrBadName, "a-z, 0-9"},
		{"name longer than the data", helloBytes("ZRHA", 2, 1, "alpha")[:10], ErrMalformed, "node needs 5 bytes, 2 left"},
		{"trailing byte", cat(helloBytes("ZRHA", 2, 1, "alpha"), []byte{0}), ErrMalformed, "1 trailing bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Hello
			err := h.UnmarshalBinary(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
			if tt.want == ErrVersionMismatch {
				if h.Magic != ProtocolMagic || h.Version != uint16(tt.in[4])<<8|uint16(tt.in[5]) || h.Node != "" {
					t.Errorf("on a mismatch only Magic and Version are set, got %+v", h)
				}
			} else if h != (Hello{}) {
				t.Errorf("value set on error: %+v", h)
			}
		})
	}
}

func TestHelloEncodeErrors(t *testing.T) {
	for _, tt := range []struct {
		h    Hello
		want error
	}{
		{Hello{Magic: "", Version: ProtocolVersion, Node: "a", Purpose: PurposeData}, ErrBadMagic},
		{Hello{Magic: "zrha", Version: ProtocolVersion, Node: "a", Purpose: PurposeData}, ErrBadMagic},
		{Hello{Magic: ProtocolMagic, Version: ProtocolVersion, Node: "A", Purpose: PurposeData}, ErrBadName},
		{Hello{Magic: ProtocolMagic, Version: ProtocolVersion, Node: strings.Repeat("a", 300), Purpose: PurposeData}, ErrBadName},
		{Hello{Magic: ProtocolMagic, Version: ProtocolVersion, Node: "a", Purpose: "heartbeat"}, ErrMalformed},
		{Hello{Magic: ProtocolMagic, Version: ProtocolVersion, Node: "a"}, ErrMalformed},
	} {
		if _, err := tt.h.MarshalBinary(); !errors.Is(err, tt.want) {
			t.Errorf("%+v: got %v, want %v", tt.h, err, tt.want)
		}
	}
}

func TestHelloAckCodec(t *testing.T) {
	a := HelloAck{Version: ProtocolVersion, Node: "beta"}
	b, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte("\x00\x02\x04beta"); !bytes.Equal(b, want) {
		t.Fatalf("encoded % x, want % x", b, want)
	}
	var got HelloAck
	if err := got.UnmarshalBinary(b); err != nil || got != a {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for _, tt := range []struct {
		in   string
		want error
	}{
		{"", ErrMalformed},
		{"\x00", ErrMalformed},
		{"\x00\x03\x04beta", ErrVersionMismatch},
		{"\x00\x02\x00", ErrBadName},
		{"\x00\x02\x04Beta", ErrBadName},
		{"\x00\x02\x05beta", ErrMalformed},
		{"\x00\x02\x04beta!", ErrMalformed},
	} {
		var a HelloAck
		if err := a.UnmarshalBinary([]byte(tt.in)); !errors.Is(err, tt.want) {
			t.Errorf("%q: got %v, want %v", tt.in, err, tt.want)
		}
	}
	if _, err := (HelloAck{Version: ProtocolVersion, Node: "b c"}).MarshalBinary(); !errors.Is(err, ErrBadName) {
		t.Errorf("bad name encoded: %v", err)
	}
}

func TestRejectCodec(t *testing.T) {
	for _, reason := range []string{"", "no", "node gamma is not the configured peer", "ünïcödé ✓", strings.Repeat("r", MaxReasonLen)} {
		b, err := Reject{Reason: reason}.MarshalBinary()
		if err != nil {
			t.Fatalf("%q: %v", reason, err)
		}
		var got Reject
		if err := got.UnmarshalBinary(b); err != nil || got.Reason != reason {
			t.Fatalf("round trip of %q: %q, %v", reason, got.Reason, err)
		}
	}
	if b, _ := (Reject{Reason: "no"}).MarshalBinary(); !bytes.Equal(b, []byte("\x00\x02no")) {
		t.Errorf("encoded % x", b)
	}
	for _, in := range []string{"", "\x00", "\x00\x03no", "\x00\x02no!", "\x00\x02\xff\xfe", "\x04\x01" + strings.Repeat("r", 1025)} {
		var rj Reject
		if err := rj.UnmarshalBinary([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: got %v, want ErrMalformed", in, err)
		}
	}
	if _, err := (Reject{Reason: strings.Repeat("r", MaxReasonLen+1)}).MarshalBinary(); !errors.Is(err, ErrMalformed) {
		t.Errorf("overlong reason encoded: %v", err)
	}
}

func TestClampText(t *testing.T) {
	for _, tt := range []struct {
		in   string
		max  int
		want string
	}{
		{"short", 10, "short"},
		{"exactly", 7, "exactly"},
		{"truncated", 5, "trunc"},
		{"héllo", 2, "h"}, // é is two bytes: never cut inside it
		{"héllo", 3, "hé"},
		{"bad\xffbyte", 100, "bad\uFFFDbyte"},
		{"anything", 0, ""},
		{"anything", -1, ""},
	} {
		if got := ClampText(tt.in, tt.max); got != tt.want {
			t.Errorf("ClampText(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
	}
}

type handshakeResult struct {
	hello Hello
	ack   HelloAck
	err   error
}

// runHandshake runs both sides over net.Pipe.
func runHandshake(t *testing.T, hello Hello, local string, accept func(Hello) error) (client, server handshakeResult) {
	t.Helper()
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan handshakeResult)
	go func() {
		h, err := ServerHandshake(ctx, s, local, accept)
		done <- handshakeResult{hello: h, err: err}
	}()
	ack, err := ClientHandshake(ctx, c, hello)
	client = handshakeResult{ack: ack, err: err}
	server = <-done
	return client, server
}

func TestHandshakeAccept(t *testing.T) {
	var seen Hello
	client, server := runHandshake(t, Hello{Node: "alpha", Purpose: PurposeControl}, "beta", func(h Hello) error {
		seen = h
		return nil
	})
	if client.err != nil || server.err != nil {
		t.Fatalf("client %v, server %v", client.err, server.err)
	}
	want := Hello{Magic: ProtocolMagic, Version: ProtocolVersion, Node: "alpha", Purpose: PurposeControl}
	if server.hello != want || seen != want {
		t.Errorf("server got %+v, accept saw %+v, want %+v", server.hello, seen, want)
	}
	if client.ack != (HelloAck{Version: ProtocolVersion, Node: "beta"}) {
		t.Errorf("client got %+v", client.ack)
	}

	// nil accept takes every valid Hello.
	client, server = runHandshake(t, Hello{Node: "alpha", Purpose: PurposeData}, "beta", nil)
	if client.err != nil || server.err != nil || server.hello.Purpose != PurposeData {
		t.Fatalf("nil accept: client %v, server %v %+v", client.err, server.err, server.hello)
	}
}

func TestHandshakeVersionMismatch(t *testing.T) {
	called := false
	client, server := runHandshake(t, Hello{Node: "alpha", Version: ProtocolVersion + 1, Purpose: PurposeControl}, "beta", func(Hello) error {
		called = true
		return nil
	})
	if called {
		t.Error("accept called for a Hello of another version")
	}
	if !errors.Is(server.err, ErrVersionMismatch) ||
		!strings.Contains(server.err.Error(), "peer speaks protocol version 3, this node speaks 2; upgrade both nodes to the same zrepl-ha release") {
		t.Errorf("server: %v", server.err)
	}
	var rej *RejectedError
	if !errors.As(client.err, &rej) {
		t.Fatalf("client: got %T %v, want *RejectedError", client.err, client.err)
	}
	want := "protocol version mismatch: the accepting node beta speaks protocol version 2, the connecting node speaks 3; upgrade both nodes to the same zrepl-ha release"
	if rej.Reason != want {
		t.Errorf("reason %q, want %q", rej.Reason, want)
	}
}

func TestHandshakeRefused(t *testing.T) {
	refusal := errors.New("node gamma is not the configured peer beta")
	client, server := runHandshake(t, Hello{Node: "gamma", Purpose: PurposeData}, "alpha", func(h Hello) error {
		if h.Node != "beta" {
			return refusal
		}
		return nil
	})
	if !errors.Is(server.err, refusal) || !strings.Contains(server.err.Error(), "refused data connection from node gamma") {
		t.Errorf("server: %v", server.err)
	}
	var rej *RejectedError
	if !errors.As(client.err, &rej) || rej.Reason != refusal.Error() {
		t.Fatalf("client: %v", client.err)
	}
	if !strings.Contains(client.err.Error(), "rejected by peer: node gamma is not") {
		t.Errorf("client error text %q", client.err)
	}
}

// A long or non-UTF-8 refusal still reaches the client, clamped.
func TestHandshakeRefusedLongReason(t *testing.T) {
	refusal := errors.New(strings.Repeat("x\xff", 2000))
	client, server := runHandshake(t, Hello{Node: "alpha", Purpose: PurposeData}, "beta", func(Hello) error { return refusal })
	if !errors.Is(server.err, refusal) {
		t.Errorf("server: %v", server.err)
	}
	var rej *RejectedError
	if !errors.As(client.err, &rej) || len(rej.Reason) > MaxReasonLen || !strings.HasPrefix(rej.Reason, "x\uFFFDx") {
		t.Fatalf("client: %v", client.err)
	}
}

// serveRaw runs fn as a hand-written peer on one end of a pipe.
func serveRaw(t *testing.T, fn func(peer net.Conn)) net.Conn {
	t.Helper()
	c, s := net.Pipe()
	t.Cleanup(func() { c.Close(); s.Close() })
	go func() {
		defer s.Close()
		fn(s)
	}()
	return c
}

func TestServerHandshakeBadClients(t *testing.T) {
	tests := []struct {
		name       string
		send       Frame
		want       error
		wantReason string
	}{
		{"wrong magic", Frame{Type: FrameHello, Payload: helloBytes("SSH-", 2, 1, "alpha")}, ErrBadMagic, "bad magic"},
		{"bad name", Frame{Type: FrameHello, Payload: helloBytes("ZRHA", 2, 1, "Alpha")}, ErrBadName, "invalid node name"},
		{"data before hello", Frame{Type: FrameData, Stream: 1, Payload: []byte("zfs")}, ErrUnexpectedFrame, "expected Hello on stream 0, got Data (stream 1"},
		{"hello on a stream", Frame{Type: FrameHello, Stream: 3, Payload: helloBytes("ZRHA", 2, 1, "alpha")}, ErrUnexpectedFrame, "got Hello (stream 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reasons := make(chan string, 1)
			conn := serveRaw(t, func(peer net.Conn) {
				if err := NewEncoder(peer, 0).Encode(tt.send); err != nil {
					reasons <- "write: " + err.Error()
					return
				}
				f, err := NewDecoder(peer, 0).Next()
				var rj Reject
				if err == nil && f.Type == FrameReject {
					err = rj.UnmarshalBinary(f.Payload)
				}
				if err != nil {
					reasons <- "read: " + err.Error()
					return
				}
				reasons <- rj.Reason
			})
			_, err := ServerHandshake(context.Background(), conn, "beta", nil)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if r := <-reasons; !strings.Contains(r, tt.wantReason) {
				t.Errorf("Reject reason %q does not contain %q", r, tt.wantReason)
			}
		})
	}

	t.Run("peer closes before its hello", func(t *testing.T) {
		conn := serveRaw(t, func(net.Conn) {})
		if _, err := ServerHandshake(context.Background(), conn, "beta", nil); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("truncated hello", func(t *testing.T) {
		conn := serveRaw(t, func(peer net.Conn) { _, _ = peer.Write(rawHeader(1, 0, 0, 0, 20)[:12]) })
		if _, err := ServerHandshake(context.Background(), conn, "beta", nil); !errors.Is(err, ErrTruncated) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("invalid local name", func(t *testing.T) {
		if _, err := ServerHandshake(context.Background(), nil, "Beta", nil); !errors.Is(err, ErrBadName) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestClientHandshakeBadServers(t *testing.T) {
	reply := func(f Frame) func(net.Conn) {
		return func(peer net.Conn) {
			if _, err := NewDecoder(peer, 0).Next(); err != nil {
				return
			}
			_ = NewEncoder(peer, 0).Encode(f)
		}
	}
	tests := []struct {
		name  string
		serve func(net.Conn)
		want  error
	}{
		{"ack of another version", reply(Frame{Type: FrameHelloAck, Payload: []byte("\x00\x03\x04beta")}), ErrVersionMismatch},
		{"ack with a bad name", reply(Frame{Type: FrameHelloAck, Payload: []byte("\x00\x02\x04BETA")}), ErrBadName},
		{"malformed reject", reply(Frame{Type: FrameReject, Payload: []byte("\x00\x09no")}), ErrMalformed},
		{"heartbeat instead of an answer", reply(Frame{Type: FrameHeartbeat}), ErrUnexpectedFrame},
		{"ack on a stream", reply(Frame{Type: FrameHelloAck, Stream: 1, Payload: []byte("\x00\x02\x04beta")}), ErrUnexpectedFrame},
		{"closed without answering", func(peer net.Conn) { _, _ = NewDecoder(peer, 0).Next() }, io.ErrUnexpectedEOF},
		{"garbage", func(peer net.Conn) {
			_, _ = NewDecoder(peer, 0).Next()
			_, _ = peer.Write([]byte("HTTP/1.1 400 Bad Request\r\n"))
		}, ErrUnknownFrameType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := serveRaw(t, tt.serve)
			_, err := ClientHandshake(context.Background(), conn, Hello{Node: "alpha", Purpose: PurposeControl})
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			var rej *RejectedError
			if errors.As(err, &rej) {
				t.Errorf("a protocol error reported as a rejection: %v", err)
			}
		})
	}
	t.Run("invalid hello is not sent", func(t *testing.T) {
		if _, err := ClientHandshake(context.Background(), nil, Hello{Node: "al pha", Purpose: PurposeControl}); !errors.Is(err, ErrBadName) {
			t.Fatalf("got %v", err)
		}
	})
}

// A silent peer: ctx's deadline and cancellation both end the handshake,
// and the connection's deadline is cleared afterwards.
func TestHandshakeContext(t *testing.T) {
	for _, tt := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}, context.DeadlineExceeded},
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
	} {
		t.Run(tt.name+"/client", func(t *testing.T) {
			c, s := net.Pipe()
			defer c.Close()
			defer s.Close()
			go func() { _, _ = NewDecoder(s, 0).Next() }() // reads the Hello, never answers
			ctx, cancel := tt.ctx()
			defer cancel()
			_, err := ClientHandshake(ctx, c, Hello{Node: "alpha", Purpose: PurposeControl})
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			assertNoDeadline(t, c, s)
		})
		t.Run(tt.name+"/server", func(t *testing.T) {
			c, s := net.Pipe()
			defer c.Close()
			defer s.Close()
			ctx, cancel := tt.ctx()
			defer cancel()
			_, err := ServerHandshake(ctx, s, "beta", nil)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			assertNoDeadline(t, s, c)
		})
	}
	t.Run("already cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := ClientHandshake(ctx, nil, Hello{Node: "alpha", Purpose: PurposeControl}); !errors.Is(err, context.Canceled) {
			t.Errorf("client: %v", err)
		}
		if _, err := ServerHandshake(ctx, nil, "beta", nil); !errors.Is(err, context.Canceled) {
			t.Errorf("server: %v", err)
		}
	})
}

// assertNoDeadline checks conn can still read after the handshake returned.
func assertNoDeadline(t *testing.T, conn, peer net.Conn) {
	t.Helper()
	go func() {
		time.Sleep(20 * time.Millisecond)
		_, _ = peer.Write([]byte("x"))
	}()
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		t.Fatalf("connection unusable after the handshake: %v", err)
	}
}

// Without SetDeadline the handshake still works over any io.ReadWriter.
func TestHandshakePlainReadWriter(t *testing.T) {
	var serverIn bytes.Buffer
	serverOut := encodeFrames(t, 0, Frame{Type: FrameHelloAck, Payload: []byte("\x00\x02\x04beta")})
	rw := struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(serverOut), &serverIn}
	ack, err := ClientHandshake(context.Background(), rw, Hello{Node: "alpha", Purpose: PurposeData})
	if err != nil || ack.Node != "beta" {
		t.Fatalf("client: %+v %v", ack, err)
	}

	var toClient bytes.Buffer
	h, err := ServerHandshake(context.Background(), struct {
		io.Reader
		io.Writer
	}{&serverIn, &toClient}, "beta", nil)
	if err != nil || h.Node != "alpha" || h.Purpose != PurposeData {
		t.Fatalf("server: %+v %v", h, err)
	}
	if !bytes.Equal(toClient.Bytes(), serverOut) {
		t.Errorf("server answered % x, want % x", toClient.Bytes(), serverOut)
	}
}
