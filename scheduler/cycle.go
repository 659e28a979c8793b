package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

// Clock is the scheduler's view of time, injected so tests do not sleep.
type Clock interface{ Now() time.Time }

// RealClock is the wall clock.
type RealClock struct{}

// Now implements Clock.
func (RealClock) Now() time.Time { return time.Now() }

// Planner decides by age which snapshot names to keep (Grid implements it).
type Planner interface {
	Plan(now time.Time, names []string) (keep, destroy []string)
}

// Locks hands out one lock per root, so snapshot, replicate and prune never
// overlap on a root, whoever starts them (the cadence, an admin's
// replicate --once, a switchover).
type Locks struct {
	mu    sync.Mutex
	roots map[string]*sync.Mutex
}

// Lock locks root and returns its unlock.
func (l *Locks) Lock(root string) (unlock func()) {
	l.mu.Lock()
	if l.roots == nil {
		l.roots = map[string]*sync.Mutex{}
	}
	m := l.roots[root]
	if m == nil {
		m = &sync.Mutex{}
		l.roots[root] = m
	}
	l.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// Cycle is one root's continuous work on the active node.
type Cycle struct {
	ZFS      zfsrepl.ZFS
	Engine   *zfsrepl.Engine
	Receiver zfsrepl.Receiver
	Root     zfsrepl.Root
	// Source is retention on this node. Target is retention on the receiver
	// when it is a pool of this node (TargetZFS set); a remote passive
	// prunes its own pool.
	Source    Planner
	Target    Planner
	TargetZFS zfsrepl.ZFS
	Clock     Clock
	Locks     *Locks
	Log       *slog.Logger
}

// CycleResult says what one cycle did.
type CycleResult struct {
	Snapshot  string // "" when skipped
	Skipped   bool   // nothing written since the last snapshot
	Report    *zfsrepl.Report
	Destroyed int
	Refused   int
}

// Run does snapshot -> replicate -> prune once. The snapshot is skipped
// when nothing was written since the root's newest zrepl-ha snapshot, so
// idle datasets do not pile up empty snapshots. Pruning runs even when
// replication failed: zfsrepl.Prune never destroys what replication needs.
func (c *Cycle) Run(ctx context.Context) (CycleResult, error) {
	var res CycleResult
	if c.Locks != nil {
		defer c.Locks.Lock(c.Root.Source)()
	}
	now := c.Clock.Now()
	tree, err := c.ZFS.Tree(ctx, c.Root.Source)
	if err != nil {
		return res, fmt.Errorf("listing %s: %w", c.Root.Source, err)
	}
	if needSnapshot(tree) {
		if res.Snapshot, err = zfsrepl.TakeSnapshot(ctx, c.ZFS, c.Root.Source, now); err != nil {
			return res, err
		}
	} else {
		res.Skipped = true
	}
	var repErr error
	res.Report, repErr = c.Engine.Replicate(ctx, c.Root, c.Receiver)
	var pruneErrs []error
	if c.Source != nil {
		d, r, err := prune(ctx, c.ZFS, zfsrepl.SenderSide, c.Root.Source, c.Source, now)
		res.Destroyed, res.Refused = res.Destroyed+d, res.Refused+r
		pruneErrs = append(pruneErrs, err)
	}
	if c.Target != nil && c.TargetZFS != nil {
		d, r, err := prune(ctx, c.TargetZFS, zfsrepl.ReceiverSide, c.Root.Target, c.Target, now)
		res.Destroyed, res.Refused = res.Destroyed+d, res.Refused+r
		pruneErrs = append(pruneErrs, err)
	}
	return res, errors.Join(append([]error{repErr}, pruneErrs...)...)
}

// needSnapshot: a root with no zrepl-ha snapshot yet always gets one;
// otherwise only when some dataset has bytes written since its newest
// snapshot, or a dataset has no snapshot at all (created since).
func needSnapshot(tree []zfsrepl.TreeDataset) bool {
	if len(tree) == 0 {
		return true
	}
	for _, d := range tree {
		if d.Written > 0 {
			return true
		}
		owned := false
		for _, v := range d.Versions {
			owned = owned || zfsrepl.IsOwned(v)
		}
		if !owned {
			return true
		}
	}
	return false
}

// prune asks the grid what to destroy on every dataset of root and lets
// zfsrepl.Prune refuse what must stay.
func prune(ctx context.Context, z zfsrepl.ZFS, side zfsrepl.Side, root string, grid Planner, now time.Time) (destroyed, refused int, err error) {
	tree, err := z.Tree(ctx, root)
	if err != nil {
		if errors.Is(err, zfsrepl.ErrDatasetNotFound) {
			return 0, 0, nil
		}
		return 0, 0, err
	}
	for _, d := range tree {
		var shorts []string
		for _, v := range d.Versions {
			if zfsrepl.IsOwned(v) {
				shorts = append(shorts, v.Short())
			}
		}
		_, destroy := grid.Plan(now, shorts)
		if len(destroy) == 0 {
			continue
		}
		names := make([]string, len(destroy))
		for i, s := range destroy {
			names[i] = d.Name + "@" + s
		}
		res, err := zfsrepl.Prune(ctx, z, side, d.Versions, names, false)
		if res != nil {
			destroyed += len(res.Destroyed)
			refused += len(res.Refused)
		}
		if err != nil {
			return destroyed, refused, err
		}
	}
	return destroyed, refused, nil
}
