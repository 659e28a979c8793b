// Package zfsrpc carries the replication engine's Receiver over the
// transport: Client implements zfsrepl.Receiver on the sending node, Server
// answers it on the receiving node with a local zfsrepl.Receiver.
//
// It is the only place where zfsrepl and transport meet: transport knows
// nothing of ZFS, and zfsrepl knows nothing of the network. The receiving
// node decides what may be touched: only datasets under its configured
// target roots, with its own receive policy (zfsrepl.ReceivePolicy).
//
// This package must not import failover.
package zfsrpc
