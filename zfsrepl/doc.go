// Package zfsrepl owns everything zrepl-ha does to ZFS: the operations layer
// (the ZFS interface and its real implementation, Exec) and, on top of it,
// the replication engine.
//
// The operations layer uses github.com/mistifyio/go-zfs for listing,
// creating, snapshotting, rolling back, destroying and properties, and the
// project's own exec wrapper (internal/command) for what go-zfs lacks:
// resumable send and receive, bookmarks, holds, promote, raw send, guid and
// createtxg. Every dataset, snapshot and bookmark name is validated before
// any command runs. Failures are *Error values carrying the zfs command line
// and zfs's own message, classified into sentinels (ErrDatasetNotFound,
// ErrDestinationModified, ErrBusy, ...) and *ResumableError.
//
// go-zfs has no context support: those calls check ctx before starting but
// cannot be cancelled mid-flight. They are all short metadata operations; the
// long-running ones (send, recv) go through internal/command and honour ctx.
//
// OpenZFS starts the kernel threads of a send or a receive at nice 19;
// Exec.Threads (a ThreadRaiser) gives them the caller's priority while
// Send and Recv run, so clients that keep the CPUs busy do not starve
// replication.
//
// zfsrepl must not import failover, transport, scheduler or anything about
// shares: the engine talks to the other side through its own interfaces.
package zfsrepl
