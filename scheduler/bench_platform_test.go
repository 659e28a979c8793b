//go:build platform

package scheduler

// The cost of the cycle's snapshot and prune steps on real ZFS in the lab
// VM (make bench), as the snapshots on a root accumulate. Absolute numbers
// under TCG mean little, so it reports a ratio against a bare loop of
// `zfs snapshot -r` and `zfs destroy -r` of the oldest, measured in the same
// run on the same root.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/fixtures/testpool"
	"github.com/zrepl-ha/zrepl-ha/internal/config"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

func benchSh(b testing.TB, script string) time.Duration {
	b.Helper()
	start := time.Now()
	out, err := exec.Command("/bin/sh", "-ec", script).CombinedOutput()
	if err != nil {
		b.Fatalf("%s: %v\n%s", script, err, out)
	}
	return time.Since(start)
}

// snapshotPruneBench is one root of 10 datasets whose zrepl-ha snapshots
// are named one (fake) second apart; names holds them oldest first.
type snapshotPruneBench struct {
	z        *zfsrepl.Exec
	pool     string
	root     string
	datasets []string
	mount    string // the root's mountpoint
	clock    *fixedClock
	seq      uint64
	names    []string
	cursors  []string
}

// next is the name of the next snapshot, one second after the last.
func (s *snapshotPruneBench) next() string {
	s.clock.t = s.clock.t.Add(time.Second)
	s.seq++
	return zfsrepl.SnapshotName(s.clock.t, s.seq)
}

// grow takes snapshots until the root has n. One zfs snapshot -r per name:
// ZFS takes at most one snapshot of a dataset per transaction group, so a
// channel program or a multi-name zfs snapshot cannot take several of the
// same dataset at once. For more than ten, four run at a time (each waits
// for its own transaction group): their createtxg order may then differ
// from the name order among neighbours, but only near the newest, far from
// the oldest that a stage's few cycles destroy.
func (s *snapshotPruneBench) grow(b *testing.B, n int) time.Duration {
	var names []string
	for len(s.names) < n {
		name := s.next()
		names = append(names, name)
		s.names = append(s.names, name)
	}
	if len(names) == 0 {
		return 0
	}
	par := 4
	if len(names) <= 10 {
		par = 1
	}
	d := benchSh(b, fmt.Sprintf("xargs -P %d -I{} zfs snapshot -r %s@{} <<'EOF'\n%s\nEOF\n", par, s.root, strings.Join(names, "\n")))
	b.Logf("grew to %d snapshots per dataset (%d datasets): %d zfs snapshot -r, %d at a time, in %.1f s",
		n, len(s.datasets), len(names), par, d.Seconds())
	return d
}

// moveCursors puts a replication cursor on the newest snapshot of every
// dataset, as a replication would, so the prune guard lets the older ones
// go (it refuses snapshots the peer does not have).
func (s *snapshotPruneBench) moveCursors(b *testing.B, ctx context.Context) {
	newest := s.names[len(s.names)-1]
	var next []string
	for _, ds := range s.datasets {
		bm := ds + "#" + zfsrepl.CursorName("bench", newest)
		if err := s.z.Bookmark(ctx, ds+"@"+newest, bm); err != nil {
			b.Fatal(err)
		}
		next = append(next, bm)
	}
	for _, bm := range s.cursors {
		if err := s.z.Destroy(ctx, bm, zfsrepl.DestroyFlags{}); err != nil {
			b.Fatal(err)
		}
	}
	s.cursors = next
}

// write changes the root, as the writer of a live system does, and syncs
// the pool: the written property, which decides whether the cycle takes a
// snapshot, only counts what a transaction group has committed.
func (s *snapshotPruneBench) write(b *testing.B) {
	if err := os.WriteFile(filepath.Join(s.mount, fmt.Sprintf("w%d", s.seq)), []byte(strings.Repeat("x", 4096)), 0o644); err != nil {
		b.Fatal(err)
	}
	benchSh(b, "zpool sync "+s.pool)
}

// timedZFS adds up the time spent in tree listings, to show where a
// cycle's cost goes as snapshots accumulate.
type timedZFS struct {
	zfsrepl.ZFS
	tree time.Duration
}

func (t *timedZFS) Tree(ctx context.Context, root string) ([]zfsrepl.TreeDataset, error) {
	start := time.Now()
	defer func() { t.tree += time.Since(start) }()
	return t.ZFS.Tree(ctx, root)
}

// BenchmarkPlatformSnapshotPrune measures the cycle's snapshot step (one
// tree listing, one zfs snapshot -r) plus its prune step (another listing,
// the retention plan, the prune guard, one destroy per dataset) at a 1 s
// cadence: every cycle adds a snapshot and retention destroys the oldest,
// on a root of 10 datasets holding 10, 100 and 1,000 snapshots each. The
// baseline, on the same root and alternating with it, is a bare
// `zfs snapshot -r` plus `zfs destroy -r` of the oldest.
func BenchmarkPlatformSnapshotPrune(b *testing.B) {
	tp := testpool.New(b, "zb", 1<<30, "-O", "compression=off")
	ctx := context.Background()
	s := &snapshotPruneBench{z: zfsrepl.NewExec(zfsrepl.Binaries{}, nil), pool: tp.Name, root: tp.Name + "/data",
		clock: &fixedClock{time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}}
	s.datasets = append(s.datasets, s.root)
	for i := 0; i < 9; i++ {
		s.datasets = append(s.datasets, fmt.Sprintf("%s/c%d", s.root, i))
	}
	for _, ds := range s.datasets {
		if err := s.z.Create(ctx, ds, nil); err != nil {
			b.Fatal(err)
		}
	}
	mp, err := s.z.GetProperty(ctx, s.root, "mountpoint")
	if err != nil {
		b.Fatal(err)
	}
	s.mount = mp

	// Each stage runs fewer cycles than it has snapshots, so the oldest
	// destroyed stays older than the cursor placed when the stage began.
	// Listing 10,000 snapshots takes minutes under TCG: two cycles of each
	// there.
	for _, stage := range []struct{ n, cycles int }{{10, 4}, {100, 4}, {1000, 2}} {
		n, cycles := stage.n, stage.cycles
		b.Run(fmt.Sprintf("snapshots=%d", n), func(b *testing.B) {
			s.grow(b, n)
			s.moveCursors(b, ctx)
			// Everything younger than n seconds: each cycle's new snapshot
			// pushes exactly the oldest out.
			grid, err := NewGrid([]config.KeepRule{{Span: time.Duration(n) * time.Second}})
			if err != nil {
				b.Fatal(err)
			}
			tz := &timedZFS{ZFS: s.z}
			c := &Cycle{ZFS: tz, Root: zfsrepl.Root{Source: s.root, Target: s.root + "-unused"}, Source: grid, Clock: s.clock}
			var tOurs, tSnap, tBare time.Duration
			b.ResetTimer()
			for i := 0; i < cycles; i++ {
				ours := func() {
					s.write(b)
					s.clock.t = s.clock.t.Add(time.Second)
					start := time.Now()
					name, skipped, err := c.snapshot(ctx, s.clock.Now())
					tSnap += time.Since(start)
					var res CycleResult
					if err == nil {
						err = c.prune(ctx, s.clock.Now(), &res)
					}
					tOurs += time.Since(start)
					if err != nil || skipped || res.Destroyed != len(s.datasets) || res.Refused != 0 {
						b.Fatalf("cycle %d: %v, skipped %v, %+v (want one destroyed per dataset)", i, err, skipped, res)
					}
					s.seq++ // the cycle named it with the next sequence
					s.names = append(s.names[1:], name)
				}
				bare := func() {
					s.write(b)
					name := s.next()
					tBare += benchSh(b, fmt.Sprintf("zfs snapshot -r %s@%s\nzfs destroy -r %s@%s\n", s.root, name, s.root, s.names[0]))
					s.names = append(s.names[1:], name)
				}
				// Alternate which goes first, so neither profits from the
				// other's warm caches.
				if i%2 == 0 {
					ours()
					bare()
				} else {
					bare()
					ours()
				}
			}
			b.StopTimer()
			vs, err := s.z.Versions(ctx, s.datasets[len(s.datasets)-1])
			if err != nil {
				b.Fatal(err)
			}
			if got := len(vs) - 1; got != n { // minus the cursor bookmark
				b.Fatalf("%d snapshots on %s after the cycles, want %d", got, s.datasets[len(s.datasets)-1], n)
			}
			// The same versions without their properties: zfs list then
			// skips the per-snapshot statistics (its "simple" mode, for
			// name, guid and createtxg only).
			fast := benchSh(b, fmt.Sprintf("zfs list -H -p -r -t snapshot,bookmark -o name,guid,createtxg -s createtxg %s >/dev/null", s.root))
			b.ReportMetric(tz.tree.Seconds()/float64(2*cycles), "tree-listing-s")
			b.ReportMetric(fast.Seconds(), "name-guid-txg-listing-s")
			b.ReportMetric(tOurs.Seconds()/float64(cycles), "ours-s/cycle")
			b.ReportMetric(tSnap.Seconds()/float64(cycles), "snapshot-step-s/cycle")
			b.ReportMetric(tBare.Seconds()/float64(cycles), "bare-s/cycle")
			b.ReportMetric(tOurs.Seconds()/tBare.Seconds(), "ratio")
			b.Logf("%d snapshots x %d datasets: snapshot+prune %.2f s/cycle (snapshot step %.2f; two tree listings %.2f s each), bare zfs snapshot -r + zfs destroy -r %.2f s/cycle, ratio %.2f; name,guid,createtxg listing %.2f s",
				n, len(s.datasets), tOurs.Seconds()/float64(cycles), tSnap.Seconds()/float64(cycles), tz.tree.Seconds()/float64(2*cycles),
				tBare.Seconds()/float64(cycles), tOurs.Seconds()/tBare.Seconds(), fast.Seconds())
		})
	}
}
