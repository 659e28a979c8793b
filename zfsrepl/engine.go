package zfsrepl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Root is one replicated root: a sender dataset and its receiver name. It is
// replicated recursively.
type Root struct {
	Source string
	Target string
}

// Progress reports bytes moved by one step. Total is the -nvP estimate (0 if
// unknown).
type Progress struct {
	Step  Step
	Bytes int64
	Total int64
	Done  bool
}

// Engine replicates roots from this node's pool to a Receiver.
type Engine struct {
	ZFS  ZFS
	Peer string // the receiving node's name: cursor bookmarks carry it
	Plan PlanOptions
	// MaxStreamBytes bounds one coalesced -I stream; a larger backlog is
	// split into several streams. 0 means no bound.
	MaxStreamBytes int64
	Now            func() time.Time
	Log            *slog.Logger
	// OnProgress, if set, is called as bytes move (at most every 64 KiB and
	// at the end of each step), from several goroutines when datasets
	// replicate side by side. It must be quick and safe for concurrent use.
	OnProgress func(Progress)
	// EstimateFirst waits for a step's size estimate (zfs send -nvP)
	// before the stream starts, so the first progress event carries the
	// total: a progress bar needs its length up front. Otherwise the
	// estimate runs beside the stream and progress carries it once known,
	// which keeps it off the cycle's latency (the daemon).
	EstimateFirst bool
	// EstimateAfter delays the estimate beside the stream: a step that
	// ends sooner needs none, and on a small CPU the estimate's zfs send
	// -nvP competes with the stream. 0 starts it at once.
	EstimateAfter time.Duration
	// HandingOver, if set and true, says a handover has begun and its own
	// final cycle follows: a cycle in flight starts no further transfer
	// (ErrHandingOver), and the transfers it has going finish without a
	// confirm, leaving the protection where it was as a final cycle does.
	HandingOver func() bool
	// Parallel is how many datasets of a root replicate at once (default 4).
	Parallel int

	mu     sync.Mutex
	status map[Root]RootStatus
}

// RootStatus is the last cycle's outcome for one root, for status and
// metrics; read it with Engine.Status while cycles run.
type RootStatus struct {
	Root             Root
	LatestSnapshot   string
	LatestConsistent string
	Lag              time.Duration // -1 until something is received
	LastCycle        time.Time
	LastError        string
	// PeerNotReady: the last cycle was refused by the peer for now
	// (ErrPeerNotReady, e.g. while it rejoins). Not an error: the next
	// cycle tries again, and the lag says if it lasts.
	PeerNotReady string
	Conflicts    int
	BytesSent    int64 // total since the engine started
}

// Status returns every root's status, sorted by source.
func (e *Engine) Status() []RootStatus {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]RootStatus, 0, len(e.status))
	for _, s := range e.status {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Root.Source < out[j].Root.Source })
	return out
}

func (e *Engine) record(rep *Report, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.status == nil {
		e.status = map[Root]RootStatus{}
	}
	st := e.status[rep.Root]
	st.Root, st.LastCycle, st.Conflicts = rep.Root, e.now(), len(rep.Conflicts)
	st.BytesSent += rep.BytesSent
	if rep.LatestSnapshot != "" {
		st.LatestSnapshot = rep.LatestSnapshot
	}
	if rep.LatestConsistent != "" {
		st.LatestConsistent, st.Lag = rep.LatestConsistent, rep.Lag
	} else if st.LatestConsistent == "" {
		st.Lag = -1
	} else if t, _, ok := ParseSnapshotName(st.LatestConsistent); ok {
		st.Lag = e.now().Sub(t) // a failed cycle: the lag keeps growing
	}
	st.LastError, st.PeerNotReady = "", ""
	switch {
	case errors.Is(err, ErrPeerNotReady):
		st.PeerNotReady = err.Error()
	case err != nil:
		st.LastError = err.Error()
	}
	e.status[rep.Root] = st
}

// StepResult is one executed step.
type StepResult struct {
	Step     Step
	Bytes    int64
	Duration time.Duration
	Err      error
}

// Report is what one Replicate call did and found.
type Report struct {
	Root           Root
	Steps          []StepResult
	Conflicts      []*ConflictError
	OnlyOnReceiver []string
	Waiting        []string
	// LatestSnapshot is the newest zrepl-ha snapshot of the sender's root.
	LatestSnapshot string
	// LatestConsistent is the newest snapshot fully received on every
	// dataset of the receiver's root: what failover promotes.
	LatestConsistent string
	// Lag is the age of LatestConsistent's creation (by the snapshot's name
	// time), measured at the end of the cycle. -1 when nothing is received.
	Lag       time.Duration
	BytesSent int64
}

// FullSends counts full streams in the report (tests assert zero after the
// first replication).
func (r *Report) FullSends() int {
	n := 0
	for _, s := range r.Steps {
		if s.Step.Kind == StepFull && s.Err == nil {
			n++
		}
	}
	return n
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Engine) log() *slog.Logger {
	if e.Log != nil {
		return e.Log
	}
	return slog.New(slog.DiscardHandler)
}

// maxPasses bounds re-planning: resumes first, then the incrementals.
const maxPasses = 4

// Replicate brings the receiver's copy of root up to the sender's newest
// zrepl-ha snapshot. It returns the report and the first error that stopped
// it: a *ResumableError when a stream was cut (the next call resumes it),
// or a transport or zfs error. Conflicts are reported, not returned, so one
// diverged dataset does not stop the others.
func (e *Engine) Replicate(ctx context.Context, root Root, rcv Receiver) (rep *Report, err error) {
	return e.ReplicateWith(ctx, root, rcv, ReplicateOptions{})
}

// ReplicateOptions adjusts one Replicate call.
type ReplicateOptions struct {
	// Final is a handover's last cycle: the snapshots are sent without a
	// size estimate (so a backlog is not split by MaxStreamBytes), and the
	// protection (the receiver's holds, the sender's cursor bookmarks) is
	// neither moved nor repaired. That is two transaction groups on each
	// side, seconds on a slow machine, on the switchover's clock, and not
	// needed there: the old protection stays valid (it is only released
	// once a new one exists), the base just sent is the newest snapshot on
	// both sides, and the next cycle in either direction finds it by guid
	// and moves the protection then.
	Final bool
	// ReceiverTree, if set, gives the receiver's listing for the first
	// pass instead of listing it here. A cycle starts that listing beside
	// its snapshot: the snapshot does not change the receiver, and only
	// this engine's steps do, after the listing either way.
	ReceiverTree func() ([]TreeDataset, error)
}

// ReplicateWith is Replicate with options.
func (e *Engine) ReplicateWith(ctx context.Context, root Root, rcv Receiver, o ReplicateOptions) (rep *Report, err error) {
	return e.replicate(ctx, root, rcv, o)
}

func (e *Engine) handingOver() bool { return e.HandingOver != nil && e.HandingOver() }

// ErrHandingOver: a cycle stopped before a transfer because a handover
// began; the handover's final cycle sends it.
var ErrHandingOver = errors.New("a handover began: its final cycle sends the rest")

// finalKey marks a final cycle's context: its steps run no size estimate
// (a zfs send -nvP before or beside the stream is time or CPU the
// handover waits for), so they are not split either.
type finalKey struct{}

func (e *Engine) replicate(ctx context.Context, root Root, rcv Receiver, o ReplicateOptions) (rep *Report, err error) {
	protect := !o.Final
	if o.Final {
		ctx = context.WithValue(ctx, finalKey{}, true)
	}
	rep = &Report{Root: root, Lag: -1}
	defer func() { e.record(rep, err) }()
	if err := ValidateDataset(root.Source); err != nil {
		return rep, err
	}
	if err := ValidateDataset(root.Target); err != nil {
		return rep, err
	}
	for pass := 0; pass < maxPasses; pass++ {
		prefetched := o.ReceiverTree
		if pass > 0 {
			prefetched = nil
		}
		stree, rtree, err := e.listBoth(ctx, root, rcv, prefetched)
		if err != nil {
			return rep, err
		}
		rep.LatestSnapshot = newestOwned(stree, root.Source)
		plan := PlanRoot(root.Source, stree, root.Target, rtree, e.Plan)
		rep.Conflicts, rep.OnlyOnReceiver, rep.Waiting = plan.Conflicts, plan.OnlyOnReceiver, plan.Waiting
		resumeOnly := plan.HasResume()
		var steps []Step
		stepped := map[string]bool{}
		for _, st := range plan.Steps {
			if resumeOnly && st.Kind != StepResume {
				continue
			}
			stepped[st.Source] = true
			steps = append(steps, st)
		}
		if err := e.runSteps(ctx, steps, stree, rtree, rcv, rep, protect); err != nil {
			return rep, err
		}
		if resumeOnly {
			continue // plan again from what the resumes completed
		}
		if protect && !e.handingOver() {
			if err := e.repairProtection(ctx, root, stree, rtree, rcv, stepped); err != nil {
				return rep, err
			}
		}
		if len(plan.Steps) > 0 {
			// What arrived is known from the steps (each receive exited 0);
			// listing the receiver again would cost a zfs command per cycle
			// on the peer. Anything unusual is listed.
			if after, ok := afterSteps(stree, rtree, rep.Steps); ok {
				rtree = after
			} else if rtree, err = rcv.Tree(ctx, root.Target); err != nil {
				return rep, fmt.Errorf("listing receiver root %s: %w", root.Target, err)
			}
		}
		rep.LatestConsistent = LatestConsistent(rtree)
		break
	}
	if t, _, ok := ParseSnapshotName(rep.LatestConsistent); ok {
		rep.Lag = e.now().Sub(t)
	}
	return rep, nil
}

// listBoth lists the sender's and the receiver's root side by side: they
// are different machines, so a cycle waits for one listing, not two.
func (e *Engine) listBoth(ctx context.Context, root Root, rcv Receiver, prefetched func() ([]TreeDataset, error)) (stree, rtree []TreeDataset, err error) {
	var rerr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		if prefetched != nil {
			rtree, rerr = prefetched()
			return
		}
		rtree, rerr = rcv.Tree(ctx, root.Target)
	}()
	stree, err = e.ZFS.Tree(ctx, root.Source)
	<-done
	if err != nil {
		return nil, nil, fmt.Errorf("listing sender root %s: %w", root.Source, err)
	}
	if rerr != nil {
		return nil, nil, fmt.Errorf("listing receiver root %s: %w", root.Target, rerr)
	}
	return stree, rtree, nil
}

// afterSteps is the receiver's tree after steps, derived from the tree
// before them and the sender's: an incremental that succeeded added the
// sender's snapshots after its base up to its end (-I) or its end only
// (-i). ok is false, and the caller lists, when a step failed, was not
// an incremental, or its snapshots are not where the plan saw them.
func afterSteps(stree, rtree []TreeDataset, steps []StepResult) (after []TreeDataset, ok bool) {
	after = make([]TreeDataset, len(rtree))
	idx := map[string]int{}
	for i, d := range rtree {
		after[i] = d
		after[i].Versions = slices.Clone(d.Versions)
		idx[d.Name] = i
	}
	for _, r := range steps {
		st := r.Step
		if r.Err != nil || st.Kind != StepIncremental {
			return nil, false
		}
		ti, found := idx[st.Target]
		if !found {
			return nil, false
		}
		var fromTXG, toTXG uint64
		vs := versionsOf(stree, st.Source)
		for _, v := range vs {
			if v.Name == st.Send.From {
				fromTXG = v.CreateTXG
			}
			if v.Name == st.Send.Snapshot {
				toTXG = v.CreateTXG
			}
		}
		if fromTXG == 0 || toTXG <= fromTXG {
			return nil, false
		}
		have := map[uint64]bool{}
		for _, v := range after[ti].Versions {
			have[v.GUID] = true
		}
		for _, v := range vs {
			if v.Type != Snapshot || v.CreateTXG <= fromTXG || v.CreateTXG > toTXG || have[v.GUID] {
				continue
			}
			if !st.Send.Intermediates && v.Name != st.Send.Snapshot {
				continue
			}
			_, _, short, _ := SplitVersion(v.Name)
			nv := v
			nv.Name, nv.UserRefs = st.Target+"@"+short, 0
			after[ti].Versions = append(after[ti].Versions, nv)
		}
	}
	return after, true
}

// repairProtection makes sure every up-to-date dataset's newest common
// snapshot is held on the receiver and has the sender's cursor bookmark. It
// normally finds nothing to do; it repairs what a crash between a receive
// and its confirmation, or a resumed receive, left unprotected.
func (e *Engine) repairProtection(ctx context.Context, root Root, stree, rtree []TreeDataset, rcv Receiver, skip map[string]bool) error {
	var todo []Step
	for _, s := range stree {
		if skip[s.Name] {
			continue
		}
		target := TargetName(root.Source, root.Target, s.Name)
		var rnewest *Version
		rvs := versionsOf(rtree, target)
		for i := len(rvs) - 1; i >= 0; i-- {
			if rvs[i].Type == Snapshot {
				rnewest = &rvs[i]
				break
			}
		}
		if rnewest == nil {
			continue
		}
		var snap, cursor bool
		for _, v := range s.Versions {
			if v.GUID != rnewest.GUID {
				continue
			}
			snap = snap || v.Type == Snapshot && v.Short() == rnewest.Short()
			cursor = cursor || v.Type == Bookmark && strings.HasPrefix(v.Short(), cursorPrefix(e.Peer))
		}
		if !snap || rnewest.UserRefs > 0 && cursor {
			continue
		}
		todo = append(todo, Step{Source: s.Name, Target: target, To: rnewest.Short()})
	}
	return e.confirmBatch(ctx, todo, stree, rtree, rcv)
}

// runSteps runs the steps of different datasets concurrently (up to
// Parallel at once) and each dataset's steps in order. Parents go before
// children: a child's full receive needs its parent. Running datasets
// side by side also lets their confirmations (hold, bookmark: each a ZFS
// sync task) share transaction groups instead of waiting for one each.
func (e *Engine) runSteps(ctx context.Context, steps []Step, stree, rtree []TreeDataset, rcv Receiver, rep *Report, protect bool) error {
	bySource := map[string][]Step{}
	var order []string
	for _, st := range steps {
		if _, ok := bySource[st.Source]; !ok {
			order = append(order, st.Source)
		}
		bySource[st.Source] = append(bySource[st.Source], st)
	}
	depth := func(ds string) int { return strings.Count(ds, "/") }
	sort.SliceStable(order, func(i, j int) bool { return depth(order[i]) < depth(order[j]) })
	par := e.Parallel
	if par <= 0 {
		par = 4
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	failed := map[string]bool{}
	done := map[string]Step{}
	var firstErr error

	for i := 0; i < len(order); {
		// One wave: every dataset at the same depth.
		j := i
		for j < len(order) && depth(order[j]) == depth(order[i]) {
			j++
		}
		sem := make(chan struct{}, par)
		var wg sync.WaitGroup
		for _, ds := range order[i:j] {
			mu.Lock()
			skip := parentFailed(failed, ds) || firstErr != nil
			mu.Unlock()
			if skip {
				continue
			}
			wg.Add(1)
			sem <- struct{}{}
			go func(ds string) {
				defer func() { <-sem; wg.Done() }()
				for _, st := range bySource[ds] {
					err := e.runStep(ctx, st, stree, rcv, rep, &mu, done)
					if err == nil {
						continue
					}
					mu.Lock()
					var ce *ConflictError
					if errors.As(err, &ce) {
						rep.Conflicts = append(rep.Conflicts, ce)
					} else if firstErr == nil {
						firstErr = err
						cancel()
					}
					failed[ds] = true
					mu.Unlock()
					return
				}
			}(ds)
		}
		wg.Wait()
		if firstErr != nil {
			break
		}
		i = j
	}
	// A cycle cancelled from outside (a handover or a promotion stopped
	// the replicator, or the daemon stops) leaves the protection where it
	// was, like a final cycle: its two confirm phases are seconds a
	// handover waits for, and the next cycle in either direction finds
	// what arrived by guid and protects it then.
	if !protect || parent.Err() != nil || e.handingOver() {
		return firstErr
	}
	// Whatever arrived is protected, even when the cycle stopped on an error.
	var list []Step
	for _, st := range done {
		list = append(list, st)
	}
	cctx, stop := e.confirmContext(parent)
	defer stop()
	if err := e.confirmBatch(cctx, list, stree, rtree, rcv); err != nil && firstErr == nil {
		firstErr = err
	}
	return firstErr
}

// confirmContext is the context of a cycle's confirm. A confirm that has
// begun finishes when its cycle is cancelled (the daemon stops, the node
// is fenced): protection half moved is safe but untidy. When the cycle is
// cancelled for a handover it stops at once: its two phases are seconds
// the handover waits for, and stopping is safe at any point, since each
// zfs hold, release, bookmark or destroy is one atomic ioctl, the new
// protection is made before the old goes, and the final cycle needs only
// the old (its base).
func (e *Engine) confirmContext(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	stop := context.AfterFunc(parent, func() {
		if e.handingOver() {
			cancel()
		}
	})
	return ctx, func() { stop(); cancel() }
}

func parentFailed(failed map[string]bool, ds string) bool {
	for f := range failed {
		if strings.HasPrefix(ds, f+"/") {
			return true
		}
	}
	return false
}

// runStep splits an oversized backlog, then sends each part. Each part that
// arrives is recorded in done (under mu) for the batched confirmation.
func (e *Engine) runStep(ctx context.Context, st Step, stree []TreeDataset, rcv Receiver, rep *Report, mu *sync.Mutex, done map[string]Step) error {
	parts := []Step{st}
	// A final cycle sends its backlog whole: the estimate that splitting
	// needs is a zfs send -nvP before the stream, on the handover's clock.
	final := ctx.Value(finalKey{}) != nil
	if st.Kind == StepIncremental && st.Send.Intermediates && e.MaxStreamBytes > 0 && !final {
		var err error
		if parts, err = e.split(ctx, st, versionsOf(stree, st.Source)); err != nil {
			return err
		}
	}
	for _, p := range parts {
		if err := e.transfer(ctx, p, rcv, rep, mu); err != nil {
			return err
		}
		if p.Kind != StepResume { // a resume's snapshot is confirmed by the repair pass
			mu.Lock()
			done[p.Source] = p
			mu.Unlock()
		}
	}
	return nil
}

// split cuts a -I step into streams of at most MaxStreamBytes each (a single
// snapshot's delta may still be larger: it cannot be cut).
func (e *Engine) split(ctx context.Context, st Step, versions []Version) ([]Step, error) {
	var mids []Version
	var fromTXG, toTXG uint64
	for _, v := range versions {
		if v.Name == st.Send.From {
			fromTXG = v.CreateTXG
		}
		if v.Name == st.Send.Snapshot {
			toTXG = v.CreateTXG
		}
	}
	for _, v := range versions {
		if v.Type == Snapshot && v.CreateTXG > fromTXG && v.CreateTXG < toTXG {
			mids = append(mids, v)
		}
	}
	// No snapshot in between: nothing to cut at, so no estimate either (a
	// zfs send -nvP per cycle, in the steady state of one new snapshot).
	if len(mids) == 0 {
		return []Step{st}, nil
	}
	size, err := e.ZFS.SendSize(ctx, st.Send)
	if err != nil {
		return nil, err
	}
	if size <= e.MaxStreamBytes {
		return []Step{st}, nil
	}
	mid := mids[len(mids)/2]
	first, second := st, st
	first.Send.Snapshot, first.To = mid.Name, mid.Short()
	second.Send.From = mid.Name
	a, err := e.split(ctx, first, versions)
	if err != nil {
		return nil, err
	}
	b, err := e.split(ctx, second, versions)
	if err != nil {
		return nil, err
	}
	return append(a, b...), nil
}

// transfer runs zfs send into the receiver through a pipe.
func (e *Engine) transfer(ctx context.Context, st Step, rcv Receiver, rep *Report, mu *sync.Mutex) error {
	if ctx.Value(finalKey{}) == nil && e.handingOver() {
		return ErrHandingOver
	}
	start := time.Now()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	counter := &byteCounter{report: e.OnProgress, step: st}
	estimate := e.OnProgress != nil && ctx.Value(finalKey{}) == nil
	if estimate && e.EstimateFirst {
		if total, err := e.ZFS.SendSize(sctx, st.Send); err == nil {
			counter.total.Store(total)
		}
	} else if estimate {
		// The size estimate (zfs send -nvP) is for progress and pending
		// bytes only: it runs beside the transfer, not before it, because
		// every cycle's latency is replication lag and handover time.
		ectx, ecancel := context.WithCancel(sctx)
		var est sync.WaitGroup
		est.Add(1)
		go func() {
			defer est.Done()
			if e.EstimateAfter > 0 {
				t := time.NewTimer(e.EstimateAfter)
				defer t.Stop()
				select {
				case <-t.C:
				case <-ectx.Done():
					return // done before it was worth estimating
				}
			}
			if total, err := e.ZFS.SendSize(ectx, st.Send); err == nil {
				counter.total.Store(total)
			}
		}()
		defer func() { ecancel(); est.Wait() }()
	}
	// zfs send writes straight into a kernel pipe: no copy in this process.
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	growPipe(pw)
	sendErr := make(chan error, 1)
	go func() {
		err := e.ZFS.Send(sctx, st.Send, pw)
		pw.Close() // the reader sees EOF once zfs send has exited
		sendErr <- err
	}()
	req := ReceiveRequest{Dataset: st.Target, Kind: st.Kind, To: st.To}
	var rerr error
	if fr, ok := rcv.(FileReceiver); ok && fr.ReceivesFromFile() {
		// A local zfs recv reads a second pipe that the kernel fills from
		// the first (splice): zero copies, and we still count the bytes.
		rr, rw, err := os.Pipe()
		if err != nil {
			pr.Close()
			cancel()
			<-sendErr
			return err
		}
		growPipe(rw)
		spliced := make(chan error, 1)
		go func() { spliced <- spliceAll(pr, rw, counter); rw.Close() }()
		rerr = rcv.Receive(ctx, req, rr)
		rr.Close() // a splice still writing gets EPIPE and stops
		// EPIPE after a successful receive is zfs recv having stopped at the
		// stream's end record: not an error.
		if err := <-spliced; err != nil && rerr == nil && !errors.Is(err, syscall.EPIPE) {
			rerr = fmt.Errorf("moving the stream: %w", err)
		}
	} else {
		rerr = rcv.Receive(ctx, req, &countingReader{r: pr, c: counter})
	}
	if rerr != nil {
		cancel() // stop zfs send; nobody reads its stream any more
	}
	pr.Close() // a zfs send still writing gets EPIPE
	serr := <-sendErr
	n := counter.n.Load()
	res := StepResult{Step: st, Bytes: n, Duration: time.Since(start)}
	if e.OnProgress != nil {
		e.OnProgress(Progress{Step: st, Bytes: n, Total: counter.total.Load(), Done: true})
	}
	switch {
	case rerr != nil && errors.Is(rerr, ErrDestinationModified):
		res.Err = &ConflictError{st.Target, "modified on the receiver since its most recent snapshot (someone wrote to the passive's copy); nothing was destroyed"}
	case rerr != nil && errors.Is(rerr, ErrNoCommonBase):
		res.Err = &ConflictError{st.Target, fmt.Sprintf("the receiver's newest snapshot does not match the base %s: %v", st.Send.From, rerr)}
	case rerr != nil && serr != nil && !errors.Is(serr, context.Canceled):
		res.Err = fmt.Errorf("%w (and the sender failed: %v)", rerr, serr)
	case rerr != nil:
		res.Err = rerr
	case serr != nil:
		res.Err = fmt.Errorf("sending %s: %w", st, serr)
	}
	mu.Lock()
	rep.Steps = append(rep.Steps, res)
	rep.BytesSent += n
	mu.Unlock()
	e.log().Info("replication step", "step", st.String(), "bytes", n, "duration", res.Duration.Round(time.Millisecond), "err", res.Err)
	return res.Err
}

// confirmBatch protects each dataset's new common base on both sides: the
// receiver holds the new snapshots (one zfs hold for all of them) and the
// sender bookmarks them as each dataset's cursor; then the receiver
// releases the old holds and the sender destroys the old cursors. The old
// protection goes only after the new one exists on both sides. Each phase
// runs its commands side by side, on both machines: each is a ZFS sync
// task, and concurrent ones complete in the same transaction group, so a
// cycle waits for two transaction groups here, not four.
func (e *Engine) confirmBatch(ctx context.Context, done []Step, stree, rtree []TreeDataset, rcv Receiver) error {
	if len(done) == 0 {
		return nil
	}
	sort.Slice(done, func(i, j int) bool { return done[i].Source < done[j].Source })
	var hold, release []string
	for _, st := range done {
		hold = append(hold, st.Target+"@"+st.To)
		for _, v := range versionsOf(rtree, st.Target) {
			if v.Type == Snapshot && v.UserRefs > 0 && v.Short() != st.To {
				release = append(release, v.Name)
			}
		}
	}
	errs := make([]error, len(done))
	var marks sync.WaitGroup
	for i, st := range done {
		marks.Add(1)
		go func() {
			defer marks.Done()
			cursor := st.Source + "#" + CursorName(e.Peer, st.To)
			if err := e.ZFS.Bookmark(ctx, st.Source+"@"+st.To, cursor); err != nil && !errors.Is(err, ErrExists) {
				errs[i] = fmt.Errorf("moving the replication cursor: %w", err)
			}
		}()
	}
	cerr := rcv.Confirm(ctx, hold, nil)
	marks.Wait()
	if cerr != nil {
		return errors.Join(append(errs, fmt.Errorf("holding the received snapshots on the receiver: %w", cerr))...)
	}
	// The new protection exists on the receiver; the old goes on both
	// sides at once (a dataset whose new cursor failed keeps its old one).
	var rerr error
	var wg sync.WaitGroup
	if len(release) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := rcv.Confirm(ctx, nil, release); err != nil {
				rerr = fmt.Errorf("releasing the old holds on the receiver: %w", err)
			}
		}()
	}
	for i, st := range done {
		if errs[i] != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cursor := st.Source + "#" + CursorName(e.Peer, st.To)
			for _, v := range versionsOf(stree, st.Source) {
				if v.Type == Bookmark && strings.HasPrefix(v.Short(), cursorPrefix(e.Peer)) && v.Name != cursor {
					if err := e.ZFS.Destroy(ctx, v.Name, DestroyFlags{}); err != nil && !errors.Is(err, ErrDatasetNotFound) {
						errs[i] = fmt.Errorf("removing the old replication cursor: %w", err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(append(errs, rerr)...)
}

func versionsOf(tree []TreeDataset, ds string) []Version {
	for _, t := range tree {
		if t.Name == ds {
			return t.Versions
		}
	}
	return nil
}

func newestOwned(tree []TreeDataset, root string) string {
	vs := versionsOf(tree, root)
	for i := len(vs) - 1; i >= 0; i-- {
		if IsOwned(vs[i]) {
			return vs[i].Short()
		}
	}
	return ""
}

// LatestConsistent is the newest zrepl-ha snapshot name present on every
// dataset of a (receiver) tree: the one consistent cut failover can promote.
// "" when there is none.
//
// Newest is by creation (the first dataset's createtxg order, which on a
// receiver is the order the sender created them in), not by the name:
// names sort by time in creation order except after a clock that was far
// ahead was corrected (NextSnapshotName), and failover must never promote
// an older cut because its name sorts last.
func LatestConsistent(tree []TreeDataset) string {
	if len(tree) == 0 {
		return ""
	}
	count := map[string]int{}
	for _, t := range tree {
		for _, v := range t.Versions {
			if IsOwned(v) {
				count[v.Short()]++
			}
		}
	}
	vs := tree[0].Versions
	for i := len(vs) - 1; i >= 0; i-- {
		if IsOwned(vs[i]) && count[vs[i].Short()] == len(tree) {
			return vs[i].Short()
		}
	}
	return ""
}

// FileReceiver is implemented by receivers that run zfs recv in this
// process and can read the stream from a pipe file directly.
type FileReceiver interface {
	ReceivesFromFile() bool
}

// byteCounter counts stream bytes and reports progress at most every 64 KiB.
type byteCounter struct {
	n      atomic.Int64
	last   atomic.Int64
	report func(Progress)
	step   Step
	total  atomic.Int64 // the estimate, once known; 0 before
}

func (c *byteCounter) add(n int) {
	total := c.n.Add(int64(n))
	if c.report != nil && total-c.last.Load() >= 64<<10 {
		c.last.Store(total)
		c.report(Progress{Step: c.step, Bytes: total, Total: c.total.Load()})
	}
}

type countingReader struct {
	r io.Reader
	c *byteCounter
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.c.add(n)
	return n, err
}

func contains(s, sub string) bool { return strings.Contains(strings.ToLower(s), sub) }
