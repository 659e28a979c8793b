package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"
)

// Security says how connections are protected. Exactly one of TLS or
// Plaintext: plaintext exists for tests only, must be asked for explicitly,
// and is logged loudly.
type Security struct {
	TLS       *tls.Config
	Plaintext bool
}

func (s Security) check(log *slog.Logger) error {
	switch {
	case s.TLS != nil && s.Plaintext:
		return errors.New("transport: both TLS and plaintext configured; choose one")
	case s.TLS == nil && !s.Plaintext:
		return errors.New("transport: no TLS configuration (transport.tls); plaintext needs transport.tls.insecure_plaintext: true and is for tests only")
	case s.Plaintext && log != nil && plaintextWarned.CompareAndSwap(false, true):
		// Once per process: heartbeats redial every second while a peer
		// is down, and the warning would drown everything else.
		log.Warn("transport: PLAINTEXT connections: no authentication, no encryption; for tests only")
	}
	return nil
}

var plaintextWarned atomic.Bool

// Conn is one handshaken connection to the peer.
type Conn struct {
	net.Conn
	Peer    string
	Purpose Purpose
	enc     *Encoder
	dec     *Decoder
}

func newConn(c net.Conn, peer string, p Purpose, maxPayload int) *Conn {
	// Frames are read through a buffer: a header and its payload then cost
	// one read syscall instead of two.
	return &Conn{Conn: c, Peer: peer, Purpose: p,
		enc: NewEncoder(c, maxPayload), dec: NewDecoder(bufio.NewReaderSize(c, 256<<10), maxPayload)}
}

// Send writes one frame.
func (c *Conn) Send(f Frame) error { return c.enc.Encode(f) }

// Recv reads one frame. Its payload is valid until the next Recv.
func (c *Conn) Recv() (Frame, error) { return c.dec.Next() }

// DataMaxPayload is the frame payload limit on data connections: one
// compressed chunk header plus up to 1 MiB fits in one frame.
const DataMaxPayload = MaxChunkSize + 64<<10

// Dial connects to addr, runs TLS (unless plaintext) and the handshake, and
// checks that the peer is who the config says.
func Dial(ctx context.Context, addr, local, wantPeer string, p Purpose, sec Security, log *slog.Logger) (*Conn, error) {
	if err := sec.check(log); err != nil {
		return nil, err
	}
	d := net.Dialer{KeepAliveConfig: keepAlive}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", addr, err)
	}
	if err := detectDeadPeer(raw); err != nil {
		raw.Close()
		return nil, fmt.Errorf("transport: dial %s: setting the user timeout: %w", addr, err)
	}
	c := raw
	if sec.TLS != nil {
		tc := tls.Client(raw, sec.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("transport: TLS with %s: %w", addr, err)
		}
		c = tc
	}
	ack, err := ClientHandshake(ctx, c, Hello{Node: local, Purpose: p})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("transport: handshake with %s: %w", addr, err)
	}
	if wantPeer != "" && ack.Node != wantPeer {
		c.Close()
		return nil, fmt.Errorf("transport: %s answered as node %q, the config names the peer %q", addr, ack.Node, wantPeer)
	}
	return newConn(c, ack.Node, p, DataMaxPayload), nil
}

// Listener accepts handshaken connections from the configured peer only.
type Listener struct {
	ln    net.Listener
	local string
	peer  string
	sec   Security
	log   *slog.Logger
}

// Listen listens on addr for connections from peer (by node name; with TLS
// the certificate pin has already proven who it is).
func Listen(addr, local, peer string, sec Security, log *slog.Logger) (*Listener, error) {
	if err := sec.check(log); err != nil {
		return nil, err
	}
	lc := net.ListenConfig{KeepAliveConfig: keepAlive}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen %s: %w", addr, err)
	}
	return listener(ln, local, peer, sec, log), nil
}

// ListenOn is Listen on a socket the caller opened (a test that must
// know its port before the node starts, without the close-and-reopen race
// of picking a free one). Closing the Listener closes ln.
func ListenOn(ln net.Listener, local, peer string, sec Security, log *slog.Logger) (*Listener, error) {
	if err := sec.check(log); err != nil {
		return nil, err
	}
	return listener(ln, local, peer, sec, log), nil
}

func listener(ln net.Listener, local, peer string, sec Security, log *slog.Logger) *Listener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Listener{ln: ln, local: local, peer: peer, sec: sec, log: log}
}

// Addr is the listening address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Close stops listening.
func (l *Listener) Close() error { return l.ln.Close() }

// handshakeTimeout bounds TLS plus Hello: a client that connects and says
// nothing must not hold a goroutine.
const handshakeTimeout = 10 * time.Second

// Accept returns the next connection that passed TLS and the handshake.
// Refused connections are logged with the reason and closed; they never
// reach the caller.
func (l *Listener) Accept(ctx context.Context) (*Conn, error) {
	for {
		raw, err := l.ln.Accept()
		if err != nil {
			return nil, err
		}
		err = detectDeadPeer(raw)
		var c *Conn
		if err == nil {
			c, err = l.handshake(ctx, raw)
		}
		if err != nil {
			l.log.Warn("transport: refused connection", "from", raw.RemoteAddr().String(), "reason", err)
			raw.Close()
			continue
		}
		return c, nil
	}
}

func (l *Listener) handshake(ctx context.Context, raw net.Conn) (*Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	c := raw
	if l.sec.TLS != nil {
		tc := tls.Server(raw, l.sec.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("TLS: %w", err)
		}
		c = tc
	}
	h, err := ServerHandshake(ctx, c, l.local, func(h Hello) error {
		if l.peer != "" && h.Node != l.peer {
			return fmt.Errorf("node %q is not the configured peer %q", h.Node, l.peer)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return newConn(c, h.Node, h.Purpose, DataMaxPayload), nil
}
