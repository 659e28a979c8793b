package vip

import (
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
)

// garpPackets builds one round of gratuitous ARP for ip at mac, both kinds
// in common use, each broadcast:
//   - a request "who has ip? tell ip at mac" (an ARP announcement, RFC
//     5227): sender and target protocol address both ip, target hardware
//     address zero;
//   - a reply "ip is at mac" with sender and target both (ip, mac). Linux
//     only treats a reply as gratuitous when its target hardware address
//     equals the sender's, so it must not be the broadcast address.
//
// Hosts and switches that ignore one kind usually honour the other.
func garpPackets(mac net.HardwareAddr, ip netip.Addr) ([]*arp.Packet, error) {
	req, err := arp.NewPacket(arp.OperationRequest, mac, ip, make(net.HardwareAddr, len(mac)), ip)
	if err != nil {
		return nil, err
	}
	rep, err := arp.NewPacket(arp.OperationReply, mac, ip, mac, ip)
	if err != nil {
		return nil, err
	}
	return []*arp.Packet{req, rep}, nil
}

type garp struct {
	c    *arp.Client
	pkts []*arp.Packet
}

func openGARP(ifi *net.Interface, ip netip.Addr) (*garp, error) {
	pkts, err := garpPackets(ifi.HardwareAddr, ip)
	if err != nil {
		return nil, err
	}
	c, err := arp.Dial(ifi)
	if err != nil {
		return nil, err
	}
	return &garp{c: c, pkts: pkts}, nil
}

func (g *garp) send() (int, error) {
	for i, p := range g.pkts {
		if err := g.c.WriteTo(p, ethernet.Broadcast); err != nil {
			return i, err
		}
	}
	return len(g.pkts), nil
}

func (g *garp) Close() error { return g.c.Close() }
