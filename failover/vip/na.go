package vip

import (
	"net"
	"net/netip"

	"github.com/mdlayher/ndp"
)

// unsolicitedNA is the IPv6 counterpart of gratuitous ARP (RFC 4861 7.2.6):
// a neighbour advertisement for ip, not solicited, with the override flag so
// that receivers replace the link-layer address they cached, and our MAC in
// the target link-layer address option. It goes to all nodes (ff02::1).
func unsolicitedNA(mac net.HardwareAddr, ip netip.Addr) *ndp.NeighborAdvertisement {
	return &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: ip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}},
	}
}

type na struct {
	c *ndp.Conn
	m ndp.Message
}

// openNA binds to the VIP itself, so that it is the advertisement's source
// address; ndp sets the hop limit of 255 receivers require.
func openNA(ifi *net.Interface, ip netip.Addr) (*na, error) {
	c, _, err := ndp.Listen(ifi, ndp.Addr(ip.String()))
	if err != nil {
		return nil, err
	}
	return &na{c: c, m: unsolicitedNA(ifi.HardwareAddr, ip)}, nil
}

func (n *na) send() (int, error) {
	if err := n.c.WriteTo(n.m, nil, netip.IPv6LinkLocalAllNodes()); err != nil {
		return 0, err
	}
	return 1, nil
}

func (n *na) Close() error { return n.c.Close() }
