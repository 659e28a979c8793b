// Package drill is `zrepl-ha drill`: a failover test that changes nothing
// the pair serves. On the passive it clones the latest consistent snapshot
// of each replicated root, mounts the clone read-only, counts its files and
// compares checksums of a sample against the active's copy of the same
// snapshot; it checks that the shares would apply, that the tiebreaker and
// the VIP answer, and that the two nodes are compatible (OpenZFS version,
// pool features, space, share and VIP config); then it destroys the clone
// and reports "failover ready: yes/no" with a reason for every check.
//
// The files: drill.go (Options, Run, the Report), snapshot.go (the latest
// consistent snapshot against the active's tree, the clone and its
// cleanup), sample.go (choosing and hashing the sample, path-safe and
// bounded), responder.go (the peer's side of the drill calls),
// compat.go (the compatibility facts and their comparison) and services.go
// (the share, tiebreaker and VIP checks).
//
// The peer answers through transport/zfsrpc's drill.sample and drill.info
// calls; Responder is the zfsrpc.DrillHandler the daemon installs. drill
// may import zfsrepl, transport/zfsrpc, failover/shares, failover/probe and
// failover/vip; nothing but cmd/zrepl-ha may import drill.
package drill
