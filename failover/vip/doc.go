// Package vip holds the virtual IP that clients use to reach the active node:
// it adds the address to an interface, announces it so that the clients and
// switches on the link move their ARP or neighbour entries to this node's
// MAC, and removes it again.
//
// VIP.Up adds the address if it is missing and then always announces it
// (gratuitous ARP for IPv4, an unsolicited neighbour advertisement for
// IPv6), so calling it again is how a caller re-announces. VIP.Down removes
// the address if it is present; absent is success. VIP.Held says whether the
// address is on the interface. None of them touches any other address:
// Down refuses when removing the VIP would make the kernel drop the IPv4
// secondary addresses it is primary for (see docs/vip.md).
//
// The files: vip.go (Up, Down, Held and validation), addr.go (the address
// as netlink sees it: what to add, what counts as ours), garp.go
// (gratuitous ARP frames), na.go (unsolicited neighbour advertisements) and
// announce.go (the bounded, paced sending of both).
//
// vip works on the network namespace of the calling thread and needs
// CAP_NET_ADMIN (addresses) and CAP_NET_RAW (the announcements). It imports
// nothing from this module: failover decides when to call Up and Down, and
// vip must not import failover, transport, zfsrepl or scheduler.
package vip
