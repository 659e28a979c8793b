package probe

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// ErrNoICMPSocket means neither an unprivileged ping socket nor a raw socket
// could be opened, so ICMP targets can never answer on this machine.
var ErrNoICMPSocket = errors.New("cannot open an ICMP socket")

// IANA protocol numbers, as icmp.ParseMessage wants them.
const (
	protoICMP   = 1
	protoICMPv6 = 58
)

// pingICMP sends one echo request to host and waits for its reply until ctx
// ends.
func pingICMP(ctx context.Context, host string) error {
	ip, err := resolve(ctx, host)
	if err != nil {
		return err
	}
	v6 := ip.Is6()
	conn, raw, err := listenICMP(v6)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	// A cancelled ctx without a deadline must still wake the read below.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	// Raw sockets see every ICMP packet of the host, including our own
	// request on loopback and other probes' replies, so a reply must match
	// id, seq and a random payload. Ping sockets get their replies only, but
	// the kernel rewrites the id, so it is not compared there.
	var nonce [20]byte
	rand.Read(nonce[:])
	id := int(binary.BigEndian.Uint16(nonce[0:2]))
	seq := int(binary.BigEndian.Uint16(nonce[2:4]))
	token := nonce[4:]
	var reqType, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	proto := protoICMP
	if v6 {
		reqType, replyType, proto = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply, protoICMPv6
	}
	// For ICMPv6 the kernel fills in the checksum (it needs the IPv6
	// pseudo-header), so Marshal without one is right for both families.
	req, err := (&icmp.Message{Type: reqType, Body: &icmp.Echo{ID: id, Seq: seq, Data: token}}).Marshal(nil)
	if err != nil {
		return fmt.Errorf("build echo request: %w", err)
	}
	var dst net.Addr = &net.UDPAddr{IP: ip.AsSlice(), Zone: ip.Zone()}
	if raw {
		dst = &net.IPAddr{IP: ip.AsSlice(), Zone: ip.Zone()}
	}
	if _, err := conn.WriteTo(req, dst); err != nil {
		return fmt.Errorf("send echo request to %s: %w", ip, err)
	}

	buf := make([]byte, 1500)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			if derr := deadlineErr(ctx, err); derr != nil {
				return fmt.Errorf("no echo reply from %s: %w", ip, derr)
			}
			return fmt.Errorf("read echo reply: %w", err)
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != replyType {
			continue
		}
		echo, ok := m.Body.(*icmp.Echo)
		if !ok || echo.Seq != seq || !bytes.Equal(echo.Data, token) || (raw && echo.ID != id) {
			continue
		}
		if src := addrIP(from); src != ip.WithZone("") {
			continue
		}
		return nil
	}
}

// listenICMP opens an unprivileged ping socket, or a raw socket when the
// kernel does not allow ping sockets to this group (net.ipv4.ping_group_range
// defaults to nobody). raw tells which, since they address differently.
func listenICMP(v6 bool) (conn *icmp.PacketConn, raw bool, err error) {
	dgram, rawNet, wildcard := "udp4", "ip4:icmp", "0.0.0.0"
	if v6 {
		dgram, rawNet, wildcard = "udp6", "ip6:ipv6-icmp", "::"
	}
	conn, derr := icmp.ListenPacket(dgram, wildcard)
	if derr == nil {
		return conn, false, nil
	}
	conn, rerr := icmp.ListenPacket(rawNet, wildcard)
	if rerr == nil {
		return conn, true, nil
	}
	return nil, false, fmt.Errorf("%w: ping socket: %w (allow the group in net.ipv4.ping_group_range); raw socket: %w (needs root or CAP_NET_RAW)",
		ErrNoICMPSocket, derr, rerr)
}

// resolve turns host into one address: a literal as is, a name through the
// resolver, bounded by ctx.
func resolve(ctx context.Context, host string) (netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap(), nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("resolve %s: %w", host, err)
	}
	if len(ips) == 0 {
		return netip.Addr{}, fmt.Errorf("resolve %s: no addresses", host)
	}
	return ips[0].Unmap(), nil
}

func addrIP(a net.Addr) netip.Addr {
	var ip net.IP
	switch a := a.(type) {
	case *net.IPAddr:
		ip = a.IP
	case *net.UDPAddr:
		ip = a.IP
	}
	out, _ := netip.AddrFromSlice(ip)
	return out.Unmap()
}
