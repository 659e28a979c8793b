package zfsrepl

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// MaxFutureSkew is how far ahead of the clock a zrepl-ha snapshot's name
// may be for a new name to still follow it. A clock stepped back by less
// (an NTP correction, a VM restored a little behind) keeps names sorting by
// time in creation order; a name further ahead comes from a clock that was
// once far off and was corrected, and following it would put every new
// name in the future, where retention keeps everything (see
// NextSnapshotName).
const MaxFutureSkew = time.Hour

// NextSnapshotName returns the short name for a new snapshot of a root
// whose versions are vs, taken at now, and the zrepl-ha snapshot names of
// vs that are more than MaxFutureSkew ahead of now (sorted, so the furthest
// ahead is last), which the new name ignores.
//
// The sequence is one past the highest sequence of vs, so creation order is
// always sequence order. The time is now's, truncated to the second, unless
// a zrepl-ha snapshot is named later but at most MaxFutureSkew ahead: then
// the newest such time, so names sort by time in creation order across a
// small clock step back.
//
// Snapshots named more than MaxFutureSkew ahead do not pull the new name
// forward. Following them would keep every new name in the future until
// the clock reaches them (days or years after a wrong clock was
// corrected), and retention keeps snapshots in the future: the pool would
// fill. New names come from the clock instead. Only the far-future names
// then sort after newer snapshots, until the clock passes them or they are
// destroyed; whatever must know which snapshot is newest goes by sequence
// or createtxg, not by the name's time (LatestConsistent, the planner).
func NextSnapshotName(vs []Version, now time.Time) (short string, farFuture []string) {
	now = now.UTC().Truncate(time.Second)
	limit := now.Add(MaxFutureSkew)
	var seq uint64
	var last time.Time
	for _, v := range vs {
		t, s, ok := ParseSnapshotName(v.Short())
		if !ok || v.Type != Snapshot {
			continue
		}
		seq = max(seq, s)
		if t.After(limit) {
			farFuture = append(farFuture, v.Short())
			continue
		}
		if t.After(last) {
			last = t
		}
	}
	if now.Before(last) {
		now = last
	}
	slices.Sort(farFuture)
	return SnapshotName(now, seq+1), farFuture
}

// TakeSnapshot takes one atomic recursive snapshot of root (zfs snapshot -r)
// named by NextSnapshotName and returns its short name.
func TakeSnapshot(ctx context.Context, z ZFS, root string, now time.Time) (string, error) {
	vs, err := z.Versions(ctx, root)
	if err != nil {
		return "", err
	}
	return SnapshotRoot(ctx, z, root, vs, now, nil)
}

// SnapshotRoot is TakeSnapshot for a caller that has root's versions
// already (the scheduler lists the whole tree each cycle anyway: one zfs
// command less per cycle). When vs has snapshots named more than
// MaxFutureSkew ahead of now it logs an error (once per call, so once per
// cycle) that says what to fix; the snapshot is taken all the same, named
// from the clock, so replication goes on protecting new writes. log may be
// nil.
func SnapshotRoot(ctx context.Context, z ZFS, root string, vs []Version, now time.Time, log *slog.Logger) (string, error) {
	name, far := NextSnapshotName(vs, now)
	if len(far) > 0 && log != nil {
		newest, _, _ := ParseSnapshotName(far[len(far)-1])
		log.ErrorContext(ctx, "zrepl-ha snapshots are named far in the future: the clock was set ahead and corrected; new snapshots are named from the clock",
			"root", root, "count", len(far), "newest", root+"@"+far[len(far)-1],
			"ahead", newest.Sub(now.UTC().Truncate(time.Second)).String(), "new", root+"@"+name,
			"fix", "check the clock (NTP); retention keeps these snapshots until the clock reaches their time; once a newer snapshot has been replicated, destroy them on both nodes with zfs destroy -r")
	}
	if err := z.Snapshot(ctx, root, name, true); err != nil {
		return "", fmt.Errorf("snapshot of %s: %w", root, err)
	}
	return name, nil
}
