package vip

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Conn is a client's TCP connection to the VIP, as the node that served it
// sees it: Local is the VIP and a server port, Remote the client.
type Conn struct {
	Local  netip.AddrPort `json:"local"`
	Remote netip.AddrPort `json:"remote"`
}

// MaxConns bounds what Connections returns: a handover carries the list
// to the peer in one small message.
const MaxConns = 4096

// Connections lists the established TCP connections to the VIP's address
// on this node (sock_diag, in the calling thread's network namespace).
// IPv4 clients of a dual-stack listener (smbd on [::]:445) show up as
// IPv4-mapped IPv6 sockets; they are reported as IPv4.
func (v *VIP) Connections() ([]Conn, error) {
	if err := v.Validate(); err != nil {
		return nil, err
	}
	addr := v.Prefix.Addr()
	var out []Conn
	var errs []error
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		socks, err := netlink.SocketDiagTCP(fam)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			errs = append(errs, fmt.Errorf("listing TCP sockets (family %d): %w", fam, err))
			continue
		}
		for _, s := range socks {
			if s.State != unix.BPF_TCP_ESTABLISHED {
				continue
			}
			l, lok := netip.AddrFromSlice(s.ID.Source)
			r, rok := netip.AddrFromSlice(s.ID.Destination)
			if !lok || !rok || l.Unmap() != addr {
				continue
			}
			out = append(out, Conn{
				Local:  netip.AddrPortFrom(l.Unmap(), s.ID.SourcePort),
				Remote: netip.AddrPortFrom(r.Unmap(), s.ID.DestinationPort),
			})
			if len(out) == MaxConns {
				return out, nil
			}
		}
	}
	if len(out) == 0 && len(errs) > 0 {
		return nil, fmt.Errorf("%s: %w", v, errors.Join(errs...))
	}
	return out, nil
}

// Tickles are sent in a few rounds: the client's kernel answers at most
// one unacceptable segment per connection every 500 ms
// (net.ipv4.tcp_invalid_ratelimit), and one frame may be lost.
const (
	tickleRounds   = 3
	tickleInterval = 300 * time.Millisecond
)

// Tickle makes clients notice at once that the connections they held to
// the VIP on the other node are gone, instead of at their next
// retransmission, which TCP's backoff puts seconds to minutes after the
// VIP moved (an SMB copy that noticed 30 s late). It is CTDB's "tickle
// ACK": a bare ACK with sequence numbers 0 from the VIP's side of each
// connection. The client's kernel answers it with an ACK that carries the
// connection's real numbers; this node has no such socket, so its kernel
// answers that with a reset the client accepts, and the client's
// application gets ECONNRESET and reconnects to the VIP, now here. Only
// connections whose Local is this VIP's address are tickled. It needs
// CAP_NET_RAW and the VIP up on this node.
func (v *VIP) Tickle(ctx context.Context, conns []Conn) (int, error) {
	if err := v.Validate(); err != nil {
		return 0, err
	}
	addr := v.Prefix.Addr()
	mine := ours(addr, conns)
	if len(mine) == 0 {
		return 0, nil
	}
	network := "ip4:tcp"
	if addr.Is6() {
		network = "ip6:tcp"
	}
	pc, err := net.ListenPacket(network, addr.String())
	if err != nil {
		return 0, fmt.Errorf("%s: open a raw TCP socket for tickle ACKs: %w%s", v, err, permHint(err, "CAP_NET_RAW"))
	}
	defer pc.Close()
	r := &tickler{pc: pc, conns: mine}
	n, err := pace(ctx, r, tickleRounds, tickleInterval)
	if err != nil {
		return n, fmt.Errorf("%s: tickle ACKs (after %d): %w", v, n, err)
	}
	return n, nil
}

// ours is what Tickle sends to: the connections whose local address is
// addr and whose client is of its family, each once, at most MaxConns (the
// list comes from the peer).
func ours(addr netip.Addr, conns []Conn) []Conn {
	var mine []Conn
	seen := map[Conn]bool{}
	for _, c := range conns {
		if len(mine) == MaxConns {
			break
		}
		if c.Local.Addr() != addr || c.Remote.Addr().Is4() != addr.Is4() || !c.Remote.IsValid() || c.Remote.Port() == 0 || seen[c] {
			continue
		}
		seen[c] = true
		mine = append(mine, c)
	}
	return mine
}

type tickler struct {
	pc    net.PacketConn
	conns []Conn
}

func (t *tickler) send() (int, error) {
	n := 0
	for _, c := range t.conns {
		seg := tickleSegment(c.Local, c.Remote)
		if _, err := t.pc.WriteTo(seg, &net.IPAddr{IP: c.Remote.Addr().AsSlice()}); err != nil {
			return n, fmt.Errorf("to %s: %w", c.Remote, err)
		}
		n++
	}
	return n, nil
}

func (t *tickler) Close() error { return nil } // pc is closed by Tickle

// tickleSegment is a 20-byte TCP header from local to remote with only ACK
// set, sequence and acknowledgment numbers 0, and the checksum over the
// IPv4 or IPv6 pseudo-header (a raw socket's kernel adds the IP header but
// not the TCP checksum).
func tickleSegment(local, remote netip.AddrPort) []byte {
	seg := make([]byte, 20)
	binary.BigEndian.PutUint16(seg[0:], local.Port())
	binary.BigEndian.PutUint16(seg[2:], remote.Port())
	// seq and ack stay 0
	seg[12] = 5 << 4 // data offset: 5 words, no options
	seg[13] = 0x10   // ACK
	binary.BigEndian.PutUint16(seg[14:], 1024)
	binary.BigEndian.PutUint16(seg[16:], tcpChecksum(local.Addr(), remote.Addr(), seg))
	return seg
}

// tcpChecksum is the Internet checksum of the pseudo-header and seg (whose
// checksum field must be 0).
func tcpChecksum(src, dst netip.Addr, seg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src.AsSlice())
	add(dst.AsSlice())
	if src.Is4() {
		sum += unix.IPPROTO_TCP + uint32(len(seg))
	} else {
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(seg)))
		add(l[:])
		sum += unix.IPPROTO_TCP
	}
	add(seg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
