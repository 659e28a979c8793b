package scheduler

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/internal/config"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

// On a passive, retention destroys old received snapshots but never the
// held base or the newest one, whatever the grid says.
func TestPruneReceiverKeepsHeldBaseAndNewest(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	f := &poolFake{ds: "tank/data"}
	for seq := uint64(1); seq <= 6; seq++ {
		v := zfsrepl.Version{Name: "tank/data@" + zfsrepl.SnapshotName(t0.Add(time.Duration(seq)*time.Second), seq), Type: zfsrepl.Snapshot, CreateTXG: seq}
		if seq == 3 {
			v.UserRefs = 1 // the replication base, held by the sender's tag
		}
		f.versions = append(f.versions, v)
	}
	grid, err := NewGrid([]config.KeepRule{{Span: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	destroyed, refused, err := PruneReceiver(context.Background(), f, "tank/data", grid, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{f.versions[0].Name, f.versions[1].Name, f.versions[3].Name, f.versions[4].Name}
	slices.Sort(f.destroyed)
	if !slices.Equal(f.destroyed, want) || destroyed != 4 || refused != 2 {
		t.Fatalf("destroyed %v (%d), refused %d; want %v", f.destroyed, destroyed, refused, want)
	}
}
