// Package witness is the optional etcd arbiter of the pair: a lease-based
// election on an etcd cluster run by a third machine (or three).
//
// With a witness configured, serving requires holding the election: the
// active campaigns, holds the election key under its session lease, and
// must stop serving as soon as Held reports false; the passive promotes only
// after its own Campaign returns. The election key's create revision is the
// fencing token: etcd revisions only grow, and a new leader's key was always
// created after every earlier leader's, so tokens increase strictly from one
// leadership to the next (for the life of the etcd cluster's data; an etcd
// restored from backup or wiped starts revisions again).
//
// Losing the lease is decided on this side, by a deadline, not only by what
// etcd or the client library report later: every keepalive this package
// sends moves the deadline to (send time + TTL - TTL/5), measured on
// CLOCK_BOOTTIME so that a suspended or frozen machine does not carry a
// stale lease through the freeze. etcd expires the lease at (receipt of the
// last keepalive + TTL) or later, so this node always stops believing it
// leads before any other node can win. The remaining TTL/5 is the time the
// node has to stop serving before the peer can take over.
//
// See docs/witness.md for configuration, guarantees and failure modes.
//
// witness imports only the etcd client and internal/config; it knows
// nothing of the failover state machine, which imports it.
package witness
