package vip

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// validate checks the VIP's configuration without touching the system. Every
// error names the config key to fix.
func validate(p netip.Prefix, iface string) error {
	if err := validatePrefix(p); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := validateInterface(iface); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

func validatePrefix(p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("vip.address is not set or not a CIDR: set it to the address and prefix length clients use, e.g. 198.18.0.100/24")
	}
	a := p.Addr()
	switch {
	case a.Is4In6():
		return fmt.Errorf("vip.address %s is an IPv4-mapped IPv6 address: write it as IPv4 (%s/%d)", p, a.Unmap(), p.Bits()-96)
	case a.IsUnspecified():
		return fmt.Errorf("vip.address %s is the unspecified address: set the address clients use", p)
	case a.IsLoopback():
		return fmt.Errorf("vip.address %s is a loopback address: clients cannot reach it, use an address of the client network", p)
	case a.IsMulticast():
		return fmt.Errorf("vip.address %s is a multicast address: use a unicast address of the client network", p)
	case a.IsLinkLocalUnicast():
		return fmt.Errorf("vip.address %s is link-local: use an address of the client network", p)
	case a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("vip.address %s is the broadcast address: use a unicast address of the client network", p)
	}
	if a.Is4() && p.Bits() < 31 {
		if a == p.Masked().Addr() {
			return fmt.Errorf("vip.address %s is the network address of its prefix: use a host address inside it, e.g. %s/%d", p, p.Masked().Addr().Next(), p.Bits())
		}
		if a == broadcast(p) {
			return fmt.Errorf("vip.address %s is the broadcast address of its prefix: use a host address inside it", p)
		}
	}
	return nil
}

func validateInterface(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("vip.interface is not set: set it to the interface on the client network, e.g. eth0")
	case len(name) >= unix.IFNAMSIZ:
		return fmt.Errorf("vip.interface %q is longer than %d bytes, the kernel's limit: check the name with `ip link`", name, unix.IFNAMSIZ-1)
	case name == "." || name == "..":
		return fmt.Errorf("vip.interface %q is not an interface name: check the name with `ip link`", name)
	case strings.Contains(name, ":"):
		return fmt.Errorf("vip.interface %q is an address label, not an interface: use the part before the colon", name)
	case strings.ContainsAny(name, "/ \t\n"):
		return fmt.Errorf("vip.interface %q contains a slash or white space: check the name with `ip link`", name)
	}
	return nil
}

// broadcast returns the directed broadcast address of an IPv4 prefix: the
// host bits all ones, as `ip addr add ... brd +` sets it.
func broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	for i := 0; i < 4; i++ {
		b[i] |= byte(host >> (24 - 8*i))
	}
	return netip.AddrFrom4(b)
}

// toAdd is the address Up adds: the VIP with its prefix length, a broadcast
// address for IPv4 prefixes shorter than /31 (as the kernel's `brd +` would;
// /31 and /32 have none), no label, and for IPv6 no duplicate address
// detection, so that it is usable at once (see docs/vip.md).
func toAdd(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: ipNet(p)}
	if p.Addr().Is4() && p.Bits() < 31 {
		a.Broadcast = net.IP(broadcast(p).AsSlice())
	}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// prefixOf converts a netlink address to a netip.Prefix (host bits kept).
func prefixOf(a netlink.Addr) (netip.Prefix, bool) {
	if a.IPNet == nil {
		return netip.Prefix{}, false
	}
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := a.Mask.Size()
	if bits == 0 {
		return netip.Prefix{}, false
	}
	ip = ip.Unmap()
	if ip.Is4() && bits == 128 {
		ones -= 96
	}
	return netip.PrefixFrom(ip, ones), true
}

// find returns the interface address that is the VIP, or nil when the VIP's
// address is not on the interface. The same address with another prefix
// length is not ours to touch: find reports it as a conflict.
func find(addrs []netlink.Addr, p netip.Prefix) (*netlink.Addr, error) {
	for i := range addrs {
		have, ok := prefixOf(addrs[i])
		if !ok || have.Addr() != p.Addr() {
			continue
		}
		if have.Bits() != p.Bits() {
			return nil, fmt.Errorf("%w: %s is on the interface as %s, not %s: fix vip.address, or remove the address by hand if it is left over", ErrConflict, p.Addr(), have, p)
		}
		return &addrs[i], nil
	}
	return nil, nil
}

// dropsSecondaries returns the addresses the kernel would delete together
// with vip: an IPv4 primary address takes the secondaries of its subnet with
// it unless promote_secondaries is set.
func dropsSecondaries(addrs []netlink.Addr, vip netlink.Addr) []netip.Prefix {
	p, ok := prefixOf(vip)
	if !ok || !p.Addr().Is4() || vip.Flags&unix.IFA_F_SECONDARY != 0 {
		return nil
	}
	var out []netip.Prefix
	for _, a := range addrs {
		q, ok := prefixOf(a)
		if !ok || q == p || a.Flags&unix.IFA_F_SECONDARY == 0 {
			continue
		}
		if q.Bits() == p.Bits() && q.Masked() == p.Masked() {
			out = append(out, q)
		}
	}
	return out
}
