//go:build platform

package zfsrepl

import (
	"context"
	"errors"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pair is a sender pool and a receiver pool in one VM, replicating root
// "data" through the in-process Receiver.
type pair struct {
	src, dst *pool
	root     Root
	eng      *Engine
	rcv      Receiver
	clock    time.Time
}

func newPair(t *testing.T) *pair {
	src, dst := newPool(t), newPool(t)
	p := &pair{src: src, dst: dst, root: Root{Source: src.ds("data"), Target: dst.ds("data")},
		clock: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	p.eng = &Engine{ZFS: src.z, Peer: "beta", Now: func() time.Time { return p.clock }}
	p.rcv = &LocalReceiver{ZFS: dst.z, Sender: "alpha"}
	return p
}

func (p *pair) snapshot(t *testing.T) string {
	t.Helper()
	p.clock = p.clock.Add(time.Second)
	s, err := TakeSnapshot(testCtx(t), p.src.z, p.root.Source, p.clock)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (p *pair) replicate(t *testing.T) *Report {
	t.Helper()
	rep, err := p.eng.Replicate(testCtx(t), p.root, p.rcv)
	if err != nil {
		t.Fatalf("replicate: %v", err)
	}
	return rep
}

// heldOnTarget lists the target root's held snapshots (short names).
func (p *pair) heldOnTarget(t *testing.T) []string {
	t.Helper()
	rvs, err := p.dst.z.Versions(testCtx(t), p.root.Target)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, v := range rvs {
		if v.Type == Snapshot && v.UserRefs > 0 {
			out = append(out, v.Short())
		}
	}
	return out
}

// mountTarget mounts a received (canmount=noauto) dataset for checksums.
func (p *pair) mountTarget(t *testing.T, ds string) string {
	t.Helper()
	if v, _ := p.dst.z.GetProperty(testCtx(t), ds, "mounted"); v != "yes" {
		run(t, "zfs", "mount", ds)
	}
	return p.dst.mountpoint(t, ds)
}

func (p *pair) assertSame(t *testing.T, rel string) {
	t.Helper()
	src := p.src.ds("data" + rel)
	sameChecksums(t, checksums(t, p.src.mountpoint(t, src)), checksums(t, p.mountTarget(t, p.dst.ds("data"+rel))))
}

func TestPlatformEngineInitialIncrementalBacklog(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.src.create(t, "data")
	p.src.create(t, "data/a")
	p.src.writeFiles(t, p.src.ds("data"), "r", 4, 64<<10)
	p.src.writeFiles(t, p.src.ds("data/a"), "a", 4, 64<<10)
	first := p.snapshot(t)
	rep := p.replicate(t)
	if rep.FullSends() != 2 || rep.LatestConsistent != first || rep.Lag < 0 {
		t.Fatalf("initial: %d full sends, latest consistent %q lag %v", rep.FullSends(), rep.LatestConsistent, rep.Lag)
	}
	for _, ds := range []string{p.dst.ds("data"), p.dst.ds("data/a")} {
		for prop, want := range map[string]string{"readonly": "on", "canmount": "noauto", "mounted": "no"} {
			if v, _ := p.dst.z.GetProperty(testCtx(t), ds, prop); v != want {
				t.Errorf("%s %s=%s want %s", ds, prop, v, want)
			}
		}
	}
	p.src.writeFiles(t, p.src.ds("data/a"), "b", 2, 64<<10)
	p.snapshot(t)
	rep = p.replicate(t)
	if rep.FullSends() != 0 || len(rep.Steps) != 2 {
		t.Fatalf("second cycle: %d full sends, %d steps", rep.FullSends(), len(rep.Steps))
	}
	// A 12-snapshot backlog goes as one -I stream per dataset. (12, not
	// more: under TCG each snapshot costs a zfs snapshot and a txg on the
	// receiver, this test was the platform tier's longest at 30 (4.6 min),
	// and the benchmark covers growth with snapshot count.)
	const backlog = 12
	var last string
	for i := 0; i < backlog; i++ {
		if i%4 == 0 {
			p.src.writeFiles(t, p.src.ds("data"), "bl"+string(rune('a'+i/4)), 1, 8<<10)
		}
		last = p.snapshot(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rep, err := p.eng.Replicate(ctx, p.root, p.rcv)
	if err != nil {
		t.Fatalf("backlog replicate: %v", err)
	}
	if len(rep.Steps) != 2 || rep.FullSends() != 0 || !rep.Steps[0].Step.Send.Intermediates {
		t.Fatalf("backlog: %d steps (%d full), want 2 coalesced -I streams", len(rep.Steps), rep.FullSends())
	}
	if rep.LatestConsistent != last {
		t.Fatalf("latest consistent %s, want %s", rep.LatestConsistent, last)
	}
	if n := len(p.dst.shorts(t, p.dst.ds("data/a"))); n != backlog+2 {
		t.Fatalf("receiver has %d snapshots, want %d", n, backlog+2)
	}
	p.assertSame(t, "")
	p.assertSame(t, "/a")
	// Protection: exactly one cursor per dataset on the sender, and the
	// receiver's newest snapshot held.
	for _, rel := range []string{"data", "data/a"} {
		var cursors []string
		vs, _ := p.src.z.Versions(testCtx(t), p.src.ds(rel))
		for _, v := range vs {
			if v.Type == Bookmark {
				cursors = append(cursors, v.Short())
			}
		}
		if !reflect.DeepEqual(cursors, []string{CursorName("beta", last)}) {
			t.Errorf("%s cursors %v", rel, cursors)
		}
		hs, err := p.dst.z.Holds(testCtx(t), p.dst.ds(rel)+"@"+last)
		if err != nil || len(hs) != 1 || hs[0].Tag != HoldTag("alpha") {
			t.Errorf("%s holds %v %v", rel, hs, err)
		}
	}
	// Idle cycle: nothing to send.
	if rep = p.replicate(t); len(rep.Steps) != 0 {
		t.Fatalf("idle cycle sent %d steps", len(rep.Steps))
	}
	st := p.eng.Status()
	if len(st) != 1 || st[0].LatestConsistent != last || st[0].Lag < 0 || st[0].BytesSent == 0 || st[0].LastError != "" {
		t.Fatalf("status: %+v", st)
	}
}

// cuttingReceiver cuts each stream at a random offset while cuts remain.
type cuttingReceiver struct {
	Receiver
	cuts    int
	offsets []int64
}

func (c *cuttingReceiver) Receive(ctx context.Context, req ReceiveRequest, r io.Reader) error {
	if c.cuts == 0 {
		return c.Receiver.Receive(ctx, req, r)
	}
	c.cuts--
	n := 1 + mrand.Int64N(1<<20)
	c.offsets = append(c.offsets, n)
	err := c.Receiver.Receive(ctx, req, io.LimitReader(r, n))
	io.Copy(io.Discard, r) // the sender finishes into the void, as over a dead link
	return err
}

func TestPlatformEngineResumesAfter20RandomCuts(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.src.create(t, "data")
	p.src.writeFiles(t, p.src.ds("data"), "f", 32, 1<<20)
	p.snapshot(t)
	cr := &cuttingReceiver{Receiver: p.rcv, cuts: 20}
	resumes := 0
	for attempt := 0; attempt < 25; attempt++ {
		rep, err := p.eng.Replicate(testCtx(t), p.root, cr)
		for _, s := range rep.Steps {
			if s.Step.Kind == StepResume {
				resumes++
			}
		}
		if err == nil {
			break
		}
		var re *ResumableError
		if !errors.As(err, &re) {
			t.Fatalf("attempt %d: want a resumable error, got %v", attempt, err)
		}
	}
	if cr.cuts != 0 || resumes < 20 {
		t.Fatalf("cuts left %d, resumes %d (offsets %v)", cr.cuts, resumes, cr.offsets)
	}
	t.Logf("cut at %v", cr.offsets)
	p.assertSame(t, "")
	if tok, _ := p.dst.z.ResumeToken(testCtx(t), p.dst.ds("data")); tok != "" {
		t.Fatal("token left after completion")
	}
	// After the resumes, protection was repaired: the received snapshot is held.
	rep := p.replicate(t)
	hs, _ := p.dst.z.Holds(testCtx(t), p.dst.ds("data")+"@"+rep.LatestConsistent)
	if len(hs) != 1 {
		t.Fatalf("received snapshot not held after resumes: %v", hs)
	}
}

func TestPlatformEnginePruneNeverLosesBase(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.src.create(t, "data")
	var names []string
	for i := 0; i < 5; i++ {
		p.src.writeFiles(t, p.src.ds("data"), "w"+string(rune('a'+i)), 1, 16<<10)
		names = append(names, p.snapshot(t))
	}
	p.replicate(t)
	for i := 0; i < 5; i++ {
		p.src.writeFiles(t, p.src.ds("data"), "v"+string(rune('a'+i)), 1, 16<<10)
		names = append(names, p.snapshot(t))
	}
	ctx := testCtx(t)
	// Retention asks to destroy every snapshot on both sides.
	vs, _ := p.src.z.Versions(ctx, p.root.Source)
	var all []string
	for _, n := range names {
		all = append(all, p.root.Source+"@"+n)
	}
	res, err := Prune(ctx, p.src.z, SenderSide, vs, all, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Destroyed) != 4 || res.Refused[p.root.Source+"@"+names[4]] == "" {
		t.Fatalf("sender prune destroyed %v, refused %v", res.Destroyed, res.Refused)
	}
	rvs, _ := p.dst.z.Versions(ctx, p.root.Target)
	var rall []string
	for _, n := range names[:5] {
		rall = append(rall, p.root.Target+"@"+n)
	}
	if _, err := Prune(ctx, p.dst.z, ReceiverSide, rvs, rall, false); err != nil {
		t.Fatal(err)
	}
	if got := p.dst.shorts(t, p.root.Target); !reflect.DeepEqual(got, []string{"@" + names[4]}) {
		t.Fatalf("receiver kept %v, want only the base", got)
	}
	// Even zfs destroy of the receiver's base is refused by the hold.
	if err := p.dst.z.Destroy(ctx, p.root.Target+"@"+names[4], DestroyFlags{}); !errors.Is(err, ErrHeld) {
		t.Fatalf("destroy of the held base: %v", err)
	}
	// An admin destroys the sender's base snapshot by hand: the cursor
	// bookmark still carries replication incrementally.
	if err := p.src.z.Destroy(ctx, p.root.Source+"@"+names[4], DestroyFlags{}); err != nil {
		t.Fatal(err)
	}
	rep := p.replicate(t)
	if rep.FullSends() != 0 || rep.LatestConsistent != names[9] {
		t.Fatalf("after losing the sender's base: %d full sends, latest %s", rep.FullSends(), rep.LatestConsistent)
	}
	p.assertSame(t, "")
}

func TestPlatformEngineModifiedReceiverIsAConflict(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.src.create(t, "data")
	p.snapshot(t)
	p.replicate(t)
	target := p.root.Target
	run(t, "zfs", "set", "readonly=off", target)
	mp := p.mountTarget(t, target)
	os.WriteFile(filepath.Join(mp, "written-on-passive"), []byte("keep me"), 0o644)
	run(t, "sync")
	before := p.dst.shorts(t, target)
	p.src.writeFiles(t, p.src.ds("data"), "f", 1, 4096)
	p.snapshot(t)
	rep, err := p.eng.Replicate(testCtx(t), p.root, p.rcv)
	if err != nil {
		t.Fatalf("a conflict must be reported, not returned: %v", err)
	}
	if len(rep.Conflicts) != 1 || rep.Conflicts[0].Dataset != target || !strings.Contains(rep.Conflicts[0].Error(), "modified") {
		t.Fatalf("conflicts: %v", rep.Conflicts)
	}
	if b, err := os.ReadFile(filepath.Join(mp, "written-on-passive")); err != nil || string(b) != "keep me" {
		t.Fatal("the receiver's own write was lost")
	}
	if got := p.dst.shorts(t, target); !reflect.DeepEqual(got, before) {
		t.Fatalf("snapshots changed: %v -> %v", before, got)
	}
}

func TestPlatformEngineRawEncryptedRoot(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	keyfile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(keyfile, []byte("correct horse battery staple\n"), 0o600)
	if err := p.src.z.Create(testCtx(t), p.root.Source, map[string]string{"encryption": "on", "keyformat": "passphrase", "keylocation": "file://" + keyfile}); err != nil {
		t.Fatal(err)
	}
	p.src.create(t, "data/child")
	p.src.writeFiles(t, p.src.ds("data/child"), "c", 2, 64<<10)
	p.snapshot(t)
	p.replicate(t)
	p.src.writeFiles(t, p.src.ds("data/child"), "d", 2, 64<<10)
	p.snapshot(t)
	rep := p.replicate(t)
	for _, s := range rep.Steps {
		if !s.Step.Send.Raw {
			t.Errorf("%s not raw", s.Step)
		}
	}
	if ks, _ := p.dst.z.GetProperty(testCtx(t), p.root.Target, "keystatus"); ks != "unavailable" {
		t.Fatalf("keystatus %q: the passive must not need the key", ks)
	}
	// Each raw-received dataset is its own encryption root on the receiver
	// (no -R stream ties them), so each needs its key loaded.
	run(t, "zfs", "load-key", "-L", "file://"+keyfile, p.root.Target)
	run(t, "zfs", "load-key", "-L", "file://"+keyfile, p.root.Target+"/child")
	p.assertSame(t, "/child")
}

func TestPlatformEngineChildrenCreatedAndDestroyed(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.src.create(t, "data")
	p.src.create(t, "data/old")
	p.snapshot(t)
	p.replicate(t)
	p.src.create(t, "data/new")
	p.src.writeFiles(t, p.src.ds("data/new"), "n", 2, 16<<10)
	run(t, "zfs", "destroy", "-r", p.src.ds("data/old"))
	p.snapshot(t)
	rep := p.replicate(t)
	if rep.FullSends() != 1 || rep.Steps[len(rep.Steps)-1].Step.Target != p.dst.ds("data/new") {
		t.Fatalf("new child: %+v", rep.Steps)
	}
	if !reflect.DeepEqual(rep.OnlyOnReceiver, []string{p.dst.ds("data/old")}) {
		t.Fatalf("destroyed child not reported: %v", rep.OnlyOnReceiver)
	}
	if _, err := p.dst.z.List(testCtx(t), p.dst.ds("data/old"), false); err != nil {
		t.Fatalf("the receiver's copy of a destroyed child was removed: %v", err)
	}
	p.assertSame(t, "/new")
	// A child created after the last snapshot waits for the next one.
	p.src.create(t, "data/later")
	if rep = p.replicate(t); !reflect.DeepEqual(rep.Waiting, []string{p.src.ds("data/later")}) {
		t.Fatalf("waiting: %v", rep.Waiting)
	}
}

func TestPlatformEngineUserPropertiesReplicated(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.src.create(t, "data")
	p.src.z.SetProperty(testCtx(t), p.root.Source, "com.example:owner", "alice")
	p.src.z.SetProperty(testCtx(t), p.root.Source, "zrepl-ha:epoch", "9")
	p.snapshot(t)
	p.replicate(t)
	p.src.z.SetProperty(testCtx(t), p.root.Source, "com.example:owner", "bob")
	p.snapshot(t)
	p.replicate(t)
	if v, _ := p.dst.z.GetProperty(testCtx(t), p.root.Target, "com.example:owner"); v != "bob" {
		t.Fatalf("user property on the receiver: %q", v)
	}
	if v, _ := p.dst.z.GetProperty(testCtx(t), p.root.Target, "zrepl-ha:epoch"); v != "-" {
		t.Fatalf("the epoch is per node and must not replicate, got %q", v)
	}
	// GetProperties: several properties of several datasets in one zfs get.
	got, err := p.src.z.GetProperties(testCtx(t), []string{p.root.Source, p.src.ds("data")}, "com.example:owner", "readonly")
	if err != nil {
		t.Fatal(err)
	}
	if got[p.root.Source]["com.example:owner"] != "bob" || got[p.src.ds("data")]["com.example:owner"] != "bob" || got[p.root.Source]["readonly"] != "off" {
		t.Fatalf("GetProperties: %v", got)
	}
	if _, err := p.src.z.GetProperties(testCtx(t), []string{p.root.Source + "/nope"}, "readonly"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("GetProperties of a missing dataset: %v", err)
	}
}

func TestPlatformEngineSplitsOversizedBacklog(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.src.create(t, "data")
	p.snapshot(t)
	p.replicate(t)
	for i := 0; i < 6; i++ {
		p.src.writeFiles(t, p.src.ds("data"), "big"+string(rune('a'+i)), 1, 512<<10)
		p.snapshot(t)
	}
	p.eng.MaxStreamBytes = 1 << 20
	rep := p.replicate(t)
	if len(rep.Steps) < 3 {
		t.Fatalf("a 3 MiB backlog with a 1 MiB bound went in %d streams", len(rep.Steps))
	}
	for _, s := range rep.Steps {
		if s.Bytes > 2<<20 {
			t.Errorf("stream %s is %d bytes", s.Step, s.Bytes)
		}
	}
	if n := len(p.dst.shorts(t, p.root.Target)); n != 7 {
		t.Fatalf("receiver has %d snapshots, want 7", n)
	}
	p.assertSame(t, "")
}

func TestPlatformTakeSnapshotSequence(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.src.create(t, "data")
	p.src.create(t, "data/x")
	a, b := p.snapshot(t), p.snapshot(t)
	_, sa, _ := ParseSnapshotName(a)
	_, sb, _ := ParseSnapshotName(b)
	if sb != sa+1 {
		t.Fatalf("sequence %d then %d", sa, sb)
	}
	// A clock that steps back does not make names sort out of order.
	p.clock = p.clock.Add(-time.Hour)
	c := p.snapshot(t)
	if c <= b {
		t.Fatalf("%s sorts before %s", c, b)
	}
	if got := p.src.shorts(t, p.src.ds("data/x")); len(got) != 3 {
		t.Fatalf("child snapshots %v", got)
	}
	// written: 0 right after a snapshot, more once data lands.
	tree, err := p.src.z.Tree(testCtx(t), p.root.Source)
	if err != nil || tree[0].Written != 0 {
		t.Fatalf("written after a snapshot: %+v %v", tree, err)
	}
	p.src.writeFiles(t, p.src.ds("data/x"), "w", 1, 64<<10)
	tree, _ = p.src.z.Tree(testCtx(t), p.root.Source)
	if tree[1].Written == 0 {
		t.Fatalf("written stays 0 after a write: %+v", tree[1])
	}
}

// A fresh target for the same peer (the passive's pool was rebuilt) gets a
// full send even though the sender's cursor for that snapshot exists.
func TestPlatformEngineFreshTargetSamePeer(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.src.create(t, "data")
	p.src.writeFiles(t, p.src.ds("data"), "f", 2, 16<<10)
	p.snapshot(t)
	p.replicate(t)
	p.root.Target = p.dst.ds("rebuilt")
	rep := p.replicate(t)
	if rep.FullSends() != 1 || rep.LatestConsistent == "" {
		t.Fatalf("fresh target: %d full sends, latest %q", rep.FullSends(), rep.LatestConsistent)
	}
}

// stuckEstimate is a ZFS whose size estimates never finish on their own.
type stuckEstimate struct {
	ZFS
	canceled atomic.Int32
}

func (s *stuckEstimate) SendSize(ctx context.Context, o SendOptions) (int64, error) {
	<-ctx.Done()
	s.canceled.Add(1)
	return 0, ctx.Err()
}

// TestPlatformEngineEstimateBesideTheStream: with progress reporting (the
// daemon), a step does not wait for its zfs send -nvP estimate; the
// estimate is cancelled when the step ends. With EstimateFirst (the CLI's
// progress bars) the estimate comes first.
func TestPlatformEngineEstimateBesideTheStream(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.src.create(t, "data")
	p.src.writeFiles(t, p.src.ds("data"), "r", 2, 64<<10)
	p.snapshot(t)
	stuck := &stuckEstimate{ZFS: p.src.z}
	var mu sync.Mutex
	var events []Progress
	p.eng.ZFS = stuck
	p.eng.OnProgress = func(pr Progress) { mu.Lock(); events = append(events, pr); mu.Unlock() }
	rep := p.replicate(t) // testCtx: 2 minutes; a waiting step would hang
	if rep.FullSends() != 1 || rep.LatestConsistent == "" {
		t.Fatalf("report: %d full sends, latest consistent %q", rep.FullSends(), rep.LatestConsistent)
	}
	if n := stuck.canceled.Load(); n != 1 {
		t.Fatalf("%d estimates cancelled, want 1", n)
	}
	mu.Lock()
	last := events[len(events)-1]
	mu.Unlock()
	if !last.Done || last.Bytes == 0 {
		t.Fatalf("last progress event %+v", last)
	}
	// EstimateAfter: a step that ends before it starts no estimate.
	p.eng.EstimateAfter = time.Hour
	p.src.writeFiles(t, p.src.ds("data"), "q", 1, 64<<10)
	p.snapshot(t)
	p.replicate(t)
	if n := stuck.canceled.Load(); n != 1 {
		t.Fatalf("EstimateAfter 1h: %d estimates ran, want none more", n-1)
	}
	p.eng.EstimateAfter = 0
	// EstimateFirst with the real ZFS: the first event carries the total.
	p.eng.ZFS, p.eng.EstimateFirst = p.src.z, true
	events = nil
	p.src.writeFiles(t, p.src.ds("data"), "s", 2, 256<<10)
	p.snapshot(t)
	p.replicate(t)
	if len(events) == 0 || events[0].Total == 0 {
		t.Fatalf("EstimateFirst: first event %+v of %d", events, len(events))
	}
}

// A handover's final cycle sends without moving the protection; the next
// cycle moves it. A receiver listing taken before the snapshot (a cycle
// lists the receiver beside its snapshot) plans the same steps.
func TestPlatformEngineFinalLeavesProtection(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	ctx := testCtx(t)
	p.src.create(t, "data")
	p.src.writeFiles(t, p.src.ds("data"), "a", 2, 32<<10)
	s1 := p.snapshot(t)
	p.replicate(t)

	// Two snapshots behind, with splitting and progress on: a normal cycle
	// would estimate (split, then beside the stream); a final one must not.
	p.src.writeFiles(t, p.src.ds("data"), "b", 2, 32<<10)
	p.snapshot(t)
	p.src.writeFiles(t, p.src.ds("data"), "b2", 1, 32<<10)
	before, err := p.rcv.Tree(ctx, p.root.Target)
	if err != nil {
		t.Fatal(err)
	}
	s2 := p.snapshot(t)
	sizes := &sizeCounter{ZFS: p.src.z}
	p.eng.ZFS, p.eng.MaxStreamBytes, p.eng.OnProgress = sizes, 1, func(Progress) {}
	rep, err := p.eng.ReplicateWith(ctx, p.root, p.rcv, ReplicateOptions{Final: true,
		ReceiverTree: func() ([]TreeDataset, error) { return before, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if rep.LatestConsistent != s2 || rep.FullSends() != 0 || len(rep.Steps) != 1 {
		t.Fatalf("final cycle: latest %q, %d full sends, %d steps; want %s in one incremental", rep.LatestConsistent, rep.FullSends(), len(rep.Steps), s2)
	}
	if n := sizes.n.Load(); n != 0 {
		t.Fatalf("the final cycle ran %d size estimates", n)
	}
	p.eng.ZFS, p.eng.MaxStreamBytes, p.eng.OnProgress = p.src.z, 0, nil
	protection := func() (held, cursors []string) {
		rvs, err := p.dst.z.Versions(ctx, p.root.Target)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range rvs {
			if v.Type == Snapshot && v.UserRefs > 0 {
				held = append(held, v.Short())
			}
		}
		svs, err := p.src.z.Versions(ctx, p.root.Source)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range svs {
			if v.Type == Bookmark && strings.HasPrefix(v.Short(), cursorPrefix("beta")) {
				cursors = append(cursors, v.Short())
			}
		}
		return held, cursors
	}
	held, cursors := protection()
	if !reflect.DeepEqual(held, []string{s1}) || !reflect.DeepEqual(cursors, []string{CursorName("beta", s1)}) {
		t.Fatalf("after the final cycle: held %v, cursors %v; want both still at %s", held, cursors, s1)
	}
	p.assertSame(t, "")

	// The next cycle moves both to the base it finds by guid.
	p.src.writeFiles(t, p.src.ds("data"), "c", 1, 32<<10)
	s3 := p.snapshot(t)
	if rep := p.replicate(t); rep.LatestConsistent != s3 || rep.FullSends() != 0 {
		t.Fatalf("next cycle: latest %q, %d full sends", rep.LatestConsistent, rep.FullSends())
	}
	held, cursors = protection()
	if !reflect.DeepEqual(held, []string{s3}) || !reflect.DeepEqual(cursors, []string{CursorName("beta", s3)}) {
		t.Fatalf("after the next cycle: held %v, cursors %v; want both at %s", held, cursors, s3)
	}
	p.assertSame(t, "")
}

// sizeCounter counts size estimates.
type sizeCounter struct {
	ZFS
	n atomic.Int32
}

func (c *sizeCounter) SendSize(ctx context.Context, o SendOptions) (int64, error) {
	c.n.Add(1)
	return c.ZFS.SendSize(ctx, o)
}

// cancelAfterReceive cancels the cycle's context once its receive has
// completed: a handover stopping the replicator just after the data arrived.
type cancelAfterReceive struct {
	Receiver
	cancel context.CancelFunc
}

func (c *cancelAfterReceive) Receive(ctx context.Context, req ReceiveRequest, r io.Reader) error {
	err := c.Receiver.Receive(ctx, req, r)
	c.cancel()
	return err
}

// A cycle cancelled from outside leaves the protection where it was (no
// confirm on the handover's clock); the next cycle protects what arrived.
func TestPlatformEngineCancelledCycleLeavesProtection(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.src.create(t, "data")
	p.src.writeFiles(t, p.src.ds("data"), "a", 1, 32<<10)
	s1 := p.snapshot(t)
	p.replicate(t)

	p.src.writeFiles(t, p.src.ds("data"), "b", 1, 32<<10)
	s2 := p.snapshot(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	if _, err := p.eng.Replicate(ctx, p.root, &cancelAfterReceive{Receiver: p.rcv, cancel: cancel}); err == nil {
		t.Log("the cycle ended before it saw the cancellation")
	}
	bg := testCtx(t)
	rvs, err := p.dst.z.Versions(bg, p.root.Target)
	if err != nil {
		t.Fatal(err)
	}
	var held []string
	have := false
	for _, v := range rvs {
		if v.Type == Snapshot && v.UserRefs > 0 {
			held = append(held, v.Short())
		}
		have = have || v.Short() == s2
	}
	if !have || !reflect.DeepEqual(held, []string{s1}) {
		t.Fatalf("after the cancelled cycle: %s arrived %v, held %v; want it arrived and the hold still on %s", s2, have, held, s1)
	}
	// A handover that has begun before a transfer: the cycle starts none.
	p.src.writeFiles(t, p.src.ds("data"), "c", 1, 32<<10)
	s3 := p.snapshot(t)
	var handing atomic.Bool
	handing.Store(true)
	p.eng.HandingOver = handing.Load
	if _, err := p.eng.Replicate(bg, p.root, p.rcv); !errors.Is(err, ErrHandingOver) {
		t.Fatalf("cycle after a handover began: %v, want ErrHandingOver", err)
	}
	// One that begins during a transfer: the transfer finishes, and the
	// protection stays where it was.
	handing.Store(false)
	if _, err := p.eng.Replicate(bg, p.root, &handOverDuringReceive{Receiver: p.rcv, handing: &handing}); err != nil {
		t.Fatalf("cycle during which a handover began: %v", err)
	}
	if held := p.heldOnTarget(t); !reflect.DeepEqual(held, []string{s1}) {
		t.Fatalf("after a cycle during a handover: held %v, want still %s", held, s1)
	}
	p.eng.HandingOver = nil
	if rep := p.replicate(t); rep.LatestConsistent != s3 || rep.FullSends() != 0 {
		t.Fatalf("next cycle: latest %q, %d full sends", rep.LatestConsistent, rep.FullSends())
	}
	if held := p.heldOnTarget(t); !reflect.DeepEqual(held, []string{s3}) {
		t.Fatalf("after the next cycle: held %v, want %s", held, s3)
	}
}

// handOverDuringReceive marks a handover begun while its receive runs.
type handOverDuringReceive struct {
	Receiver
	handing *atomic.Bool
}

func (h *handOverDuringReceive) Receive(ctx context.Context, req ReceiveRequest, r io.Reader) error {
	h.handing.Store(true)
	return h.Receiver.Receive(ctx, req, r)
}

// slowConfirm holds the receiver's confirm for delay (or until its context
// ends): a confirm under way when a handover begins.
type slowConfirm struct {
	Receiver
	delay   time.Duration
	started chan struct{}
	once    sync.Once
}

func (s *slowConfirm) Confirm(ctx context.Context, snapshots, release []string) error {
	s.once.Do(func() { close(s.started) })
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(s.delay):
	}
	return s.Receiver.Confirm(ctx, snapshots, release)
}

// A confirm under way stops when its cycle is cancelled for a handover
// (the handover would wait for it), and finishes when the cycle is
// cancelled for anything else; either way the next cycle goes on
// incrementally and moves the protection.
func TestPlatformEngineHandoverStopsConfirm(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.src.create(t, "data")
	p.src.writeFiles(t, p.src.ds("data"), "a", 1, 32<<10)
	s1 := p.snapshot(t)
	p.replicate(t)
	bg := testCtx(t)
	var handing atomic.Bool
	p.eng.HandingOver = handing.Load
	// run starts a cycle whose confirm takes delay, cancels it once the
	// confirm has begun (marking a handover first if asked), and returns
	// how long the cycle went on after the cancel.
	run := func(delay time.Duration, handover bool) time.Duration {
		ctx, cancel := context.WithCancel(bg)
		defer cancel()
		rcv := &slowConfirm{Receiver: p.rcv, delay: delay, started: make(chan struct{})}
		done := make(chan error, 1)
		go func() { _, err := p.eng.Replicate(ctx, p.root, rcv); done <- err }()
		select {
		case <-rcv.started:
		case err := <-done:
			t.Fatalf("the cycle ended before its confirm: %v", err)
		case <-time.After(time.Minute):
			t.Fatal("the confirm never began")
		}
		handing.Store(handover)
		cancel()
		at := time.Now()
		select {
		case <-done:
		case <-time.After(delay + 30*time.Second):
			t.Fatalf("the cycle still runs %s after it was cancelled", delay+30*time.Second)
		}
		handing.Store(false)
		return time.Since(at)
	}

	p.src.writeFiles(t, p.src.ds("data"), "b", 1, 32<<10)
	p.snapshot(t)
	if took := run(time.Minute, true); took > 10*time.Second {
		t.Fatalf("a handover waited %s for the confirm under way", took)
	} else {
		t.Logf("measured: the cycle ended %s after a handover cancelled it mid-confirm", took.Round(time.Millisecond))
	}
	if h := p.heldOnTarget(t); !reflect.DeepEqual(h, []string{s1}) {
		t.Fatalf("after a confirm stopped by a handover: held %v, want still %s", h, s1)
	}
	p.src.writeFiles(t, p.src.ds("data"), "c", 1, 32<<10)
	s3 := p.snapshot(t)
	if took := run(3*time.Second, false); took < 2*time.Second {
		t.Fatalf("a cycle cancelled without a handover stopped its confirm after %s", took)
	}
	if h := p.heldOnTarget(t); !reflect.DeepEqual(h, []string{s3}) {
		t.Fatalf("after a confirm that finished past its cancel: held %v, want %s", h, s3)
	}
	p.src.writeFiles(t, p.src.ds("data"), "d", 1, 32<<10)
	s4 := p.snapshot(t)
	if rep := p.replicate(t); rep.LatestConsistent != s4 || rep.FullSends() != 0 {
		t.Fatalf("next cycle: latest %q, %d full sends", rep.LatestConsistent, rep.FullSends())
	}
	if h := p.heldOnTarget(t); !reflect.DeepEqual(h, []string{s4}) {
		t.Fatalf("after the next cycle: held %v, want %s", h, s4)
	}
}
