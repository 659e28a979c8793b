package scheduler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/internal/config"

	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

func TestNeedSnapshot(t *testing.T) {
	owned := zfsrepl.Version{Name: "p/a@zrepl-ha_20261126T120000Z_000001", Type: zfsrepl.Snapshot}
	foreign := zfsrepl.Version{Name: "p/a@manual", Type: zfsrepl.Snapshot}
	cases := []struct {
		name string
		tree []zfsrepl.TreeDataset
		want bool
	}{
		{"idle", []zfsrepl.TreeDataset{{Name: "p/a", Versions: []zfsrepl.Version{owned}}}, false},
		{"written", []zfsrepl.TreeDataset{{Name: "p/a", Written: 4096, Versions: []zfsrepl.Version{owned}}}, true},
		{"never snapshotted", []zfsrepl.TreeDataset{{Name: "p/a", Versions: []zfsrepl.Version{foreign}}}, true},
		{"new child", []zfsrepl.TreeDataset{{Name: "p/a", Versions: []zfsrepl.Version{owned}}, {Name: "p/a/new"}}, true},
		{"empty", nil, true},
	}
	for _, c := range cases {
		if got := needSnapshot(c.tree); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestLocksSerialiseARoot(t *testing.T) {
	var l Locks
	unlock := l.Lock("tank/a")
	other := l.Lock("tank/b") // another root is independent
	other()
	done := make(chan struct{})
	go func() { l.Lock("tank/a")(); close(done) }()
	select {
	case <-done:
		t.Fatal("a second lock on the same root did not wait")
	case <-time.After(100 * time.Millisecond):
	}
	unlock()
	<-done
}

// poolFake is one dataset's versions and a pool capacity.
type poolFake struct {
	zfsrepl.ZFS
	ds          string
	versions    []zfsrepl.Version
	capacity    int
	capacityErr error
	capReads    int
	destroyed   []string
}

func (f *poolFake) Tree(ctx context.Context, root string) ([]zfsrepl.TreeDataset, error) {
	return []zfsrepl.TreeDataset{{Name: f.ds, Type: zfsrepl.Filesystem, Versions: f.versions}}, nil
}

func (f *poolFake) PoolCapacity(ctx context.Context, dataset string) (int, error) {
	f.capReads++
	return f.capacity, f.capacityErr
}

func (f *poolFake) Destroy(ctx context.Context, name string, fl zfsrepl.DestroyFlags) error {
	f.destroyed = append(f.destroyed, name)
	return nil
}

func TestPruneUnreplicatedOnlyAbovePoolPercent(t *testing.T) {
	ds := "tank/data"
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	snap := func(sec int, seq uint64) zfsrepl.Version {
		return zfsrepl.Version{Name: ds + "@" + zfsrepl.SnapshotName(t0.Add(time.Duration(sec)*time.Second), seq), Type: zfsrepl.Snapshot, CreateTXG: seq * 10}
	}
	s1, s2, s3, s4 := snap(0, 1), snap(10, 2), snap(20, 3), snap(100, 4)
	cursor := zfsrepl.Version{Name: ds + "#" + zfsrepl.CursorName("beta", s2.Short()), Type: zfsrepl.Bookmark, CreateTXG: s2.CreateTXG}
	grid, err := NewGrid([]config.KeepRule{{Span: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(110 * time.Second) // s1, s2, s3 are past the grid; s4 is kept
	cases := []struct {
		name      string
		percent   int
		capacity  int
		capErr    error
		destroyed []string
		reads     int
		warn      bool
		fails     bool
	}{
		{"0 never allows, whatever the usage", 0, 99, nil, []string{s1.Name}, 0, false, false},
		{"below the threshold", 80, 79, nil, []string{s1.Name}, 1, false, false},
		{"at the threshold", 80, 80, nil, []string{s1.Name, s3.Name}, 1, true, false},
		{"above the threshold", 80, 97, nil, []string{s1.Name, s3.Name}, 1, true, false},
		{"capacity unreadable: the guard stays", 80, 0, errors.New("zpool: no such pool"), []string{s1.Name}, 1, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			f := &poolFake{ds: ds, versions: []zfsrepl.Version{s1, s2, cursor, s3, s4}, capacity: c.capacity, capacityErr: c.capErr}
			cyc := &Cycle{ZFS: f, Root: zfsrepl.Root{Source: ds, Target: "backup/data"}, Source: grid,
				PruneUnreplicatedAbovePoolPercent: c.percent, Log: slog.New(slog.NewTextHandler(&buf, nil))}
			var res CycleResult
			err := cyc.prune(context.Background(), now, &res)
			if (err != nil) != c.fails {
				t.Fatalf("error %v, want failure %v", err, c.fails)
			}
			if !slices.Equal(f.destroyed, c.destroyed) || f.capReads != c.reads {
				t.Fatalf("destroyed %v after %d capacity reads, want %v after %d", f.destroyed, f.capReads, c.destroyed, c.reads)
			}
			// The cursor's snapshot (s2) is never destroyed, nor the kept s4.
			if res.Destroyed != len(c.destroyed) || res.Refused != 3-len(c.destroyed) {
				t.Fatalf("result %+v", res)
			}
			logged := strings.Contains(buf.String(), "level=WARN") && strings.Contains(buf.String(), s3.Name)
			if logged != c.warn || (res.Unreplicated == 1) != c.warn {
				t.Fatalf("warning logged %v, %d unreplicated destroyed, want %v: %s", logged, res.Unreplicated, c.warn, buf.String())
			}
		})
	}
}

// TestRetentionAcrossAFarFutureClock: the clock jumps a year ahead for a
// minute at a 1 s cadence and is corrected. The snapshots named meanwhile
// stay (they are in the future), but everything named after the
// correction comes from the clock again and is thinned as usual: the count
// stays within MaxKept plus the far-future ones. With names following the
// far-future time (the old behaviour) nothing would ever be pruned.
func TestRetentionAcrossAFarFutureClock(t *testing.T) {
	grid, err := NewGrid([]config.KeepRule{{Span: time.Minute}, {Span: 5 * time.Minute, Interval: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	ds := "tank/data"
	start := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	var vs []zfsrepl.Version
	maxCount := 0
	for i := 0; i < 1200; i++ {
		now := start.Add(time.Duration(i) * time.Second)
		if i >= 200 && i < 260 {
			now = now.AddDate(1, 0, 0)
		}
		name, _ := zfsrepl.NextSnapshotName(vs, now)
		vs = append(vs, zfsrepl.Version{Name: ds + "@" + name, Type: zfsrepl.Snapshot})
		var shorts []string
		for _, v := range vs {
			shorts = append(shorts, v.Short())
		}
		_, destroy := grid.Plan(now, shorts)
		gone := map[string]bool{}
		for _, d := range destroy {
			gone[d] = true
		}
		vs = slices.DeleteFunc(vs, func(v zfsrepl.Version) bool { return gone[v.Short()] })
		maxCount = max(maxCount, len(vs))
	}
	if allowed := grid.MaxKept(start, time.Second) + 60; maxCount > allowed {
		t.Fatalf("%d snapshots kept at most, allowed %d", maxCount, allowed)
	}
	t.Logf("at most %d kept (MaxKept %d + 60 far-future)", maxCount, grid.MaxKept(start, time.Second))
}

// treeFake is a root of several datasets whose destroys are recorded from
// concurrent prunes; destroying a snapshot of failDataset fails.
type treeFake struct {
	zfsrepl.ZFS
	tree        []zfsrepl.TreeDataset
	failDataset string
	mu          sync.Mutex
	destroyed   []string
}

func (f *treeFake) Tree(ctx context.Context, root string) ([]zfsrepl.TreeDataset, error) {
	return f.tree, nil
}

func (f *treeFake) Destroy(ctx context.Context, name string, fl zfsrepl.DestroyFlags) error {
	if strings.HasPrefix(name, f.failDataset+"@") {
		return errors.New("dataset is busy")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.destroyed = append(f.destroyed, name)
	return nil
}

// TestPruneEveryDatasetSideBySide: every dataset of a root is pruned, and a
// failing destroy on one dataset neither stops the others nor goes
// unreported.
func TestPruneEveryDatasetSideBySide(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	f := &treeFake{failDataset: "tank/data/c3"}
	var want []string
	for i := 0; i < 10; i++ {
		ds := "tank/data"
		if i > 0 {
			ds = fmt.Sprintf("tank/data/c%d", i)
		}
		var vs []zfsrepl.Version
		for seq := uint64(1); seq <= 5; seq++ {
			vs = append(vs, zfsrepl.Version{Name: ds + "@" + zfsrepl.SnapshotName(t0.Add(time.Duration(seq)*time.Second), seq), Type: zfsrepl.Snapshot, CreateTXG: seq})
		}
		vs = append(vs, zfsrepl.Version{Name: ds + "#" + zfsrepl.CursorName("beta", vs[4].Short()), Type: zfsrepl.Bookmark, CreateTXG: 5})
		f.tree = append(f.tree, zfsrepl.TreeDataset{Name: ds, Versions: vs})
		if ds != f.failDataset {
			want = append(want, vs[0].Name, vs[1].Name)
		}
	}
	grid, err := NewGrid([]config.KeepRule{{Span: 4 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	// At t0+6s, snapshots 1 and 2 are 4 s old or more: out of the grid.
	p, err := prune(context.Background(), f, zfsrepl.SenderSide, "tank/data", grid, t0.Add(6*time.Second), false)
	if err == nil || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("the failing dataset's error is lost: %v", err)
	}
	slices.Sort(f.destroyed)
	slices.Sort(want)
	if !slices.Equal(f.destroyed, want) || p.destroyed != len(want) {
		t.Fatalf("destroyed %v (%d counted), want %v", f.destroyed, p.destroyed, want)
	}
}

type snapFake struct {
	treeFake
	snaps []string
}

func (f *snapFake) Snapshot(ctx context.Context, root, short string, recursive bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snaps = append(f.snaps, root+"@"+short)
	return nil
}

// A handover's final cycle snapshots even when written reads 0: sync
// writes still in the ZIL are not in the space accounting yet.
func TestForceSnapshotIgnoresWritten(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	owned := zfsrepl.Version{Name: "tank/data@" + zfsrepl.SnapshotName(now.Add(-time.Minute), 1), Type: zfsrepl.Snapshot}
	f := &snapFake{treeFake: treeFake{tree: []zfsrepl.TreeDataset{{Name: "tank/data", Versions: []zfsrepl.Version{owned}}}}}
	c := &Cycle{ZFS: f, Root: zfsrepl.Root{Source: "tank/data"}}
	if _, skipped, err := c.snapshot(context.Background(), now); err != nil || !skipped || len(f.snaps) != 0 {
		t.Fatalf("a regular cycle: skipped=%v err=%v snaps=%v", skipped, err, f.snaps)
	}
	c.ForceSnapshot = true
	name, skipped, err := c.snapshot(context.Background(), now)
	if err != nil || skipped || name == "" || len(f.snaps) != 1 {
		t.Fatalf("forced: %q skipped=%v err=%v snaps=%v", name, skipped, err, f.snaps)
	}
}

// notReadyReceiver is a peer that refuses while it rejoins.
type notReadyReceiver struct{ zfsrepl.Receiver }

func (notReadyReceiver) Tree(context.Context, string) ([]zfsrepl.TreeDataset, error) {
	return nil, fmt.Errorf("listing: %w: on the peer: this node is rejoining", zfsrepl.ErrPeerNotReady)
}

// After a cycle the peer refused for now, the next one asks the peer
// first and takes no snapshot (no listing either) while it is not ready.
func TestReceiverFirstSkipsTheSnapshotWhileThePeerIsNotReady(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	owned := zfsrepl.Version{Name: "tank/data@" + zfsrepl.SnapshotName(now.Add(-time.Minute), 1), Type: zfsrepl.Snapshot}
	f := &snapFake{treeFake: treeFake{tree: []zfsrepl.TreeDataset{{Name: "tank/data", Written: 4096, Versions: []zfsrepl.Version{owned}}}}}
	c := &Cycle{ZFS: f, Engine: &zfsrepl.Engine{ZFS: f}, Receiver: notReadyReceiver{}, Clock: stillClock{now},
		Root: zfsrepl.Root{Source: "tank/data", Target: "backup/data"}, NoPrune: true}
	if _, err := c.Run(context.Background()); !errors.Is(err, zfsrepl.ErrPeerNotReady) || len(f.snaps) != 1 {
		t.Fatalf("a regular cycle: err %v, snapshots %v; want the refusal after one snapshot", err, f.snaps)
	}
	c.ReceiverFirst = true
	if _, err := c.Run(context.Background()); !errors.Is(err, zfsrepl.ErrPeerNotReady) || len(f.snaps) != 1 {
		t.Fatalf("receiver first: err %v, snapshots %v; want the refusal and no new snapshot", err, f.snaps)
	}
}

type stillClock struct{ t time.Time }

func (c stillClock) Now() time.Time { return c.t }

// namesFake counts listings and refuses snapshot names in taken.
type namesFake struct {
	snapFake
	lists int
	taken map[string]bool
}

func (f *namesFake) Tree(ctx context.Context, root string) ([]zfsrepl.TreeDataset, error) {
	f.lists++
	return f.tree, nil
}

func (f *namesFake) Snapshot(ctx context.Context, root, short string, recursive bool) error {
	if f.taken[root+"@"+short] {
		return fmt.Errorf("zfs snapshot -r %s@%s: cannot create snapshot: %w", root, short, zfsrepl.ErrExists)
	}
	return f.snapFake.Snapshot(ctx, root, short, recursive)
}

// A handover's final cycle names its snapshot from the names the last
// cycle saw, without listing; a name some other snapshot took makes it
// list and name again.
func TestFinalSnapshotNamedFromTheLastCycle(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	owned := zfsrepl.Version{Name: "tank/data@" + zfsrepl.SnapshotName(now.Add(-time.Minute), 7), Type: zfsrepl.Snapshot}
	f := &namesFake{snapFake: snapFake{treeFake: treeFake{tree: []zfsrepl.TreeDataset{{Name: "tank/data", Written: 4096, Versions: []zfsrepl.Version{owned}}}}}}
	names := &Names{}
	c := &Cycle{ZFS: f, Root: zfsrepl.Root{Source: "tank/data"}, Names: names}
	first, _, err := c.snapshot(context.Background(), now.Add(-2*time.Second))
	if err != nil || f.lists != 1 || first != zfsrepl.SnapshotName(now.Add(-2*time.Second), 8) {
		t.Fatalf("a regular cycle: %q err %v, %d listings; want seq 8 after one listing", first, err, f.lists)
	}
	final := &Cycle{ZFS: f, Root: c.Root, Names: names, ForceSnapshot: true}
	name, _, err := final.snapshot(context.Background(), now)
	if err != nil || f.lists != 1 || name != zfsrepl.SnapshotName(now, 9) {
		t.Fatalf("final: %q err %v, %d listings; want seq 9 with no listing", name, err, f.lists)
	}
	// A regular cycle still lists: it needs written.
	if _, _, err := c.snapshot(context.Background(), now.Add(time.Second)); err != nil || f.lists != 2 {
		t.Fatalf("a regular cycle after: err %v, %d listings; want a listing", err, f.lists)
	}
	// Someone took the next name behind this node's back: list, name again.
	later := now.Add(time.Minute)
	f.taken = map[string]bool{"tank/data@" + zfsrepl.SnapshotName(later, 9): true}
	names.add("tank/data", []zfsrepl.Version{owned}, zfsrepl.SnapshotName(now, 8))
	f.tree[0].Versions = append(f.tree[0].Versions, zfsrepl.Version{Name: "tank/data@" + zfsrepl.SnapshotName(later, 9), Type: zfsrepl.Snapshot})
	name, _, err = final.snapshot(context.Background(), later)
	if err != nil || f.lists != 3 || name != zfsrepl.SnapshotName(later, 10) {
		t.Fatalf("taken name: %q err %v, %d listings; want seq 10 after a listing", name, err, f.lists)
	}
	// Without Names (nil) every cycle lists.
	final.Names = nil
	if _, _, err := final.snapshot(context.Background(), later.Add(time.Second)); err != nil || f.lists != 4 {
		t.Fatalf("nil Names: err %v, %d listings", err, f.lists)
	}
}

// lockedReceiver records when the receiver was listed and refuses, so the
// cycle stops there.
type lockedReceiver struct {
	zfsrepl.Receiver
	listed chan struct{}
}

func (r lockedReceiver) Tree(context.Context, string) ([]zfsrepl.TreeDataset, error) {
	close(r.listed)
	return nil, errors.New("listed: stop here")
}

// A handover's final cycle takes its snapshot while the cycle in flight
// still holds the root's lock, and lists the receiver only once it has
// the lock.
func TestFinalSnapshotDoesNotWaitForTheLock(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	owned := zfsrepl.Version{Name: "tank/data@" + zfsrepl.SnapshotName(now.Add(-time.Minute), 1), Type: zfsrepl.Snapshot}
	f := &snapFake{treeFake: treeFake{tree: []zfsrepl.TreeDataset{{Name: "tank/data", Versions: []zfsrepl.Version{owned}}}}}
	locks := &Locks{}
	unlock := locks.Lock("tank/data") // the cycle in flight
	rcv := lockedReceiver{listed: make(chan struct{})}
	c := &Cycle{ZFS: f, Engine: &zfsrepl.Engine{ZFS: f}, Receiver: rcv, Clock: stillClock{now}, Locks: locks,
		Root: zfsrepl.Root{Source: "tank/data", Target: "backup/data"}, ForceSnapshot: true, NoPrune: true, Final: true, SnapshotUnlocked: true}
	done := make(chan error, 1)
	go func() { _, err := c.Run(context.Background()); done <- err }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		n := len(f.snaps)
		f.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no snapshot while the lock is held")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-rcv.listed:
		t.Fatal("the receiver was listed while the cycle in flight held the lock")
	case <-time.After(100 * time.Millisecond):
	}
	unlock()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "stop here") {
			t.Fatalf("the cycle: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the cycle did not go on once the lock was free")
	}
}
