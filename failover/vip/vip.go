package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Errors callers can test for with errors.Is. Every returned error also says
// what to fix.
var (
	// ErrInvalid: the VIP's address or interface is malformed (config).
	ErrInvalid = errors.New("invalid VIP")
	// ErrInterfaceNotFound: vip.interface does not exist on this node.
	ErrInterfaceNotFound = errors.New("no such interface")
	// ErrInterfaceDown: the interface is administratively down, so the
	// VIP could not be announced (Up does not bring interfaces up).
	ErrInterfaceDown = errors.New("interface is down")
	// ErrConflict: the address is on the interface in a form that is not
	// ours (another prefix length), or IPv6 duplicate address detection
	// failed for it because another host on the link holds it.
	ErrConflict = errors.New("address conflict")
	// ErrWouldRemoveOthers: removing the VIP would make the kernel remove
	// other addresses as well (IPv4 secondaries of the VIP, with
	// promote_secondaries off).
	ErrWouldRemoveOthers = errors.New("removing the VIP would remove other addresses")
)

// VIP is a virtual IP address on one interface of this node. The zero Log
// discards log output. Methods act on the network namespace of the calling
// thread.
type VIP struct {
	Prefix    netip.Prefix // address and prefix length, e.g. 198.18.0.100/24
	Interface string       // e.g. eth0
	Log       *slog.Logger

	fwdMu      sync.Mutex
	forwarding map[string]string // forwarding values RouteForPeer changed, by interface
}

func (v *VIP) String() string { return fmt.Sprintf("vip %s on %s", v.Prefix, v.Interface) }

func (v *VIP) log() *slog.Logger {
	if v.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return v.Log.With("vip", v.Prefix.String(), "interface", v.Interface)
}

// Validate checks the address and interface name without touching the
// system. Up, Down and Held call it first.
func (v *VIP) Validate() error {
	if err := validate(v.Prefix, v.Interface); err != nil {
		return fmt.Errorf("%s: %w", v, err)
	}
	return nil
}

// Up puts the VIP on its interface if it is missing, then announces it
// (gratuitous ARP, or an unsolicited neighbour advertisement for IPv6) so
// that clients and switches send its traffic here. Calling it again is safe
// and announces again. It never changes any other address. An error after
// the address was added leaves it in place; calling Up again retries the
// announcement.
func (v *VIP) Up(ctx context.Context) error {
	start := time.Now()
	if err := v.Validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: up: %w", v, err)
	}
	link, err := v.link()
	if err != nil {
		return err
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("%s: %w: bring it up (ip link set %s up) or fix vip.interface", v, ErrInterfaceDown, v.Interface)
	}
	cur, _, err := v.current(link)
	if err != nil {
		return err
	}
	if v.Prefix.Addr().Is4() {
		// This node may have routed the VIP for the peer until now; its
		// proxy entry and route go (the address below wins over them, but
		// would leave them behind once it goes).
		if err := netlink.NeighDel(v.proxyEntry(link)); err != nil && !gone(err) {
			v.log().Warn("cannot remove the proxy neighbour entry of the vip", "err", err)
		}
		if err := netlink.RouteDel(&netlink.Route{Dst: ipNet(netip.PrefixFrom(v.Prefix.Addr(), 32))}); err != nil && !gone(err) {
			v.log().Warn("cannot remove the route of the vip via the peer", "err", err)
		}
	}
	added := false
	if cur == nil {
		if err := netlink.AddrAdd(link, toAdd(v.Prefix)); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("%s: add address: %w%s", v, err, permHint(err, "CAP_NET_ADMIN"))
		}
		added = true
	}
	if v.Prefix.Addr().Is6() {
		if err := v.waitUsable(ctx, link); err != nil {
			return err
		}
	}
	sent, err := v.announce(ctx, link)
	if err != nil {
		return err
	}
	v.log().Info("vip up", "added", added, "announcements", sent, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// Down removes the VIP from its interface if it is there; absent is
// success. It refuses (ErrWouldRemoveOthers) rather than let the kernel
// delete other addresses along with it.
func (v *VIP) Down(ctx context.Context) error {
	start := time.Now()
	if err := v.Validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: down: %w", v, err)
	}
	link, err := v.link()
	if err != nil {
		return err
	}
	// Replies from the VIP through the peer end with it.
	if err := v.UnrouteViaPeer(ctx); err != nil {
		return err
	}
	cur, addrs, err := v.current(link)
	if err != nil {
		return err
	}
	if cur == nil {
		v.log().Debug("vip already down")
		return nil
	}
	if others := dropsSecondaries(addrs, *cur); len(others) > 0 {
		on, err := promoteSecondaries(v.Interface)
		if err != nil {
			return fmt.Errorf("%s: %w", v, err)
		}
		if !on {
			return fmt.Errorf("%s: %w: it is the primary address of its subnet and the kernel would delete %s with it: set net.ipv4.conf.%s.promote_secondaries=1 (or .all.), or give the interface its own address in that subnet before the VIP",
				v, ErrWouldRemoveOthers, joinPrefixes(others), v.Interface)
		}
	}
	if err := netlink.AddrDel(link, &netlink.Addr{IPNet: ipNet(v.Prefix)}); err != nil &&
		!errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%s: remove address: %w%s", v, err, permHint(err, "CAP_NET_ADMIN"))
	}
	v.log().Info("vip down", "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// Held reports whether the VIP is on its interface. The same address with a
// different prefix length is an error (ErrConflict), not "held".
func (v *VIP) Held(ctx context.Context) (bool, error) {
	if err := v.Validate(); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("%s: held: %w", v, err)
	}
	link, err := v.link()
	if err != nil {
		return false, err
	}
	cur, _, err := v.current(link)
	return cur != nil, err
}

func (v *VIP) link() (netlink.Link, error) {
	link, err := netlink.LinkByName(v.Interface)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf) || errors.Is(err, unix.ENODEV):
		return nil, fmt.Errorf("%s: interface %s: %w: check vip.interface (`ip link` lists the interfaces)", v, v.Interface, ErrInterfaceNotFound)
	case err != nil:
		return nil, fmt.Errorf("%s: look up interface: %w", v, err)
	}
	return link, nil
}

// current lists the interface's addresses of the VIP's family and returns
// the VIP's entry among them (nil if absent).
func (v *VIP) current(link netlink.Link) (*netlink.Addr, []netlink.Addr, error) {
	family := netlink.FAMILY_V4
	if v.Prefix.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	var addrs []netlink.Addr
	var err error
	for range 3 { // a dump interrupted by a concurrent change is retried
		if addrs, err = netlink.AddrList(link, family); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: list addresses: %w", v, err)
	}
	cur, err := find(addrs, v.Prefix)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", v, err)
	}
	return cur, addrs, nil
}

// waitUsable waits, bounded, until an IPv6 VIP is no longer tentative. Up
// adds it without duplicate address detection, so this only waits when the
// address was added by someone else; a failed detection is a conflict.
func (v *VIP) waitUsable(ctx context.Context, link netlink.Link) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		cur, _, err := v.current(link)
		switch {
		case err != nil:
			return err
		case cur == nil:
			return fmt.Errorf("%s: the address disappeared while it was being brought up: is another process managing it?", v)
		case cur.Flags&unix.IFA_F_DADFAILED != 0:
			return fmt.Errorf("%s: %w: duplicate address detection failed, another host on the link holds %s: make sure the peer released it, then remove it here (ip addr del %s dev %s) and retry",
				v, ErrConflict, v.Prefix.Addr(), v.Prefix, v.Interface)
		case cur.Flags&unix.IFA_F_TENTATIVE == 0:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: address still tentative (duplicate address detection running): %w", v, ctx.Err())
		case <-tick.C:
		}
	}
}

// promoteSecondaries reads the kernel's setting: either the interface's or
// the "all" value turns it on.
func promoteSecondaries(iface string) (bool, error) {
	for _, dev := range []string{"all", iface} {
		path := "/proc/sys/net/ipv4/conf/" + dev + "/promote_secondaries"
		b, err := os.ReadFile(path)
		if err != nil {
			return false, fmt.Errorf("read %s: %w", path, err)
		}
		if strings.TrimSpace(string(b)) != "0" {
			return true, nil
		}
	}
	return false, nil
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// permHint adds what is missing when the kernel said no.
func permHint(err error, capability string) string {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return ": run as root or with " + capability
	}
	return ""
}
