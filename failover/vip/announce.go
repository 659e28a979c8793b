package vip

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Announcements are sent in a few rounds, spaced apart, so that one lost
// frame or a switch port still coming up does not leave clients on the old
// MAC; the total is bounded (about 200 ms).
const (
	announceRounds   = 3
	announceInterval = 100 * time.Millisecond
)

// round sends one round of announcements and says how many frames it sent.
type round interface {
	send() (int, error)
	Close() error
}

// pace runs rounds of r, interval apart, stopping early when ctx ends.
func pace(ctx context.Context, r round, rounds int, interval time.Duration) (int, error) {
	sent := 0
	for i := 0; i < rounds; i++ {
		if i > 0 {
			t := time.NewTimer(interval)
			select {
			case <-ctx.Done():
				t.Stop()
				return sent, ctx.Err()
			case <-t.C:
			}
		}
		n, err := r.send()
		sent += n
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

// announce tells the link that the VIP is here now. Interfaces without ARP
// (NOARP, loopback) have no caches to update and are skipped.
func (v *VIP) announce(ctx context.Context, link netlink.Link) (int, error) {
	attrs := link.Attrs()
	if attrs.RawFlags&unix.IFF_NOARP != 0 || attrs.Flags&net.FlagLoopback != 0 {
		v.log().Info("interface does not use ARP or neighbour discovery; not announcing the vip")
		return 0, nil
	}
	if len(attrs.HardwareAddr) != 6 {
		return 0, fmt.Errorf("%s: interface has hardware address %q; announcing the VIP supports Ethernet interfaces only: fix vip.interface", v, attrs.HardwareAddr)
	}
	ifi := &net.Interface{Index: attrs.Index, MTU: attrs.MTU, Name: attrs.Name, HardwareAddr: attrs.HardwareAddr, Flags: attrs.Flags}
	var r round
	var err error
	if v.Prefix.Addr().Is4() {
		r, err = openGARP(ifi, v.Prefix.Addr())
	} else {
		r, err = openNA(ifi, v.Prefix.Addr())
	}
	if err != nil {
		return 0, fmt.Errorf("%s: open announcement socket: %w%s", v, err, permHint(err, "CAP_NET_RAW"))
	}
	defer r.Close()
	n, err := pace(ctx, r, announceRounds, announceInterval)
	if err != nil {
		return n, fmt.Errorf("%s: announce (after %d frames): %w", v, n, err)
	}
	return n, nil
}
