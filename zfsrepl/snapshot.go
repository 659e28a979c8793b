package zfsrepl

import (
	"context"
	"fmt"
	"time"
)

// TakeSnapshot takes one atomic recursive snapshot of root (zfs snapshot -r)
// named zrepl-ha_<UTC time>_<sequence>, the sequence one past the root's
// newest zrepl-ha snapshot, and returns its short name.
func TakeSnapshot(ctx context.Context, z ZFS, root string, now time.Time) (string, error) {
	vs, err := z.Versions(ctx, root)
	if err != nil {
		return "", err
	}
	var seq uint64
	var last time.Time
	for _, v := range vs {
		if t, s, ok := ParseSnapshotName(v.Short()); ok && v.Type == Snapshot && s >= seq {
			seq, last = s, t
		}
	}
	// Names must sort by time: if the clock stepped back, keep the last time.
	if now.UTC().Truncate(time.Second).Before(last) {
		now = last
	}
	name := SnapshotName(now, seq+1)
	if err := z.Snapshot(ctx, root, name, true); err != nil {
		return "", fmt.Errorf("snapshot of %s: %w", root, err)
	}
	return name, nil
}
