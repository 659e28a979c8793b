package failover

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

// events records what the fakes did, in order.
type events struct {
	mu  sync.Mutex
	log []string
}

func (e *events) add(s string) {
	e.mu.Lock()
	e.log = append(e.log, s)
	e.mu.Unlock()
}

func (e *events) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.log)
}

// gatedExporter's Unexport waits for its gate (when set) and fails with
// err.
type gatedExporter struct {
	ev   *events
	gate chan struct{}
	err  error
	n    int
}

func (g *gatedExporter) Export(context.Context) error { g.ev.add("export"); return nil }
func (g *gatedExporter) Unexport(context.Context) error {
	g.n++
	if g.gate != nil {
		<-g.gate
	}
	g.ev.add("unexport")
	return g.err
}

type eventVIP struct {
	ev   *events
	derr error
}

func (v *eventVIP) Up(context.Context) error   { v.ev.add("vip up"); return nil }
func (v *eventVIP) Down(context.Context) error { v.ev.add("vip down"); return v.derr }

// The unexport of a handover runs beside the final incremental, and the
// peer is asked to promote only once it is done.
func TestHandOverUnexportsBesideTheFinalIncremental(t *testing.T) {
	ctx := context.Background()
	ev := &events{}
	ex := &gatedExporter{ev: ev, gate: make(chan struct{})}
	finalRan := make(chan struct{})
	s := &Services{ZFS: &treeZFS{}, Roots: []string{"tank/a"}, Shares: ex, VIP: &eventVIP{ev: ev},
		Final: func(context.Context) error { ev.add("final"); close(finalRan); return nil }}

	if err := s.UnserveForHandOver(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ev.list(); !slices.Equal(got, []string{"vip down"}) {
		t.Fatalf("after UnserveForHandOver: %v, want the VIP down and the unexport still running", got)
	}
	done := make(chan error, 1)
	go func() {
		done <- s.HandOver(ctx, 3, func(context.Context) error { ev.add("ask"); return nil })
	}()
	select {
	case <-finalRan:
	case <-time.After(10 * time.Second):
		t.Fatal("the final incremental waited for the unexport")
	}
	select {
	case err := <-done:
		t.Fatalf("HandOver returned (%v) before the unexport ended", err)
	case <-time.After(50 * time.Millisecond):
	}
	if slices.Contains(ev.list(), "ask") {
		t.Fatal("the peer was asked to promote while this node still exported")
	}
	close(ex.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, want := ev.list(), []string{"vip down", "final", "unexport", "ask"}; !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

// A failed unexport or VIP drop fails the handover before the peer is
// asked, and the next action unexports again.
func TestHandOverFailsWhenStoppingServiceFailed(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		unexErr error
		vipErr  error
	}{
		{name: "unexport fails", unexErr: errors.New("exportfs: boom")},
		{name: "VIP stays", vipErr: errors.New("netlink: boom")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := &events{}
			ex := &gatedExporter{ev: ev, err: tc.unexErr}
			s := &Services{ZFS: &treeZFS{}, Roots: []string{"tank/a"}, Shares: ex, VIP: &eventVIP{ev: ev, derr: tc.vipErr},
				Final: func(context.Context) error { ev.add("final"); return nil }}
			uerr := s.UnserveForHandOver(ctx)
			if (uerr != nil) != (tc.vipErr != nil) {
				t.Fatalf("UnserveForHandOver: %v", uerr)
			}
			err := s.HandOver(ctx, 3, func(context.Context) error { ev.add("ask"); return nil })
			if err == nil || !strings.Contains(err.Error(), "stopping service before the handover") {
				t.Fatalf("HandOver: %v, want it to fail on stopping service", err)
			}
			if slices.Contains(ev.list(), "ask") {
				t.Fatal("the peer was asked to promote")
			}
			// The machine fences on a failed handover: Unserve runs, and
			// unexports again.
			ex.err = nil
			s.VIP.(*eventVIP).derr = nil
			if err := s.Unserve(ctx); err != nil {
				t.Fatal(err)
			}
			if ex.n != 2 {
				t.Errorf("unexported %d times, want 2", ex.n)
			}
		})
	}
}

// Every later action waits for an unexport still running.
func TestActionsWaitForThePendingUnexport(t *testing.T) {
	ctx := context.Background()
	for _, action := range []string{"unserve", "rejoin"} {
		t.Run(action, func(t *testing.T) {
			ev := &events{}
			ex := &gatedExporter{ev: ev, gate: make(chan struct{})}
			s := &Services{ZFS: &treeZFS{}, Roots: []string{"tank/a"}, Shares: ex, VIP: &eventVIP{ev: ev}}
			if err := s.UnserveForHandOver(ctx); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				if action == "unserve" {
					done <- s.Unserve(ctx)
				} else {
					done <- s.Rejoin(ctx, 4)
				}
			}()
			select {
			case err := <-done:
				t.Fatalf("%s returned (%v) while the unexport ran", action, err)
			case <-time.After(50 * time.Millisecond):
			}
			ex.gate <- struct{}{} // the handover's unexport ends
			if action == "unserve" {
				ex.gate <- struct{}{} // and Unserve's own
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The first rejoin after this node's handover waits RejoinSettle before it
// lists the peer (the peer's clients are reconnecting); one without a
// handover before it, or a second one, lists at once, and a cancelled wait
// ends the rejoin.
func TestRejoinSettlesAfterAHandOver(t *testing.T) {
	const settle = 300 * time.Millisecond
	stop := errors.New("listed: stop here")
	var listed time.Time
	peerTree := func(context.Context, string) ([]zfsrepl.TreeDataset, error) {
		listed = time.Now()
		return nil, stop
	}
	ctx := context.Background()
	s := &Services{ZFS: &treeZFS{}, Roots: []string{"tank/a"}, PeerTree: peerTree, RejoinSettle: settle}
	start := time.Now()
	if err := s.Rejoin(ctx, 2); !errors.Is(err, stop) || listed.Sub(start) > settle/2 {
		t.Fatalf("no handover before: %v, listed after %s", err, listed.Sub(start))
	}
	if err := s.HandOver(ctx, 1, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(settle) // the peer's promotion: the wait counts from the rejoin
	start = time.Now()
	if err := s.Rejoin(ctx, 2); !errors.Is(err, stop) || listed.Sub(start) < settle*9/10 {
		t.Fatalf("after a handover: %v, listed %s after the rejoin began; want %s", err, listed.Sub(start), settle)
	}
	start = time.Now()
	if err := s.Rejoin(ctx, 2); !errors.Is(err, stop) || listed.Sub(start) > settle/2 {
		t.Fatalf("a second rejoin: %v, listed after %s; want at once", err, listed.Sub(start))
	}
	s.handedOver.Store(time.Now().UnixNano())
	cctx, cancel := context.WithTimeout(ctx, settle/3)
	defer cancel()
	if err := s.Rejoin(cctx, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled while settling: %v", err)
	}
}
