//go:build platform

package failover

// Rejoin on real OpenZFS in the lab VM: a/data (with a child) replicated
// to b/data, b/data promoted and written, a/data diverged by writes and by
// a snapshot b never got. Rejoin keeps a's state in a rescue, puts a/data
// back at the common snapshot, and b/data then replicates into it
// incrementally: no full send.

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/fixtures/testpool"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

const (
	rjS1 = "zrepl-ha_20261201T120000Z_000001"
	rjS2 = "zrepl-ha_20261201T120100Z_000002"
	rjS3 = "zrepl-ha_20261201T120200Z_000003" // taken on both sides after the failover: same name, other guids
)

func rjExists(ds string) bool { return exec.Command("zfs", "list", ds).Run() == nil }

// rjFiles lists the file names directly in dir.
func rjFiles(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if !e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// rjMounted mounts ds if it is not and returns its mountpoint.
func rjMounted(t *testing.T, ds string) string {
	t.Helper()
	if testpool.Prop(t, ds, "mounted") != "yes" {
		testpool.ZFS(t, "mount", ds)
	}
	return testpool.Prop(t, ds, "mountpoint")
}

type rjSetup struct {
	pool, a, b string
	z          *zfsrepl.Exec
}

// rjReplicated: p/a/data and p/a/data/c, two cycles replicated to
// p/b/data with the real engine; rjS2 is the newest common snapshot.
func rjReplicated(t *testing.T, ctx context.Context) rjSetup {
	p := testpool.New(t, "zrj", 512<<20, "-O", "compression=off", "-O", "atime=off").Name
	s := rjSetup{pool: p, a: p + "/a/data", b: p + "/b/data", z: zfsrepl.NewExec(zfsrepl.Binaries{}, nil)}
	testpool.ZFS(t, "create", "-p", s.a+"/c")
	testpool.ZFS(t, "create", p+"/b")
	eng := &zfsrepl.Engine{ZFS: s.z, Peer: "beta", Now: time.Now}
	for i, snap := range []string{rjS1, rjS2} {
		testpool.WriteRandom(t, s.a, fmt.Sprintf("f%d", i), 256<<10)
		testpool.WriteRandom(t, s.a+"/c", fmt.Sprintf("f%d", i), 256<<10)
		testpool.ZFS(t, "snapshot", "-r", s.a+"@"+snap)
		rep, err := eng.Replicate(ctx, zfsrepl.Root{Source: s.a, Target: s.b}, &zfsrepl.LocalReceiver{ZFS: s.z, Sender: "alpha"})
		if err != nil || len(rep.Conflicts) > 0 {
			t.Fatalf("replicating a to b: %v %v", err, rep.Conflicts)
		}
	}
	return s
}

// rjFailover: b/data becomes the new active, writes and snapshots rjS3.
func rjFailover(t *testing.T, s rjSetup) {
	for _, ds := range []string{s.b, s.b + "/c"} {
		testpool.ZFS(t, "set", "readonly=off", ds)
		testpool.ZFS(t, "set", "canmount=on", ds)
		rjMounted(t, ds)
		testpool.WriteRandom(t, ds, "from-b", 128<<10)
	}
	testpool.ZFS(t, "snapshot", "-r", s.b+"@"+rjS3)
}

// rjFailback replicates b/data to a/data with the real engine and checks
// that it went incrementally and b's files arrived.
func rjFailback(t *testing.T, ctx context.Context, s rjSetup) {
	t.Helper()
	eng := &zfsrepl.Engine{ZFS: s.z, Peer: "alpha", Now: time.Now}
	rep, err := eng.Replicate(ctx, zfsrepl.Root{Source: s.b, Target: s.a}, &zfsrepl.LocalReceiver{ZFS: s.z, Sender: "beta"})
	if err != nil {
		t.Fatalf("replicating b back to a: %v", err)
	}
	if len(rep.Conflicts) > 0 {
		t.Fatalf("conflicts: %v", rep.Conflicts)
	}
	kinds := map[zfsrepl.StepKind]int{}
	for _, st := range rep.Steps {
		kinds[st.Step.Kind]++
		t.Logf("step %s: %d bytes in %s", st.Step, st.Bytes, st.Duration.Round(time.Millisecond))
	}
	if rep.FullSends() != 0 || kinds[zfsrepl.StepFull] != 0 || kinds[zfsrepl.StepIncremental] != 2 {
		t.Fatalf("failback steps %v: want 2 incrementals and no full send", kinds)
	}
	if rep.LatestConsistent != rjS3 {
		t.Errorf("latest consistent on a: %q, want %s", rep.LatestConsistent, rjS3)
	}
	for _, rel := range []string{"", "/c"} {
		got := testpool.TreeSum(t, filepath.Join(rjMounted(t, s.a+rel), ".zfs", "snapshot", rjS3))
		want := testpool.TreeSum(t, filepath.Join(rjMounted(t, s.b+rel), ".zfs", "snapshot", rjS3))
		if got != want {
			t.Errorf("a/data%s@%s differs from b's", rel, rjS3)
		}
		if _, err := os.Stat(filepath.Join(testpool.Prop(t, s.a+rel, "mountpoint"), "from-b")); err != nil {
			t.Errorf("b's new file did not arrive on a/data%s: %v", rel, err)
		}
	}
	t.Logf("failback: %d incremental steps, %d bytes, no full send", kinds[zfsrepl.StepIncremental], rep.BytesSent)
}

func rjPeerTree(t *testing.T, ctx context.Context, s rjSetup) []zfsrepl.TreeDataset {
	tree, err := s.z.Tree(ctx, s.b)
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func TestPlatformRejoinRescueDiverged(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	s := rjReplicated(t, ctx)
	rjFailover(t, s)

	// a/data diverges: files and a snapshot b does not have (same name as
	// b's rjS3, another guid), then more writes after it.
	sumS2 := map[string]string{}
	for _, rel := range []string{"", "/c"} {
		sumS2[rel] = testpool.TreeSum(t, filepath.Join(rjMounted(t, s.a+rel), ".zfs", "snapshot", rjS2))
		testpool.WriteRandom(t, s.a+rel, "lost1", 64<<10)
	}
	testpool.ZFS(t, "snapshot", "-r", s.a+"@"+rjS3)
	sumDivSnap := map[string]string{}
	sumBefore := map[string]string{}
	for _, rel := range []string{"", "/c"} {
		testpool.WriteRandom(t, s.a+rel, "lost2", 64<<10)
		sumDivSnap[rel] = testpool.TreeSum(t, filepath.Join(testpool.Prop(t, s.a+rel, "mountpoint"), ".zfs", "snapshot", rjS3))
		sumBefore[rel] = testpool.TreeSum(t, testpool.Prop(t, s.a+rel, "mountpoint"))
	}

	var logs bytes.Buffer
	now := time.Date(2026, 12, 1, 13, 0, 0, 0, time.UTC)
	res, err := Rejoin(ctx, s.z, s.a, rjPeerTree(t, ctx, s), s.b, 5, now, slog.New(slog.NewTextHandler(&logs, nil)))
	t.Logf("rejoin log:\n%s", logs.String())
	if err != nil {
		t.Fatal(err)
	}
	rescue := s.pool + "/zrepl-ha-rescue/" + strings.ReplaceAll(s.a, "/", "_") + "_5_20261201T130000Z"
	if !res.Diverged || res.Rescue != rescue || res.RescueSnapshot != "zrepl-ha_rescue_5_20261201T130000Z" || len(res.Datasets) != 2 {
		t.Fatalf("result %+v", res)
	}
	for _, d := range res.Datasets {
		if d.Base != rjS2 || !d.Diverged || len(d.Later) != 1 || d.Later[0] != rjS3 {
			t.Errorf("dataset %+v", d)
		}
	}
	for _, rel := range []string{"", "/c"} {
		// The rescue holds everything a had, the divergent snapshot too.
		if got := testpool.TreeSum(t, rjMounted(t, rescue+rel)); got != sumBefore[rel] {
			t.Errorf("rescue%s: content differs from a/data%s before the rejoin", rel, rel)
		}
		if got := testpool.TreeSum(t, filepath.Join(testpool.Prop(t, rescue+rel, "mountpoint"), ".zfs", "snapshot", rjS3)); got != sumDivSnap[rel] {
			t.Errorf("rescue%s@%s: differs from a's divergent snapshot", rel, rjS3)
		}
		// a/data is the common snapshot again, a read-only promoted clone.
		if got := testpool.TreeSum(t, rjMounted(t, s.a+rel)); got != sumS2[rel] {
			t.Errorf("a/data%s: content differs from @%s", rel, rjS2)
		}
		if ro, origin, ro2 := testpool.Prop(t, s.a+rel, "readonly"), testpool.Prop(t, s.a+rel, "origin"), testpool.Prop(t, rescue+rel, "origin"); ro != "on" || origin != "-" || ro2 != s.a+rel+"@"+rjS2 {
			t.Errorf("a/data%s: readonly=%s origin=%s; rescue origin=%s", rel, ro, origin, ro2)
		}
		if g1, g2 := testpool.Prop(t, s.a+rel+"@"+rjS2, "guid"), testpool.Prop(t, s.b+rel+"@"+rjS2, "guid"); g1 != g2 {
			t.Errorf("a/data%s@%s guid %s, b's %s", rel, rjS2, g1, g2)
		}
	}
	t.Logf("files in the rescue: %v; in a/data: %v", rjFiles(t, testpool.Prop(t, rescue, "mountpoint")), rjFiles(t, testpool.Prop(t, s.a, "mountpoint")))
	if rs, err := Rescues(ctx, s.z, []string{s.pool}); err != nil || len(rs) != 1 || rs[0] != rescue {
		t.Errorf("Rescues = %v, %v", rs, err)
	}

	rjFailback(t, ctx, s)

	// A second Rejoin finds nothing diverged and moves nothing.
	res, err = Rejoin(ctx, s.z, s.a, rjPeerTree(t, ctx, s), s.b, 5, now.Add(time.Hour), nil)
	if err != nil || res.Diverged || res.Rescue != "" {
		t.Errorf("second rejoin: %+v %v", res, err)
	}
}

func TestPlatformRejoinRescueNoDivergence(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	s := rjReplicated(t, ctx)
	rjFailover(t, s)
	guid := testpool.Prop(t, s.a, "guid")
	res, err := Rejoin(ctx, s.z, s.a, rjPeerTree(t, ctx, s), s.b, 5, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Diverged || res.Rescue != "" {
		t.Fatalf("result %+v", res)
	}
	for _, rel := range []string{"", "/c"} {
		if ro := testpool.Prop(t, s.a+rel, "readonly"); ro != "on" {
			t.Errorf("a/data%s readonly=%s", rel, ro)
		}
	}
	if testpool.Prop(t, s.a, "guid") != guid || rjExists(s.pool+"/zrepl-ha-rescue") {
		t.Error("something was renamed or a rescue area was made")
	}
	rjFailback(t, ctx, s)
}

// A crash after the rename, before any clone: a/data is gone, everything is
// in the rescue. Rejoin run again completes from there.
func TestPlatformRejoinRescueAfterCrash(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	s := rjReplicated(t, ctx)
	rjFailover(t, s)
	sumS2 := testpool.TreeSum(t, filepath.Join(rjMounted(t, s.a+"/c"), ".zfs", "snapshot", rjS2))
	testpool.WriteRandom(t, s.a+"/c", "lost", 64<<10)
	sumBefore := testpool.TreeSum(t, testpool.Prop(t, s.a+"/c", "mountpoint"))

	// Steps (a) and (b) by hand, as the first run would have done them.
	const ts = "20261201T130000Z"
	rescue := s.pool + "/zrepl-ha-rescue/" + strings.ReplaceAll(s.a, "/", "_") + "_5_" + ts
	testpool.ZFS(t, "snapshot", "-r", s.a+"@zrepl-ha_rescue_5_"+ts)
	testpool.ZFS(t, "create", "-o", "canmount=off", s.pool+"/zrepl-ha-rescue")
	testpool.ZFS(t, "rename", s.a, rescue)

	res, err := Rejoin(ctx, s.z, s.a, rjPeerTree(t, ctx, s), s.b, 5, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed || res.Rescue != rescue || len(res.Datasets) != 2 {
		t.Fatalf("result %+v", res)
	}
	if got := testpool.TreeSum(t, rjMounted(t, rescue+"/c")); got != sumBefore {
		t.Error("the rescue's child lost a's writes")
	}
	if got := testpool.TreeSum(t, rjMounted(t, s.a+"/c")); got != sumS2 {
		t.Errorf("a/data/c differs from @%s", rjS2)
	}
	rjFailback(t, ctx, s)
}
