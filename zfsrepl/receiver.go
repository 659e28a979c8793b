package zfsrepl

import (
	"context"
	"errors"
	"io"
)

// Receiver is the engine's view of the receiving side. The engine is
// transport-agnostic: LocalReceiver receives in this process (tests, a local
// pool-to-pool copy, `replicate --once` to a backup pool); the network
// transport implements the same interface on the heartbeat link.
//
// The receiving side enforces its own policy (resumable, unmounted,
// read-only, never -F): a sender cannot ask it to overwrite anything.
type Receiver interface {
	// Tree lists the receiver's datasets under root; nil, nil when root does
	// not exist yet.
	Tree(ctx context.Context, root string) ([]TreeDataset, error)
	// Receive consumes one send stream into req.Dataset.
	Receive(ctx context.Context, req ReceiveRequest, stream io.Reader) error
	// Confirm records that snapshots (dataset@short, one per dataset) are
	// fully received: it holds them so nothing can destroy the newest common
	// base, then releases the hold from the previously held snapshots listed
	// in release (those without our hold are skipped).
	Confirm(ctx context.Context, snapshots, release []string) error
}

// ReceiveRequest describes one stream to the receiver.
type ReceiveRequest struct {
	Dataset string   // receiver dataset
	Kind    StepKind // full, incremental or resume
	To      string   // short name of the final snapshot, "" for a resume
}

// LocalReceiver receives into a pool this process can reach.
type LocalReceiver struct {
	ZFS ZFS
	// Sender names the sending node, for the hold tag.
	Sender string
}

var (
	_ Receiver     = (*LocalReceiver)(nil)
	_ FileReceiver = (*LocalReceiver)(nil)
)

// ReceivesFromFile implements FileReceiver: zfs recv runs here, so the
// engine hands it a pipe and splices the send stream into it.
func (l *LocalReceiver) ReceivesFromFile() bool { return true }

// Tree implements Receiver.
func (l *LocalReceiver) Tree(ctx context.Context, root string) ([]TreeDataset, error) {
	t, err := l.ZFS.Tree(ctx, root)
	if errors.Is(err, ErrDatasetNotFound) {
		return nil, nil
	}
	return t, err
}

// ReceivePolicy is the receive options zrepl-ha always uses on a passive:
// -s so an interruption is resumable, -u so nothing mounts, and on a new
// dataset readonly=on and canmount=noauto so nobody writes to the passive's
// copy. The epoch property is per node and never replicated. -F never.
func ReceivePolicy(kind StepKind) RecvOptions {
	o := RecvOptions{Resumable: true, NoMount: true}
	if kind == StepResume {
		return o // a resumed stream carries the options of its first part
	}
	o.Exclude = []string{"zrepl-ha:epoch"}
	if kind == StepFull {
		o.Set = map[string]string{"readonly": "on", "canmount": "noauto"}
	}
	return o
}

// Receive implements Receiver.
func (l *LocalReceiver) Receive(ctx context.Context, req ReceiveRequest, stream io.Reader) error {
	return l.ZFS.Recv(ctx, req.Dataset, ReceivePolicy(req.Kind), stream)
}

// Confirm implements Receiver: one zfs hold for all snapshots and one zfs
// release for all old ones, falling back to one at a time when a batch
// fails (a snapshot already held by us, or an old one held by someone else).
func (l *LocalReceiver) Confirm(ctx context.Context, snapshots, release []string) error {
	tag := HoldTag(l.Sender)
	if len(snapshots) > 0 {
		if err := l.ZFS.Hold(ctx, tag, snapshots...); err != nil {
			for _, s := range snapshots {
				if err := l.ZFS.Hold(ctx, tag, s); err != nil && !errors.Is(err, ErrExists) {
					return err
				}
			}
		}
	}
	held := map[string]bool{}
	for _, s := range snapshots {
		held[s] = true
	}
	var rel []string
	for _, s := range release {
		if !held[s] {
			rel = append(rel, s)
		}
	}
	if len(rel) == 0 {
		return nil
	}
	if err := l.ZFS.Release(ctx, tag, rel...); err == nil {
		return nil
	}
	for _, s := range rel {
		if err := l.ZFS.Release(ctx, tag, s); err != nil && !isNoSuchTag(err) {
			return err
		}
	}
	return nil
}

func isNoSuchTag(err error) bool {
	var ze *Error
	return errors.As(err, &ze) && (contains(ze.Stderr, "no such tag") || errors.Is(err, ErrDatasetNotFound))
}
