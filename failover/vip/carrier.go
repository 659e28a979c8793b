package vip

import (
	"context"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// WatchCarrier reports the carrier of interface iface: once at the start,
// then at every change, until ctx ends. The kernel tells netlink
// listeners when a cable is pulled, so the node knows its public network
// is gone at once instead of after a threshold of tiebreaker silence.
func WatchCarrier(ctx context.Context, iface string, report func(up bool)) error {
	if err := validateInterface(iface); err != nil {
		return err
	}
	updates := make(chan netlink.LinkUpdate, 16)
	done := make(chan struct{})
	defer close(done)
	errs := make(chan error, 1)
	if err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		ListExisting: true,
		ErrorCallback: func(err error) {
			select {
			case errs <- err:
			default:
			}
		},
	}); err != nil {
		return fmt.Errorf("watching the carrier of %s: %w", iface, err)
	}
	known, last := false, false
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errs:
			return fmt.Errorf("watching the carrier of %s: %w", iface, err)
		case u, ok := <-updates:
			if !ok {
				return fmt.Errorf("watching the carrier of %s: the netlink subscription ended", iface)
			}
			if u.Attrs() == nil || u.Attrs().Name != iface {
				continue
			}
			up := carrierUp(u)
			if !known || up != last {
				known, last = true, up
				report(up)
			}
		}
	}
}

// carrierUp: IFF_LOWER_UP is the driver's carrier; a link set down by an
// admin has no carrier either.
func carrierUp(u netlink.LinkUpdate) bool {
	if u.Header.Type == unix.RTM_DELLINK {
		return false
	}
	return u.IfInfomsg.Flags&unix.IFF_LOWER_UP != 0 && u.IfInfomsg.Flags&unix.IFF_UP != 0
}
