package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
	// PruneUnreplicatedAbovePoolPercent is retention's
	// prune_unreplicated_above_pool_percent: when the source pool's
	// capacity is at or above it, source retention may destroy snapshots
	// the peer does not have yet, so a dead link cannot fill the pool and
	// stop the applications' writes. 0 never allows it.
	PruneUnreplicatedAbovePoolPercent int
	// ForceSnapshot takes the snapshot even when `written` says nothing
	// changed: a handover's final cycle must not trust it, because written
	// is space accounting updated at each transaction group, so sync writes
	// still only in the ZIL (an NFS client's acknowledged records) read as 0
	// for up to a txg. The snapshot itself includes them.
	ForceSnapshot bool
	// NoPrune skips retention: a handover's final cycle is on the
	// switchover's clock, and the next cadence prunes anyway.
	NoPrune bool
	// Final is a handover's last cycle, whose protection the next cycle
	// moves (zfsrepl.ReplicateOptions.Final).
	Final bool
	// SnapshotUnlocked takes the snapshot before the root's lock and lists
	// both sides after it: for a handover's final cycle, whose snapshot
	// need not wait while the cycle in flight that the handover cut winds
	// down (its stream's end took 3.9 s in one lab run, on a CPU the
	// unexport kept busy). The listings wait for the lock, so they see
	// whatever that cycle left (a partial receive to resume, say).
	SnapshotUnlocked bool
	// ReceiverFirst waits for the receiver's listing before the snapshot
	// and stops there if the peer is not ready (zfsrepl.ErrPeerNotReady):
	// for cycles after one the peer refused while it rejoins, so a new
	// active does not list and snapshot its pool every cadence for nothing
	// while its clients reconnect.
	ReceiverFirst bool
	// SkipPrune, if set and true once the replication is done, skips
	// retention too: a handover has begun and waits for this cycle.
	SkipPrune func() bool
	// Names, if set, remembers the root's snapshot names from one cycle
	// to the next, so a final cycle (ForceSnapshot, which does not need
	// the listing's written) names its snapshot without listing the tree
	// first: a listing is most of a second on a small CPU, on the
	// switchover's clock. Give each serving period a new Names: what an
	// earlier period saw may lack snapshots received since.
	Names *Names
	Clock Clock
	Locks *Locks
	Log   *slog.Logger
}

// CycleResult says what one cycle did.
type CycleResult struct {
	Snapshot  string // "" when skipped
	Skipped   bool   // nothing written since the last snapshot
	Report    *zfsrepl.Report
	Destroyed int
	Refused   int
	// Unreplicated counts the destroyed snapshots the peer did not have
	// yet (the pool was above PruneUnreplicatedAbovePoolPercent).
	Unreplicated int
}

// Run does snapshot -> replicate -> prune once. The snapshot is skipped
// when nothing was written since the root's newest zrepl-ha snapshot, so
// idle datasets do not pile up empty snapshots. Pruning runs even when
// replication failed: zfsrepl.Prune never destroys what replication needs.
func (c *Cycle) Run(ctx context.Context) (CycleResult, error) {
	var res CycleResult
	now := c.Clock.Now()
	if c.SnapshotUnlocked {
		var err error
		if res.Snapshot, res.Skipped, err = c.snapshot(ctx, now); err != nil {
			return res, err
		}
	}
	if c.Locks != nil {
		defer c.Locks.Lock(c.Root.Source)()
	}
	// The receiver is listed beside the snapshot (different machines, and
	// the snapshot does not change the receiver): a cycle then waits for
	// one listing after its snapshot, not for the peer's too.
	var rtree []zfsrepl.TreeDataset
	var rerr error
	listed := make(chan struct{})
	go func() {
		defer close(listed)
		rtree, rerr = c.Receiver.Tree(ctx, c.Root.Target)
	}()
	if c.ReceiverFirst {
		<-listed
		if errors.Is(rerr, zfsrepl.ErrPeerNotReady) {
			return res, rerr
		}
	}
	if !c.SnapshotUnlocked {
		var err error
		if res.Snapshot, res.Skipped, err = c.snapshot(ctx, now); err != nil {
			<-listed
			return res, err
		}
	}
	var repErr error
	res.Report, repErr = c.Engine.ReplicateWith(ctx, c.Root, c.Receiver, zfsrepl.ReplicateOptions{
		Final: c.Final,
		ReceiverTree: func() ([]zfsrepl.TreeDataset, error) {
			<-listed
			return rtree, rerr
		},
	})
	if c.NoPrune || (c.SkipPrune != nil && c.SkipPrune()) {
		return res, repErr
	}
	pruneErr := c.prune(ctx, now, &res)
	return res, errors.Join(repErr, pruneErr)
}

func (c *Cycle) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.New(slog.DiscardHandler)
}

// snapshot is the cycle's first step: one listing of the source tree,
// then a recursive snapshot unless nothing was written. The root's
// versions come from that listing, so naming costs no further command.
func (c *Cycle) snapshot(ctx context.Context, now time.Time) (name string, skipped bool, err error) {
	if vs, ok := c.Names.get(c.Root.Source); ok && c.ForceSnapshot {
		name, err = zfsrepl.SnapshotRoot(ctx, c.ZFS, c.Root.Source, vs, now, c.log())
		if err == nil {
			c.Names.add(c.Root.Source, vs, name)
			return name, false, nil
		}
		if !errors.Is(err, zfsrepl.ErrExists) {
			return "", false, err
		}
		// A snapshot this node did not see has the name: list and name again.
		c.log().InfoContext(ctx, "snapshot name taken; listing the tree", "root", c.Root.Source, "err", err)
	}
	tree, err := c.ZFS.Tree(ctx, c.Root.Source)
	if err != nil {
		return "", false, fmt.Errorf("listing %s: %w", c.Root.Source, err)
	}
	var vs []zfsrepl.Version
	for _, d := range tree {
		if d.Name == c.Root.Source {
			vs = d.Versions
		}
	}
	if !c.ForceSnapshot && !needSnapshot(tree) {
		c.Names.add(c.Root.Source, vs, "")
		return "", true, nil
	}
	name, err = zfsrepl.SnapshotRoot(ctx, c.ZFS, c.Root.Source, vs, now, c.log())
	if err == nil {
		c.Names.add(c.Root.Source, vs, name)
	}
	return name, false, err
}

// Names is what Cycle.Names remembers: each root's versions as its last
// cycle's listing saw them, plus the snapshot that cycle took. Only the
// names matter (they carry the time and sequence the next name follows).
// A nil *Names remembers nothing. Safe for concurrent use.
type Names struct {
	mu    sync.Mutex
	roots map[string][]zfsrepl.Version
}

func (n *Names) get(root string) ([]zfsrepl.Version, bool) {
	if n == nil {
		return nil, false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	vs, ok := n.roots[root]
	return vs, ok
}

// add records vs and, if taken is not "", the snapshot root@taken.
func (n *Names) add(root string, vs []zfsrepl.Version, taken string) {
	if n == nil {
		return
	}
	vs = slices.Clone(vs)
	if taken != "" {
		vs = append(vs, zfsrepl.Version{Name: root + "@" + taken, Type: zfsrepl.Snapshot})
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.roots == nil {
		n.roots = map[string][]zfsrepl.Version{}
	}
	n.roots[root] = vs
}

// prune is the cycle's last step: retention on the source, then on a
// local target, adding what it did to res.
func (c *Cycle) prune(ctx context.Context, now time.Time, res *CycleResult) error {
	var errs []error
	if c.Source != nil {
		allow, err := c.allowUnreplicated(ctx)
		errs = append(errs, err)
		p, err := prune(ctx, c.ZFS, zfsrepl.SenderSide, c.Root.Source, c.Source, now, allow)
		res.Destroyed, res.Refused = res.Destroyed+p.destroyed, res.Refused+p.refused
		res.Unreplicated += len(p.unreplicated)
		if len(p.unreplicated) > 0 {
			c.log().WarnContext(ctx, "retention destroyed snapshots the peer does not have yet: the source pool is nearly full",
				"root", c.Root.Source, "count", len(p.unreplicated), "snapshots", p.unreplicated,
				"threshold_percent", c.PruneUnreplicatedAbovePoolPercent)
		}
		errs = append(errs, err)
	}
	if c.Target != nil && c.TargetZFS != nil {
		p, err := prune(ctx, c.TargetZFS, zfsrepl.ReceiverSide, c.Root.Target, c.Target, now, false)
		res.Destroyed, res.Refused = res.Destroyed+p.destroyed, res.Refused+p.refused
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// allowUnreplicated reads the source pool's capacity when the config
// allows destroying unreplicated snapshots at all. A failed read allows
// nothing: the guard stays on when in doubt.
func (c *Cycle) allowUnreplicated(ctx context.Context) (bool, error) {
	if c.PruneUnreplicatedAbovePoolPercent <= 0 {
		return false, nil
	}
	pct, err := c.ZFS.PoolCapacity(ctx, c.Root.Source)
	if err != nil {
		return false, fmt.Errorf("reading the pool capacity of %s (unreplicated snapshots stay): %w", c.Root.Source, err)
	}
	return pct >= c.PruneUnreplicatedAbovePoolPercent, nil
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

// pruned is what prune did on one side of a root.
type pruned struct {
	destroyed, refused int
	unreplicated       []string
}

// pruneParallel is how many datasets of a root are pruned at once. Each
// destroy is a zfs process waiting for a transaction group; side by side
// they share the waits and the transaction groups (the engine does the
// same with its bookmarks), which matters once a root has many datasets.
const pruneParallel = 4

// prune asks the grid what to destroy on every dataset of root and lets
// zfsrepl.Prune refuse what must stay. Datasets are pruned side by side;
// an error on one does not stop the others.
func prune(ctx context.Context, z zfsrepl.ZFS, side zfsrepl.Side, root string, grid Planner, now time.Time, allowUnreplicated bool) (pruned, error) {
	var p pruned
	tree, err := z.Tree(ctx, root)
	if err != nil {
		if errors.Is(err, zfsrepl.ErrDatasetNotFound) {
			return p, nil
		}
		return p, err
	}
	type job struct {
		versions []zfsrepl.Version
		names    []string
	}
	var jobs []job
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
		jobs = append(jobs, job{d.Versions, names})
	}
	results := make([]*zfsrepl.PruneResult, len(jobs))
	errs := make([]error, len(jobs))
	sem := make(chan struct{}, pruneParallel)
	var wg sync.WaitGroup
	for i, j := range jobs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i], errs[i] = zfsrepl.Prune(ctx, z, side, j.versions, j.names, allowUnreplicated)
		}()
	}
	wg.Wait()
	for _, res := range results {
		if res != nil {
			p.destroyed += len(res.Destroyed)
			p.refused += len(res.Refused)
			p.unreplicated = append(p.unreplicated, res.Unreplicated...)
		}
	}
	return p, errors.Join(errs...)
}
