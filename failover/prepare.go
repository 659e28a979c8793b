package failover

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

// PoolChanges counts what changes this node's replicated roots outside a
// promotion: receives and confirmations from the peer, the passive's own
// retention, rejoins. A promotion plan read while nothing was changing is
// still good if the count has not moved since, so it can be read ahead.
type PoolChanges struct {
	gen  atomic.Uint64
	busy atomic.Int64
	// quietUntil (unix ns): a plan was read ahead; optional changes (the
	// passive's own retention) wait until then rather than spoil it.
	quietUntil atomic.Int64
	// QuietWhen, if set, holds optional changes off while it says so: the
	// daemon sets it to "the peer is handing over to us", whose final
	// receive and our promotion follow within seconds.
	QuietWhen func() bool
	// Received, if set, is called after each receive that succeeded, once
	// it no longer counts as in progress; it must not block. The daemon
	// reads a promotion plan ahead there while the peer hands over
	// (Services.PrepareHandover).
	Received func()

	mu       sync.Mutex
	next     int
	receives map[int]context.CancelCauseFunc
}

// ErrQuiet is why a destroy through PoolChanges.ZFS was refused: a
// promotion plan has just been read ahead, or the peer is handing over,
// and the destroy can wait.
var ErrQuiet = errors.New("retention holds off: a promotion may follow")

// quiet asks optional changes to wait for d.
func (c *PoolChanges) quiet(d time.Duration) {
	c.quietUntil.Store(time.Now().Add(d).UnixNano())
}

// Quiet reports whether optional changes should wait.
func (c *PoolChanges) Quiet() bool {
	return time.Now().UnixNano() < c.quietUntil.Load() || (c.QuietWhen != nil && c.QuietWhen())
}

// ErrPromoting is why CancelReceives stopped a receive.
var ErrPromoting = errors.New("receive cancelled: this node is about to promote (the sender has been silent on every path for the loss threshold)")

// CancelReceives stops every receive in progress through Receiver and
// returns how many it stopped. A stopped receive leaves its resume token,
// which the promotion aborts (or the next cycle resumes from, if the
// peer comes back instead).
func (c *PoolChanges) CancelReceives() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cancel := range c.receives {
		cancel(ErrPromoting)
	}
	n := len(c.receives)
	clear(c.receives)
	return n
}

func (c *PoolChanges) track(cancel context.CancelCauseFunc) (untrack func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.receives == nil {
		c.receives = map[int]context.CancelCauseFunc{}
	}
	id := c.next
	c.next++
	c.receives[id] = cancel
	return func() {
		c.mu.Lock()
		delete(c.receives, id)
		c.mu.Unlock()
	}
}

// stopReceives cancels the receives in progress (CancelReceives) and
// waits a little for them to end, so a plan read next sees their state.
func (s *Services) stopReceives(ctx context.Context, msg string) {
	if n := s.Changes.CancelReceives(); n > 0 {
		s.log().Info(msg, "receives", n)
		s.Changes.waitIdle(ctx, 3*time.Second)
	}
}

// waitIdle waits up to max for no change to be in progress.
func (c *PoolChanges) waitIdle(ctx context.Context, max time.Duration) bool {
	deadline := time.Now().Add(max)
	for {
		if _, busy := c.Read(); !busy {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Begin marks a change starting; call the returned func when it ends.
func (c *PoolChanges) Begin() (end func()) {
	c.busy.Add(1)
	c.gen.Add(1)
	return func() { c.gen.Add(1); c.busy.Add(-1) }
}

// Read returns the count and whether a change is in progress.
func (c *PoolChanges) Read() (gen uint64, busy bool) {
	return c.gen.Load(), c.busy.Load() > 0
}

// Receiver wraps a receiver so that its receives and confirmations count
// as changes. Listing does not.
func (c *PoolChanges) Receiver(r zfsrepl.Receiver) zfsrepl.Receiver {
	return &countedReceiver{Receiver: r, c: c}
}

// ZFS wraps z so that its destroys count as changes: the passive's own
// retention lists (not a change) and destroys only now and then, and only
// a destroy makes a plan read ahead stale.
func (c *PoolChanges) ZFS(z zfsrepl.ZFS) zfsrepl.ZFS {
	return &countedZFS{ZFS: z, c: c}
}

type countedZFS struct {
	zfsrepl.ZFS
	c *PoolChanges
}

func (z *countedZFS) Destroy(ctx context.Context, name string, flags zfsrepl.DestroyFlags) error {
	if z.c.Quiet() {
		return ErrQuiet
	}
	defer z.c.Begin()()
	return z.ZFS.Destroy(ctx, name, flags)
}

// DestroySnapshots keeps the batch of the ZFS underneath, counted.
func (z *countedZFS) DestroySnapshots(ctx context.Context, dataset string, shorts []string) error {
	bd, ok := z.ZFS.(zfsrepl.BatchDestroyer)
	if !ok {
		return errors.New("no batch destroy: destroy one at a time")
	}
	if z.c.Quiet() {
		return ErrQuiet
	}
	defer z.c.Begin()()
	return bd.DestroySnapshots(ctx, dataset, shorts)
}

type countedReceiver struct {
	zfsrepl.Receiver
	c *PoolChanges
}

func (r *countedReceiver) Receive(ctx context.Context, req zfsrepl.ReceiveRequest, stream io.Reader) error {
	err := r.receive(ctx, req, stream)
	// Called once the receive no longer counts as in progress, so a plan
	// read from here on can be current.
	if err == nil && r.c.Received != nil {
		r.c.Received()
	}
	return err
}

func (r *countedReceiver) receive(ctx context.Context, req zfsrepl.ReceiveRequest, stream io.Reader) error {
	defer r.c.Begin()()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer r.c.track(cancel)()
	err := r.Receiver.Receive(ctx, req, stream)
	if err != nil && errors.Is(context.Cause(ctx), ErrPromoting) {
		return fmt.Errorf("%w: %w", ErrPromoting, err)
	}
	return err
}

func (r *countedReceiver) Confirm(ctx context.Context, snapshots, release []string) error {
	defer r.c.Begin()()
	return r.Receiver.Confirm(ctx, snapshots, release)
}

// Preparer is an Executor that can read a promotion's plan ahead of the
// decision. The node calls Prepare when the peer has been silent for the
// loss threshold: the decision comes a fence margin later, and the
// listing is then off the failover's clock.
type Preparer interface {
	Prepare(ctx context.Context)
}

// preparedMaxAge bounds how old a prepared plan may be: it guards
// against changes PoolChanges does not see (an admin's zfs command).
const preparedMaxAge = 10 * time.Second

// preparedWait bounds how long Serve waits for a prepare in flight: a
// listing takes well under a second even in the lab's emulated guests.
const preparedWait = 3 * time.Second

type prepared struct {
	mu    sync.Mutex
	gen   uint64
	at    time.Time
	plans map[string]RootPlan
	// running is closed when the prepare in flight ends; nil when none
	// runs. again: another was asked for meanwhile, and runs next.
	running chan struct{}
	again   bool
}

// Prepare implements Preparer: it plans every root and keeps the plans if
// nothing changed the pool while it read. Without Changes it does nothing.
func (s *Services) Prepare(ctx context.Context) {
	if s.Changes == nil {
		return
	}
	// The peer has been silent on every path for the threshold, so a
	// stream from it is stalled too: waiting for the stall timeout would
	// keep the plan from being read now. Stopped here, the receive leaves
	// a resume token the plan aborts, or the next cycle resumes from if
	// the peer comes back within the margin.
	// The passive's retention holds off while the plan is fresh: one of
	// its destroys would make the plan stale just before the decision.
	s.Changes.quiet(preparedMaxAge)
	s.stopReceives(ctx, "stopped receives from the silent peer")
	s.prepare(ctx)
}

// PrepareHandover reads a promotion's plan ahead after a receive while
// the peer hands over to this node (PoolChanges.Received): the peer asks
// this node to promote right after its final receive, and the pool the
// plan would list then is the one the receive left. Read here, the
// listing runs while the peer's ask is on its way instead of after it
// (about half a second of every handover in the lab). Unlike Prepare it
// stops no receive: the peer is alive and sending. A receive that ends
// while one runs asks for another, so the last receive's is the one left.
func (s *Services) PrepareHandover(ctx context.Context) {
	if s.Changes == nil {
		return
	}
	s.Changes.quiet(preparedMaxAge)
	s.prepare(ctx)
}

// prepare reads the plans, one at a time: a call while one runs makes it
// run once more when it ends.
func (s *Services) prepare(ctx context.Context) {
	s.prep.mu.Lock()
	if s.prep.running != nil {
		s.prep.again = true
		s.prep.mu.Unlock()
		return
	}
	done := make(chan struct{})
	s.prep.running = done
	s.prep.mu.Unlock()
	for {
		s.readPlans(ctx)
		s.prep.mu.Lock()
		if !s.prep.again || ctx.Err() != nil {
			s.prep.running, s.prep.again = nil, false
			s.prep.mu.Unlock()
			close(done)
			return
		}
		s.prep.again = false
		s.prep.mu.Unlock()
	}
}

func (s *Services) readPlans(ctx context.Context) {
	gen, busy := s.Changes.Read()
	if busy {
		return
	}
	start := time.Now()
	plans := map[string]RootPlan{}
	for _, root := range s.Roots {
		rp, err := s.planRoot(ctx, root)
		if err != nil {
			s.log().Debug("promotion plan not prepared", "root", root, "err", err)
			return
		}
		plans[root] = rp
	}
	if g, busy := s.Changes.Read(); busy || g != gen {
		s.log().Debug("promotion plan not prepared: the pool changed while it was read")
		return
	}
	s.prep.mu.Lock()
	s.prep.gen, s.prep.at, s.prep.plans = gen, start, plans
	s.prep.mu.Unlock()
	s.log().Debug("promotion plan prepared", "took", time.Since(start).Round(time.Millisecond))
}

// waitPrepared waits up to max for a prepare in flight to end: listing
// the pool again beside it would take longer than its rest.
func (s *Services) waitPrepared(ctx context.Context, max time.Duration) {
	s.prep.mu.Lock()
	running := s.prep.running
	s.prep.mu.Unlock()
	if running == nil {
		return
	}
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-running:
	case <-t.C:
	case <-ctx.Done():
	}
}

// takePrepared returns the prepared plans if nothing changed the pool
// since they were read and they are recent, and forgets them: each is
// used once.
func (s *Services) takePrepared() (map[string]RootPlan, time.Duration) {
	if s.Changes == nil {
		return nil, 0
	}
	s.prep.mu.Lock()
	defer s.prep.mu.Unlock()
	plans, at := s.prep.plans, s.prep.at
	s.prep.plans = nil
	gen, busy := s.Changes.Read()
	age := time.Since(at)
	if plans == nil || busy || gen != s.prep.gen || age > preparedMaxAge {
		return nil, 0
	}
	return plans, age
}
