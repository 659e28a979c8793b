package vip

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// The tickle is a bare ACK: ports as given, sequence and acknowledgment
// numbers 0, data offset 5, and a checksum a receiver accepts (summing the
// pseudo-header and the segment, checksum included, gives 0xffff).
func TestTickleSegment(t *testing.T) {
	for _, c := range []struct{ local, remote string }{
		{"198.18.0.100:445", "198.18.0.50:40112"},
		{"[2001:db8::100]:2049", "[2001:db8::50]:871"},
	} {
		l, r := netip.MustParseAddrPort(c.local), netip.MustParseAddrPort(c.remote)
		seg := tickleSegment(l, r)
		if len(seg) != 20 || binary.BigEndian.Uint16(seg[0:]) != l.Port() || binary.BigEndian.Uint16(seg[2:]) != r.Port() ||
			binary.BigEndian.Uint32(seg[4:]) != 0 || binary.BigEndian.Uint32(seg[8:]) != 0 || seg[12] != 0x50 || seg[13] != 0x10 {
			t.Fatalf("%s -> %s: segment % x", l, r, seg)
		}
		sum := binary.BigEndian.Uint16(seg[16:])
		zeroed := append([]byte(nil), seg...)
		zeroed[16], zeroed[17] = 0, 0
		if got := tcpChecksum(l.Addr(), r.Addr(), zeroed); got != sum {
			t.Fatalf("%s -> %s: checksum %#04x, recomputed %#04x", l, r, sum, got)
		}
		// Verifying: the checksum over the segment with its checksum in is 0.
		if v := tcpChecksum(l.Addr(), r.Addr(), seg); v != 0 {
			t.Fatalf("%s -> %s: verifying sum %#04x, want 0", l, r, v)
		}
	}
	// A value computed outside Go (the pseudo-header's and the header's
	// 16-bit words summed, folded and inverted in Python): 10.0.0.1:80 ->
	// 10.0.0.2:1234, ACK, window 1024.
	seg := tickleSegment(netip.MustParseAddrPort("10.0.0.1:80"), netip.MustParseAddrPort("10.0.0.2:1234"))
	if got := binary.BigEndian.Uint16(seg[16:]); got != 0x92b0 {
		t.Errorf("checksum %#04x, want 0x92b0", got)
	}
}

// Tickle sends only to connections of its own address and family, each
// once, at most MaxConns of them: the list comes from the peer.
func TestTickleOnlyOurConnections(t *testing.T) {
	vip := netip.MustParseAddr("198.18.0.100")
	c := func(local, remote string) Conn {
		return Conn{Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort(remote)}
	}
	got := ours(vip, []Conn{
		c("198.18.0.100:445", "198.18.0.50:40001"),
		c("198.18.0.100:445", "198.18.0.50:40001"),   // twice
		c("198.18.0.1:445", "198.18.0.50:40002"),     // the node's own address
		c("198.18.0.100:2049", "[2001:db8::50]:871"), // another family
		c("198.18.0.100:2049", "198.18.0.50:0"),      // no port
		c("198.18.0.100:2049", "198.18.0.50:871"),
	})
	want := []Conn{c("198.18.0.100:445", "198.18.0.50:40001"), c("198.18.0.100:2049", "198.18.0.50:871")}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("ours: %v, want %v", got, want)
	}
	many := make([]Conn, MaxConns+10)
	for i := range many {
		many[i] = Conn{Local: netip.AddrPortFrom(vip, 445), Remote: netip.AddrPortFrom(netip.MustParseAddr("198.18.0.50"), uint16(1000+i))}
	}
	if n := len(ours(vip, many)); n != MaxConns {
		t.Fatalf("%d of %d connections kept, want at most %d", n, len(many), MaxConns)
	}
}
