//go:build platform

package scheduler

// A 1 s cadence on real ZFS in the lab VM with a writer running: the
// snapshot count stays within what retention allows, the lag stays bounded,
// and no base is ever destroyed (no full resend after the first cycle).

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/fixtures/testpool"
	"github.com/zrepl-ha/zrepl-ha/internal/config"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

func labPool(t *testing.T) string { return testpool.New(t, "zs", 512<<20).Name }

func TestPlatformOneSecondCadenceWithWriter(t *testing.T) {
	src, dst := labPool(t), labPool(t)
	root := zfsrepl.Root{Source: src + "/data", Target: dst + "/data"}
	z := zfsrepl.NewExec(zfsrepl.Binaries{}, nil)
	ctx := context.Background()
	for _, ds := range []string{root.Source, root.Source + "/a"} {
		if err := z.Create(ctx, ds, nil); err != nil {
			t.Fatal(err)
		}
	}
	// A grid small enough to prune within the test: everything for 20 s,
	// then one per 10 s up to a minute.
	rules := []config.KeepRule{{Span: 20 * time.Second}, {Span: time.Minute, Interval: 10 * time.Second}}
	grid, err := NewGrid(rules)
	if err != nil {
		t.Fatal(err)
	}
	cyc := &Cycle{ZFS: z, Engine: &zfsrepl.Engine{ZFS: z, Peer: "beta"},
		Receiver: &zfsrepl.LocalReceiver{ZFS: z, Sender: "alpha"}, Root: root,
		Source: grid, Target: grid, TargetZFS: z, Clock: RealClock{}, Locks: &Locks{}}

	var mu sync.Mutex
	var results []CycleResult
	var errs []error
	stop, err := Schedule("@every 1s", func() {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		res, err := cyc.Run(cctx)
		mu.Lock()
		results = append(results, res)
		if err != nil {
			errs = append(errs, err)
		}
		mu.Unlock()
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The writer: a file a second into the child, for the whole run.
	mp := strings.TrimSpace(run(t, "zfs", "get", "-H", "-o", "value", "mountpoint", root.Source+"/a"))
	end := time.Now().Add(90 * time.Second)
	maxCount, maxLag := 0, time.Duration(0)
	for i := 0; time.Now().Before(end); i++ {
		os.WriteFile(filepath.Join(mp, fmt.Sprintf("w%04d", i)), []byte(strings.Repeat("x", 4096)), 0o644)
		time.Sleep(time.Second)
		vs, _ := z.Versions(ctx, root.Source+"/a")
		if n := len(vs); n > maxCount {
			maxCount = n
		}
		mu.Lock()
		if len(results) > 0 && results[len(results)-1].Report != nil {
			if lag := results[len(results)-1].Report.Lag; lag > maxLag {
				maxLag = lag
			}
		}
		mu.Unlock()
	}
	stop()
	mu.Lock()
	defer mu.Unlock()
	full, destroyed, cycles := 0, 0, len(results)
	for _, r := range results {
		if r.Report != nil {
			full += r.Report.FullSends()
		}
		destroyed += r.Destroyed
	}
	allowed := grid.MaxKept(time.Now(), time.Second) + 2 // +bookmarks' snapshots in flight
	t.Logf("%d cycles in 90 s, %d destroyed by retention, max %d versions on the sender child (allowed %d), max lag %v, %d errors",
		cycles, destroyed, maxCount, allowed, maxLag, len(errs))
	if len(errs) > 0 {
		t.Fatalf("cycle errors: %v", errs)
	}
	if cycles < 5 || full != 2 {
		t.Fatalf("%d cycles, %d full sends (want 2: the first cycle's root and child only)", cycles, full)
	}
	if maxCount > allowed {
		t.Fatalf("the sender held %d versions, retention allows %d", maxCount, allowed)
	}
	if maxLag > 45*time.Second {
		t.Fatalf("lag reached %v", maxLag)
	}
	if destroyed == 0 {
		t.Fatal("retention never pruned in 90 s with a 20 s all-window")
	}
}

func run(t *testing.T, args ...string) string { return testpool.Run(t, args[0], args[1:]...) }
