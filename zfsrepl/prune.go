package zfsrepl

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Side says which end of a replication a dataset is on; the protection
// rules differ.
type Side int

const (
	SenderSide Side = iota
	ReceiverSide
)

// PruneResult lists what Prune destroyed and what it refused, with why.
type PruneResult struct {
	Destroyed []string
	// Unreplicated are the destroyed snapshots the peer did not have yet
	// (only with allowUnreplicated): the caller must say so loudly.
	Unreplicated []string
	Refused      map[string]string // snapshot -> reason
}

// Prune destroys the named snapshots of one dataset (full names), except
// those it must never destroy. Retention decides what to ask for; Prune is
// the guard that makes any request safe:
//
//   - only zrepl-ha's own snapshots (never an admin's, never a rescue);
//   - never a held snapshot (the receiver's last received base is held);
//   - on the sender, never the snapshot a replication cursor points at, nor
//     anything newer (not yet replicated) unless allowUnreplicated;
//   - on the receiver, never the newest snapshot.
//
// versions must be the dataset's current versions (oldest first).
func Prune(ctx context.Context, z ZFS, side Side, versions []Version, names []string, allowUnreplicated bool) (*PruneResult, error) {
	res := &PruneResult{Refused: map[string]string{}}
	byName := map[string]Version{}
	var cursorTXG uint64
	var hasCursor bool
	var newestSnap string
	for _, v := range versions {
		byName[v.Name] = v
		if v.Type == Bookmark && strings.HasPrefix(v.Short(), "zrepl-ha_cursor_") {
			// With several peers, the oldest cursor bounds what is replicated.
			if !hasCursor || v.CreateTXG < cursorTXG {
				cursorTXG, hasCursor = v.CreateTXG, true
			}
		}
		if v.Type == Snapshot {
			newestSnap = v.Name
		}
	}
	var todo []Version
	for _, n := range names {
		v, ok := byName[n]
		reason := ""
		switch {
		case !ok:
			reason = "no such snapshot"
		case !IsOwned(v):
			reason = "not created by zrepl-ha"
		case v.UserRefs > 0:
			reason = "held (the last received base or an admin's hold)"
		case side == ReceiverSide && n == newestSnap:
			reason = "the receiver's newest snapshot (the incremental base)"
		case side == SenderSide && hasCursor && v.CreateTXG == cursorTXG:
			reason = "the replication cursor's snapshot (the last common base)"
		case side == SenderSide && !allowUnreplicated && (!hasCursor || v.CreateTXG > cursorTXG):
			reason = "not yet replicated"
		}
		if reason != "" {
			res.Refused[n] = reason
			continue
		}
		todo = append(todo, v)
	}
	destroyed := func(v Version) {
		res.Destroyed = append(res.Destroyed, v.Name)
		if side == SenderSide && (!hasCursor || v.CreateTXG > cursorTXG) {
			res.Unreplicated = append(res.Unreplicated, v.Name)
		}
	}
	// All at once when the ZFS can: a retention run of one dataset is then
	// one zfs process and one transaction group, not one of each per
	// snapshot (seconds of CPU every run on a small machine). Should the
	// batch fail (a clone, a hold taken since the listing), the snapshots
	// go one by one below, each refused or destroyed on its own.
	if bd, ok := z.(BatchDestroyer); ok && len(todo) > 1 {
		batched := true
		for start := 0; start < len(todo) && batched; start += destroyBatch {
			part := todo[start:min(start+destroyBatch, len(todo))]
			ds, _, _, _ := SplitVersion(part[0].Name)
			shorts := make([]string, len(part))
			for i, v := range part {
				shorts[i] = v.Short()
			}
			if err := bd.DestroySnapshots(ctx, ds, shorts); err != nil {
				if ctx.Err() != nil {
					return res, fmt.Errorf("pruning %s: %w", ds, err)
				}
				batched = false
				todo = todo[start:]
				break
			}
			for _, v := range part {
				destroyed(v)
			}
		}
		if batched {
			return res, nil
		}
	}
	for _, v := range todo {
		n := v.Name
		if err := z.Destroy(ctx, n, DestroyFlags{}); err != nil {
			if errors.Is(err, ErrHasClones) {
				res.Refused[n] = "a clone depends on it (a rejoin's rescue or a drill)"
				continue
			}
			if errors.Is(err, ErrDatasetNotFound) {
				destroyed(v) // a failed batch may have taken it after all
				continue
			}
			return res, fmt.Errorf("pruning %s: %w", n, err)
		}
		destroyed(v)
	}
	return res, nil
}

// BatchDestroyer destroys several snapshots of one dataset in one
// command (Exec does; fakes need not).
type BatchDestroyer interface {
	DestroySnapshots(ctx context.Context, dataset string, shorts []string) error
}

// destroyBatch bounds one zfs destroy's argument.
const destroyBatch = 64
