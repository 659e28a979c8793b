package scheduler

import (
	"context"
	"time"

	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

// PruneReceiver applies the target retention grid on a passive node to a
// root it receives into. A remote passive prunes its own pool: the active
// cannot reach it. zfsrepl.Prune's receiver guard keeps the held base and
// the newest snapshot, so pruning never breaks the next incremental.
func PruneReceiver(ctx context.Context, z zfsrepl.ZFS, root string, grid Planner, now time.Time) (destroyed, refused int, err error) {
	p, err := prune(ctx, z, zfsrepl.ReceiverSide, root, grid, now, false)
	return p.destroyed, p.refused, err
}
