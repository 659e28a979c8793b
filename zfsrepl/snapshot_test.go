package zfsrepl

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

func owned(ds string, t time.Time, seq uint64) Version {
	return Version{Name: ds + "@" + SnapshotName(t, seq), Type: Snapshot, CreateTXG: seq}
}

func TestNextSnapshotName(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	ds := "tank/data"
	at := func(d time.Duration, seq uint64) Version { return owned(ds, now.Add(d), seq) }
	cases := []struct {
		name string
		vs   []Version
		want string
		far  int
	}{
		{"first", nil, SnapshotName(now, 1), 0},
		{"clock moves on", []Version{at(-2*time.Second, 7)}, SnapshotName(now, 8), 0},
		{"sub-second clock is truncated", nil, SnapshotName(now, 1), 0},
		{"stepped back a little: keep the newest time", []Version{at(-time.Second, 7), at(10*time.Minute, 8)}, SnapshotName(now.Add(10*time.Minute), 9), 0},
		{"exactly the bound ahead: still followed", []Version{at(MaxFutureSkew, 3)}, SnapshotName(now.Add(MaxFutureSkew), 4), 0},
		{"a second past the bound: the clock wins", []Version{at(MaxFutureSkew+time.Second, 3)}, SnapshotName(now, 4), 1},
		{"a year ahead: the clock wins, the sequence goes on", []Version{at(-time.Hour, 5), at(365*24*time.Hour, 6), at(365*24*time.Hour, 7)}, SnapshotName(now, 8), 2},
		{"after the correction: follow the newest sane name, ignore the far ones",
			[]Version{at(365*24*time.Hour, 6), at(5*time.Second, 7)}, SnapshotName(now.Add(5*time.Second), 8), 1},
		{"foreign names and bookmarks do not count",
			[]Version{{Name: ds + "@manual", Type: Snapshot}, {Name: ds + "#" + SnapshotName(now.Add(48*time.Hour), 99), Type: Bookmark}}, SnapshotName(now, 1), 0},
	}
	for _, c := range cases {
		clock := now
		if c.name == "sub-second clock is truncated" {
			clock = now.Add(900 * time.Millisecond)
		}
		got, far := NextSnapshotName(c.vs, clock)
		if got != c.want || len(far) != c.far {
			t.Errorf("%s: got %s (%d far), want %s (%d far)", c.name, got, len(far), c.want, c.far)
		}
	}
}

// TestSnapshotNamesAcrossAFarFutureClock runs a clock that jumps a year
// ahead for a minute and is then corrected: the sequence always grows
// with creation, names from the clock again right after the correction,
// and LatestConsistent still picks the newest cut, not the far-future one.
func TestSnapshotNamesAcrossAFarFutureClock(t *testing.T) {
	ds := "tank/data"
	start := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	var vs []Version
	var lastSeq uint64
	for i := 0; i < 600; i++ {
		now := start.Add(time.Duration(i) * time.Second)
		if i >= 100 && i < 160 {
			now = now.AddDate(1, 0, 0) // the wrong clock
		}
		name, far := NextSnapshotName(vs, now)
		nt, seq, _ := ParseSnapshotName(name)
		if seq != lastSeq+1 {
			t.Fatalf("step %d: sequence %d after %d", i, seq, lastSeq)
		}
		lastSeq = seq
		if i >= 160 {
			if !nt.Equal(now) {
				t.Fatalf("step %d: named %s, the clock says %s", i, nt, now)
			}
			if len(far) != 60 {
				t.Fatalf("step %d: %d far-future names reported, want 60", i, len(far))
			}
		}
		vs = append(vs, Version{Name: ds + "@" + name, Type: Snapshot, CreateTXG: seq})
	}
	tree := []TreeDataset{{Name: ds, Versions: vs}}
	if got, want := LatestConsistent(tree), vs[len(vs)-1].Short(); got != want {
		t.Fatalf("LatestConsistent %s, want the newest cut %s", got, want)
	}
}

type snapshotRecorder struct {
	ZFS
	taken []string
}

func (r *snapshotRecorder) Snapshot(ctx context.Context, root, short string, recursive bool) error {
	r.taken = append(r.taken, root+"@"+short)
	return nil
}

func TestSnapshotRootLogsFarFutureOncePerCall(t *testing.T) {
	ds := "tank/data"
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	vs := []Version{owned(ds, now.AddDate(0, 0, 3), 1), owned(ds, now.AddDate(0, 0, 3).Add(time.Second), 2)}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	z := &snapshotRecorder{}
	name, err := SnapshotRoot(context.Background(), z, ds, vs, now, log)
	if err != nil {
		t.Fatal(err)
	}
	if want := SnapshotName(now, 3); name != want || !slices.Equal(z.taken, []string{ds + "@" + want}) {
		t.Fatalf("took %v (%s), want %s", z.taken, name, want)
	}
	out := buf.String()
	if strings.Count(out, "\n") != 1 || !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "count=2") ||
		!strings.Contains(out, "72h0m1s") || !strings.Contains(out, "NTP") {
		t.Fatalf("log: %s", out)
	}
	buf.Reset()
	if _, err := SnapshotRoot(context.Background(), z, ds, []Version{owned(ds, now, 1)}, now, log); err != nil || buf.Len() != 0 {
		t.Fatalf("sane names logged %q (%v)", buf.String(), err)
	}
}

func TestLatestConsistentByCreationNotName(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	far := owned("b/d", now.AddDate(1, 0, 0), 1) // sorts last by name
	newer := owned("b/d", now, 2)
	farX, newerX := far, newer
	farX.Name = strings.Replace(far.Name, "b/d@", "b/d/x@", 1)
	newerX.Name = strings.Replace(newer.Name, "b/d@", "b/d/x@", 1)
	tree := []TreeDataset{{Name: "b/d", Versions: []Version{far, newer}}, {Name: "b/d/x", Versions: []Version{farX, newerX}}}
	if got := LatestConsistent(tree); got != newer.Short() {
		t.Fatalf("got %s, want %s", got, newer.Short())
	}
	tree[1].Versions = tree[1].Versions[:1] // the child has not received the newer cut yet
	if got := LatestConsistent(tree); got != far.Short() {
		t.Fatalf("got %s, want %s", got, far.Short())
	}
}
