package failover

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

// treeZFS answers Tree only; during, if set, runs inside the listing.
type treeZFS struct {
	zfsrepl.ZFS
	calls  int
	during func()
}

func (z *treeZFS) Tree(ctx context.Context, root string) ([]zfsrepl.TreeDataset, error) {
	z.calls++
	if z.during != nil {
		z.during()
	}
	s := "zrepl-ha_20261201T100000Z_000001"
	return []zfsrepl.TreeDataset{{Name: root, Type: zfsrepl.Filesystem, ReadOnly: true,
		Versions: []zfsrepl.Version{{Name: root + "@" + s, Type: zfsrepl.Snapshot, GUID: 1, CreateTXG: 5}}}}, nil
}

type nopReceiver struct{ zfsrepl.Receiver }

func (nopReceiver) Receive(context.Context, zfsrepl.ReceiveRequest, io.Reader) error { return nil }
func (nopReceiver) Confirm(context.Context, []string, []string) error                { return nil }

func TestPreparedPlan(t *testing.T) {
	ctx := context.Background()
	newSvc := func() (*Services, *treeZFS) {
		z := &treeZFS{}
		return &Services{ZFS: z, Roots: []string{"tank/a", "tank/b"}, Changes: &PoolChanges{}}, z
	}

	s, z := newSvc()
	s.Prepare(ctx)
	if z.calls != 2 {
		t.Fatalf("Prepare listed %d roots, want 2", z.calls)
	}
	plans, _ := s.takePrepared()
	if len(plans) != 2 || !strings.HasPrefix(plans["tank/a"].Snapshot, "zrepl-ha_") || !plans["tank/b"].Replica {
		t.Fatalf("prepared plans: %+v", plans)
	}
	if again, _ := s.takePrepared(); again != nil {
		t.Error("a prepared plan was handed out twice")
	}

	// A receive after the read makes it stale.
	s, _ = newSvc()
	s.Prepare(ctx)
	rcv := s.Changes.Receiver(nopReceiver{})
	if err := rcv.Receive(ctx, zfsrepl.ReceiveRequest{}, strings.NewReader("")); err != nil {
		t.Fatal(err)
	}
	if plans, _ := s.takePrepared(); plans != nil {
		t.Error("plan used after a receive changed the pool")
	}
	// So does a confirmation.
	s.Prepare(ctx)
	rcv.Confirm(ctx, nil, nil)
	if plans, _ := s.takePrepared(); plans != nil {
		t.Error("plan used after a confirmation changed the pool")
	}

	// A change in progress: nothing is read.
	s, z = newSvc()
	end := s.Changes.Begin()
	s.Prepare(ctx)
	if z.calls != 0 {
		t.Error("Prepare listed while a change was in progress")
	}
	end()
	if plans, _ := s.takePrepared(); plans != nil {
		t.Error("plan handed out after a change")
	}

	// A change that starts and ends during the listing: not kept.
	s, z = newSvc()
	z.during = func() { s.Changes.Begin()() }
	s.Prepare(ctx)
	if plans, _ := s.takePrepared(); plans != nil {
		t.Error("plan kept although the pool changed while it was read")
	}

	// Too old.
	s, _ = newSvc()
	s.Prepare(ctx)
	s.prep.at = time.Now().Add(-preparedMaxAge - time.Second)
	if plans, _ := s.takePrepared(); plans != nil {
		t.Error("plan older than preparedMaxAge used")
	}

	// Without Changes, nothing is prepared.
	s, z = newSvc()
	s.Changes = nil
	s.Prepare(ctx)
	if plans, _ := s.takePrepared(); plans != nil || z.calls != 0 {
		t.Error("prepared without a change count")
	}
}

// blockingReceiver's Receive runs until its context ends.
type blockingReceiver struct {
	zfsrepl.Receiver
	started chan struct{}
}

func (b blockingReceiver) Receive(ctx context.Context, _ zfsrepl.ReceiveRequest, _ io.Reader) error {
	close(b.started)
	<-ctx.Done()
	return ctx.Err()
}

// A receive from the silent peer would keep the plan from being read until
// its stall timeout: Prepare stops it and reads the plan.
func TestPrepareStopsReceivesFromTheSilentPeer(t *testing.T) {
	ctx := context.Background()
	z := &treeZFS{}
	s := &Services{ZFS: z, Roots: []string{"tank/a"}, Changes: &PoolChanges{}}
	br := blockingReceiver{started: make(chan struct{})}
	rcv := s.Changes.Receiver(br)
	errc := make(chan error, 1)
	go func() { errc <- rcv.Receive(ctx, zfsrepl.ReceiveRequest{}, strings.NewReader("")) }()
	<-br.started

	s.Prepare(ctx)
	select {
	case err := <-errc:
		if !errors.Is(err, ErrPromoting) {
			t.Fatalf("the stopped receive: %v, want ErrPromoting", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the receive was not stopped")
	}
	if plans, _ := s.takePrepared(); plans == nil || z.calls != 1 {
		t.Fatalf("no plan prepared after stopping the receive (%d listings)", z.calls)
	}
	if n := s.Changes.CancelReceives(); n != 0 {
		t.Errorf("%d receives still tracked after they ended", n)
	}
}

// destroyZFS records destroys.
type destroyZFS struct {
	zfsrepl.ZFS
	n int
}

func (d *destroyZFS) Destroy(context.Context, string, zfsrepl.DestroyFlags) error { d.n++; return nil }

// Through PoolChanges.ZFS a destroy is a change; anything else is not.
func TestPoolChangesZFSCountsDestroys(t *testing.T) {
	ctx := context.Background()
	c := &PoolChanges{}
	inner := &destroyZFS{}
	z := c.ZFS(inner)
	gen, _ := c.Read()
	if err := z.Destroy(ctx, "tank/a@s1", zfsrepl.DestroyFlags{}); err != nil || inner.n != 1 {
		t.Fatalf("destroy: %v, %d calls", err, inner.n)
	}
	if g, busy := c.Read(); g == gen || busy {
		t.Fatalf("after a destroy: gen %d (was %d), busy %v", g, gen, busy)
	}
}

// After a plan is read ahead, destroys through PoolChanges.ZFS wait
// (ErrQuiet) instead of spoiling it.
func TestPrepareQuietsRetention(t *testing.T) {
	ctx := context.Background()
	s := &Services{ZFS: &treeZFS{}, Roots: []string{"tank/a"}, Changes: &PoolChanges{}}
	inner := &destroyZFS{}
	z := s.Changes.ZFS(inner)
	s.Prepare(ctx)
	if err := z.Destroy(ctx, "tank/a@s1", zfsrepl.DestroyFlags{}); !errors.Is(err, ErrQuiet) || inner.n != 0 {
		t.Fatalf("destroy after a prepare: %v, %d destroys; want ErrQuiet and none", err, inner.n)
	}
	if plans, _ := s.takePrepared(); plans == nil {
		t.Fatal("the plan went stale")
	}
	s.Changes.quietUntil.Store(0)
	if err := z.Destroy(ctx, "tank/a@s1", zfsrepl.DestroyFlags{}); err != nil || inner.n != 1 {
		t.Fatalf("destroy once quiet ended: %v, %d destroys", err, inner.n)
	}
}

// While the peer hands over (QuietWhen), the passive's retention holds off
// as it does after a prepare.
func TestPoolChangesQuietWhilePeerHandsOver(t *testing.T) {
	ctx := context.Background()
	c := &PoolChanges{}
	var handing bool
	c.QuietWhen = func() bool { return handing }
	inner := &destroyZFS{}
	z := c.ZFS(inner)
	handing = true
	if err := z.Destroy(ctx, "tank/a@s1", zfsrepl.DestroyFlags{}); !errors.Is(err, ErrQuiet) || inner.n != 0 {
		t.Fatalf("destroy while the peer hands over: %v, %d destroys; want ErrQuiet and none", err, inner.n)
	}
	handing = false
	if err := z.Destroy(ctx, "tank/a@s1", zfsrepl.DestroyFlags{}); err != nil || inner.n != 1 {
		t.Fatalf("destroy once the handover is over: %v, %d destroys", err, inner.n)
	}
}

// While the peer hands over, its final receive is followed by its ask to
// promote: the plan is read as the receive ends (PoolChanges.Received),
// not after the ask, and Serve takes it.
func TestPrepareHandoverAfterTheFinalReceive(t *testing.T) {
	ctx := context.Background()
	z := &treeZFS{}
	s := &Services{ZFS: z, Roots: []string{"tank/a"}, Changes: &PoolChanges{}}
	var busyAtCall []bool
	s.Changes.Received = func() {
		_, busy := s.Changes.Read()
		busyAtCall = append(busyAtCall, busy)
		go s.PrepareHandover(ctx)
	}
	rcv := s.Changes.Receiver(nopReceiver{})
	if err := rcv.Receive(ctx, zfsrepl.ReceiveRequest{}, strings.NewReader("")); err != nil {
		t.Fatal(err)
	}
	if len(busyAtCall) != 1 || busyAtCall[0] {
		t.Fatalf("Received calls (busy at each): %v, want one, after the receive stopped counting", busyAtCall)
	}
	// Serve's wait: the prepare started in the background has ended.
	deadline := time.Now().Add(5 * time.Second)
	var plans map[string]RootPlan
	for plans == nil && time.Now().Before(deadline) {
		s.waitPrepared(ctx, time.Second)
		plans, _ = s.takePrepared()
	}
	if plans == nil || plans["tank/a"].Snapshot == "" || z.calls != 1 {
		t.Fatalf("no plan after the final receive (%d listings): %+v", z.calls, plans)
	}

	// A failed receive calls nothing.
	busyAtCall = nil
	bad := s.Changes.Receiver(failingReceiver{})
	if err := bad.Receive(ctx, zfsrepl.ReceiveRequest{}, strings.NewReader("")); err == nil {
		t.Fatal("the failing receiver succeeded")
	}
	if len(busyAtCall) != 0 {
		t.Error("Received was called after a failed receive")
	}
}

type failingReceiver struct{ zfsrepl.Receiver }

func (failingReceiver) Receive(context.Context, zfsrepl.ReceiveRequest, io.Reader) error {
	return errors.New("cannot receive incremental stream: destination has been modified")
}

// Unlike Prepare, PrepareHandover stops no receive: the peer is alive and
// sending, and a receive in progress means there is nothing to read yet.
func TestPrepareHandoverLeavesReceivesAlone(t *testing.T) {
	ctx := context.Background()
	z := &treeZFS{}
	s := &Services{ZFS: z, Roots: []string{"tank/a"}, Changes: &PoolChanges{}}
	br := blockingReceiver{started: make(chan struct{})}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- s.Changes.Receiver(br).Receive(rctx, zfsrepl.ReceiveRequest{}, strings.NewReader("")) }()
	<-br.started
	s.PrepareHandover(ctx)
	select {
	case err := <-errc:
		t.Fatalf("the receive ended: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if plans, _ := s.takePrepared(); plans != nil || z.calls != 0 {
		t.Fatalf("a plan was read while a receive ran (%d listings)", z.calls)
	}
}

// One prepare at a time; one asked for while another runs runs after it,
// so the plan kept was read after the last receive. Serve waits for the
// one in flight rather than listing beside it.
func TestPrepareRunsAgainAfterTheOneInFlight(t *testing.T) {
	ctx := context.Background()
	release := make(chan struct{})
	entered := make(chan struct{}, 4)
	z := &treeZFS{}
	s := &Services{ZFS: z, Roots: []string{"tank/a"}, Changes: &PoolChanges{}}
	z.during = func() {
		entered <- struct{}{}
		if z.calls == 1 {
			<-release
		}
	}
	first := make(chan struct{})
	go func() { s.PrepareHandover(ctx); close(first) }()
	<-entered
	// The pool changes while the first reads: its plan is not kept.
	s.Changes.Begin()()
	s.PrepareHandover(ctx) // returns at once: the first will run again
	select {
	case <-first:
		t.Fatal("the first prepare ended while its listing was held")
	default:
	}

	waited := make(chan struct{})
	go func() { s.waitPrepared(ctx, 10*time.Second); close(waited) }()
	select {
	case <-waited:
		t.Fatal("waitPrepared returned while a prepare was in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("waitPrepared did not return once the prepare ended")
	}
	<-first
	if z.calls != 2 {
		t.Fatalf("%d listings, want 2 (the second after the change)", z.calls)
	}
	if plans, _ := s.takePrepared(); plans == nil {
		t.Fatal("no plan kept from the listing after the change")
	}

	// Bounded: a prepare that never ends is not waited for past max.
	stuck := make(chan struct{})
	s.prep.mu.Lock()
	s.prep.running = stuck
	s.prep.mu.Unlock()
	start := time.Now()
	s.waitPrepared(ctx, 50*time.Millisecond)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("waitPrepared waited %s for a stuck prepare, bound 50ms", d)
	}
}
