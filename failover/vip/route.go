package vip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Routing the VIP through the peer (docs/failover.md, "Public network
// lost: route through the peer"). When the active's public network is
// down but the heartbeat link is up, the passive answers ARP for the VIP
// on its own public interface and forwards the VIP's traffic over the link
// to the active, which sends its replies back the same way. The active
// keeps serving, clients keep their TCP connections, and nothing moves.
//
// IPv4 only: the passive answers ARP with a proxy neighbour entry, and
// IPv6 would need proxy NDP, not done.

// ViaPeerTable and ViaPeerPriority are the routing table and rule
// priority the active uses while its replies go through the peer. They
// are fixed so an admin can find them (ip rule, ip route show table
// 7717) and a restart can remove what a crashed run left.
const (
	ViaPeerTable    = 7717
	ViaPeerPriority = 7717
)

// ErrRouteIPv6: routing through the peer supports IPv4 VIPs only.
var ErrRouteIPv6 = errors.New("routing the VIP through the peer supports IPv4 VIPs only")

func (v *VIP) routable(gw netip.Addr) error {
	if err := v.Validate(); err != nil {
		return err
	}
	if !v.Prefix.Addr().Is4() {
		return fmt.Errorf("%s: %w: set vip.public_down: handover", v, ErrRouteIPv6)
	}
	if !gw.Is4() {
		return fmt.Errorf("%s: the peer's link address %s is not IPv4: routing through the peer needs one (peer.link_address)", v, gw)
	}
	return nil
}

// viaPeerRule is the active's rule: packets from the VIP use the table
// whose default route is the peer's link address.
func (v *VIP) viaPeerRule() *netlink.Rule {
	r := netlink.NewRule()
	r.Family = netlink.FAMILY_V4
	r.Src = ipNet(netip.PrefixFrom(v.Prefix.Addr(), 32))
	r.Table = ViaPeerTable
	r.Priority = ViaPeerPriority
	return r
}

// gatewayLink is the interface through which gw is reached (the link).
func gatewayLink(gw netip.Addr) (int, error) {
	rs, err := netlink.RouteGet(net.IP(gw.AsSlice()))
	if err != nil {
		return 0, fmt.Errorf("no route to the peer's link address %s: %w", gw, err)
	}
	if len(rs) == 0 || rs[0].LinkIndex == 0 {
		return 0, fmt.Errorf("no route to the peer's link address %s", gw)
	}
	return rs[0].LinkIndex, nil
}

// RouteViaPeer makes this node's replies from the VIP leave through gw,
// the peer's link address, while its public interface is down: a rule
// sends packets from the VIP to table ViaPeerTable, whose default route
// is gw. The VIP stays on its interface (the kernel accepts packets for a
// local address on any interface). Calling it again is safe.
func (v *VIP) RouteViaPeer(ctx context.Context, gw netip.Addr) error {
	if err := v.routable(gw); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	start := time.Now()
	idx, err := gatewayLink(gw)
	if err != nil {
		return fmt.Errorf("%s: route via the peer: %w", v, err)
	}
	rt := &netlink.Route{Table: ViaPeerTable, LinkIndex: idx, Gw: net.IP(gw.AsSlice()),
		Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}}
	if err := netlink.RouteReplace(rt); err != nil {
		return fmt.Errorf("%s: add the default route via %s to table %d: %w%s", v, gw, ViaPeerTable, err, permHint(err, "CAP_NET_ADMIN"))
	}
	if err := netlink.RuleAdd(v.viaPeerRule()); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%s: add the rule from %s lookup %d: %w%s", v, v.Prefix.Addr(), ViaPeerTable, err, permHint(err, "CAP_NET_ADMIN"))
	}
	v.log().Info("vip routed via the peer", "gateway", gw, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// UnrouteViaPeer removes what RouteViaPeer added; absent is success.
func (v *VIP) UnrouteViaPeer(ctx context.Context) error {
	if err := v.Validate(); err != nil {
		return err
	}
	if !v.Prefix.Addr().Is4() {
		return nil
	}
	var errs []error
	for range 4 { // a rule added twice by an older kernel: remove every copy
		err := netlink.RuleDel(v.viaPeerRule())
		if err != nil {
			// A kernel without policy routing has no rule to remove (and
			// Down, which calls this, must still work there).
			if !gone(err) && !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EAFNOSUPPORT) {
				errs = append(errs, fmt.Errorf("%s: remove the rule from %s lookup %d: %w%s", v, v.Prefix.Addr(), ViaPeerTable, err, permHint(err, "CAP_NET_ADMIN")))
			}
			break
		}
	}
	rt := &netlink.Route{Table: ViaPeerTable, Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}}
	if err := netlink.RouteDel(rt); err != nil && !gone(err) {
		errs = append(errs, fmt.Errorf("%s: remove the default route of table %d: %w%s", v, ViaPeerTable, err, permHint(err, "CAP_NET_ADMIN")))
	}
	return errors.Join(errs...)
}

// gone: the kernel says there was nothing to delete.
func gone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.EADDRNOTAVAIL)
}

// RouteForPeer makes this node (the passive) take the VIP's traffic for
// the peer: it answers ARP for the VIP on the VIP's interface (a proxy
// neighbour entry), routes the VIP to gw (the peer's link address), turns
// on forwarding on both interfaces, and announces the VIP with this
// node's MAC so clients send here at once. The VIP itself is not added.
// Calling it again is safe and announces again.
func (v *VIP) RouteForPeer(ctx context.Context, gw netip.Addr) error {
	if err := v.routable(gw); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	start := time.Now()
	link, err := v.link()
	if err != nil {
		return err
	}
	idx, err := gatewayLink(gw)
	if err != nil {
		return fmt.Errorf("%s: route for the peer: %w", v, err)
	}
	if idx == link.Attrs().Index {
		return fmt.Errorf("%s: the peer's link address %s is reached through %s, the VIP's own interface: routing through the peer needs a separate heartbeat link", v, gw, v.Interface)
	}
	gwLink, err := netlink.LinkByIndex(idx)
	if err != nil {
		return fmt.Errorf("%s: the interface towards %s: %w", v, gw, err)
	}
	// Forwarding first: a client that follows the announcement at once
	// finds the route working.
	for _, dev := range []string{v.Interface, gwLink.Attrs().Name} {
		if err := v.setForwarding(dev); err != nil {
			return err
		}
	}
	rt := &netlink.Route{LinkIndex: idx, Dst: ipNet(netip.PrefixFrom(v.Prefix.Addr(), 32)), Gw: net.IP(gw.AsSlice())}
	if err := netlink.RouteReplace(rt); err != nil {
		return fmt.Errorf("%s: route %s via %s: %w%s", v, v.Prefix.Addr(), gw, err, permHint(err, "CAP_NET_ADMIN"))
	}
	if err := netlink.NeighSet(v.proxyEntry(link)); err != nil {
		return fmt.Errorf("%s: answer ARP for %s (proxy neighbour entry): %w%s", v, v.Prefix.Addr(), err, permHint(err, "CAP_NET_ADMIN"))
	}
	sent, err := v.announce(ctx, link)
	if err != nil {
		return err
	}
	v.log().Info("routing the vip for the peer", "gateway", gw, "announcements", sent, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func (v *VIP) proxyEntry(link netlink.Link) *netlink.Neigh {
	return &netlink.Neigh{LinkIndex: link.Attrs().Index, Family: netlink.FAMILY_V4, Flags: netlink.NTF_PROXY, IP: net.IP(v.Prefix.Addr().AsSlice())}
}

// UnrouteForPeer removes what RouteForPeer added and puts back the
// forwarding settings it changed; absent is success. After a restart it
// does not know them, and leaves forwarding as it is.
func (v *VIP) UnrouteForPeer(ctx context.Context, gw netip.Addr) error {
	if err := v.Validate(); err != nil {
		return err
	}
	if !v.Prefix.Addr().Is4() {
		return nil
	}
	link, err := v.link()
	if err != nil {
		return err
	}
	var errs []error
	if err := netlink.NeighDel(v.proxyEntry(link)); err != nil && !gone(err) {
		errs = append(errs, fmt.Errorf("%s: remove the proxy neighbour entry: %w%s", v, err, permHint(err, "CAP_NET_ADMIN")))
	}
	if gw.Is4() {
		rt := &netlink.Route{Dst: ipNet(netip.PrefixFrom(v.Prefix.Addr(), 32)), Gw: net.IP(gw.AsSlice())}
		if err := netlink.RouteDel(rt); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("%s: remove the route of %s via %s: %w%s", v, v.Prefix.Addr(), gw, err, permHint(err, "CAP_NET_ADMIN")))
		}
	}
	v.fwdMu.Lock()
	saved := v.forwarding
	v.forwarding = nil
	v.fwdMu.Unlock()
	for dev, old := range saved {
		if err := writeForwarding(dev, old); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", v, err))
		}
	}
	return errors.Join(errs...)
}

// setForwarding turns on IPv4 forwarding on dev, remembering the value it
// had for UnrouteForPeer.
func (v *VIP) setForwarding(dev string) error {
	path := forwardingPath(dev)
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: read %s: %w", v, path, err)
	}
	old := strings.TrimSpace(string(b))
	if old == "1" {
		return nil
	}
	if err := writeForwarding(dev, "1"); err != nil {
		return fmt.Errorf("%s: %w", v, err)
	}
	v.fwdMu.Lock()
	if v.forwarding == nil {
		v.forwarding = map[string]string{}
	}
	if _, ok := v.forwarding[dev]; !ok {
		v.forwarding[dev] = old
	}
	v.fwdMu.Unlock()
	return nil
}

func forwardingPath(dev string) string { return "/proc/sys/net/ipv4/conf/" + dev + "/forwarding" }

func writeForwarding(dev, val string) error {
	path := forwardingPath(dev)
	if err := os.WriteFile(path, []byte(val+"\n"), 0o644); err != nil {
		return fmt.Errorf("set %s to %s: %w%s", path, val, err, permHint(err, "CAP_NET_ADMIN (and write access to /proc/sys)"))
	}
	return nil
}

// Announce announces the VIP again if this node holds it (the end of a
// spell of routing through the peer: clients go back to this node's MAC).
func (v *VIP) Announce(ctx context.Context) error {
	if err := v.Validate(); err != nil {
		return err
	}
	link, err := v.link()
	if err != nil {
		return err
	}
	cur, _, err := v.current(link)
	if err != nil || cur == nil {
		return err
	}
	sent, err := v.announce(ctx, link)
	v.log().Debug("vip announced again", "announcements", sent, "err", err)
	return err
}
