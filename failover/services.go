package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zrepl-ha/zrepl-ha/internal/command"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

// EpochProperty records the epoch a root was last served under. Receives
// exclude it (zfs recv -x), so each node's value is its own.
const EpochProperty = "zrepl-ha:epoch"

// Exporter exports and unexports the NFS and SMB shares
// (failover/shares.Manager). Both are idempotent.
type Exporter interface {
	Export(ctx context.Context) error
	Unexport(ctx context.Context) error
}

// VIPHolder brings the virtual IP up and down (failover/vip.VIP).
type VIPHolder interface {
	Up(ctx context.Context) error
	Down(ctx context.Context) error
}

// Services is the real Executor: promotion on ZFS, the shares, the VIP,
// and the final incremental of a handover.
type Services struct {
	ZFS    zfsrepl.ZFS
	Roots  []string // this node's replicated roots (replication.roots[].source)
	Shares Exporter // nil: no shares configured
	VIP    VIPHolder
	// PeerGateway is the peer's address on the heartbeat link, where the
	// VIP's traffic goes while one node routes for the other (Router).
	PeerGateway netip.Addr
	// PeerRoots are the peer's names of Roots (replication.roots[].target),
	// and PeerTree lists one of them on the peer, for a rejoin.
	PeerRoots []string
	PeerTree  func(ctx context.Context, root string) ([]zfsrepl.TreeDataset, error)
	// Final runs one snapshot -> replicate cycle per root to the peer, for
	// a handover. Writes must already be stopped.
	Final func(ctx context.Context) error
	// RejoinSettle: the first rejoin after this node's handover (within a
	// minute of it) waits this long before it lists the peer. The rejoin
	// starts when the peer reports active, that is just after its VIP
	// came up, and its clients' reconnects need its CPU more than this
	// node's rejoin needs its listing.
	RejoinSettle time.Duration
	handedOver   atomic.Int64 // unix ns of the last handover that went through
	// Mount mounts a dataset writable (zfs mount -o rw); nil uses the zfs
	// binary.
	Mount func(ctx context.Context, dataset string) error
	Log   *slog.Logger
	// Observer, if set, hears every step with its duration.
	Observer Observer

	// Changes, if set, counts changes to the pool outside promotions, so
	// Prepare can read a promotion's plan ahead of the decision and Serve
	// can trust it (prepare.go).
	Changes *PoolChanges

	prep prepared

	// unex is an unexport UnserveForHandOver left running, until an action
	// waits for it.
	unex pendingUnexport

	// afterStep, in tests, runs after each promotion step and can fail it
	// to simulate a crash right there.
	afterStep func(step string) error
}

var _ Executor = (*Services)(nil)

func (s *Services) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// stepLog runs one promotion step and logs its duration.
func (s *Services) step(name string, f func() error) error {
	start := time.Now()
	err := f()
	if err == nil && s.afterStep != nil {
		err = s.afterStep(name)
	}
	s.log().Info("promotion step", "step", name, "took", time.Since(start).Round(time.Millisecond), "err", err)
	if s.Observer != nil {
		s.Observer.Step(name, time.Since(start), err)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// Serve implements Executor. Every step is idempotent, so a crash anywhere
// is repaired by running it again.
func (s *Services) Serve(ctx context.Context, epoch uint64) error {
	if err := s.unex.wait(); err != nil {
		s.log().Warn("a handover's unexport had failed before this promotion", "err", err)
	}
	if s.Changes != nil {
		// A receive still running would hold the dataset until its stall
		// timeout; this node serves now, so the sender is gone or handing
		// over (and its final stream has arrived already).
		s.stopReceives(ctx, "stopped receives to promote")
	}
	s.waitPrepared(ctx, preparedWait)
	pre, age := s.takePrepared()
	if s.Changes != nil {
		defer s.Changes.Begin()()
	}
	for _, root := range s.Roots {
		var rp RootPlan
		if err := s.step("plan "+root, func() (err error) {
			if p, ok := pre[root]; ok {
				s.log().Debug("promotion plan read ahead", "root", root, "age", age.Round(time.Millisecond))
				rp = p
				return nil
			}
			rp, err = s.planRoot(ctx, root)
			return err
		}); err != nil {
			return err
		}
		if err := s.step("abort partial receives of "+root, func() error {
			for _, a := range rp.Aborts {
				if err := s.ZFS.AbortResumable(ctx, a.Dataset); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
		name := "roll back " + root + " to " + rp.Snapshot
		if !rp.Replica {
			name = "roll back " + root + ": none, it is not a replica"
		}
		if err := s.step(name, func() error {
			for _, rb := range rp.Rollbacks {
				// -r: snapshots after the cut are a later cycle that did not
				// reach every dataset; they are not a consistent state.
				if err := s.ZFS.Rollback(ctx, rb.Dataset+"@"+rb.To, true); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
		// The epoch goes in the same zfs set as readonly=off: each zfs
		// set waits for a transaction group, and promotion time is
		// failover time.
		if err := s.step(fmt.Sprintf("make %s writable, record epoch %d and mount it", root, epoch), func() error {
			tree := rp.tree
			if len(rp.Aborts) > 0 {
				// An aborted initial receive can take its dataset with it.
				tree = nil
			}
			return s.writable(ctx, root, tree, epoch)
		}); err != nil {
			return err
		}
	}
	// Shares before the VIP: clients that reach the VIP find them.
	if s.Shares != nil {
		if err := s.step("export the shares", func() error { return s.Shares.Export(ctx) }); err != nil {
			return err
		}
	}
	if s.VIP != nil {
		if err := s.step("bring up the VIP", func() error { return s.VIP.Up(ctx) }); err != nil {
			return err
		}
	}
	return nil
}

// writable makes every filesystem of root writable and mounted, and
// records epoch on root. tree is the plan's listing; nil lists again.
func (s *Services) writable(ctx context.Context, root string, tree []zfsrepl.TreeDataset, epoch uint64) error {
	if tree == nil {
		var err error
		if tree, err = s.ZFS.Tree(ctx, root); err != nil {
			return err
		}
	}
	for _, d := range tree {
		if d.Type != zfsrepl.Filesystem && d.Name != root {
			continue
		}
		var props []string
		if d.Type == zfsrepl.Filesystem && (d.ReadOnly || !d.Mounted) {
			props = append(props, "readonly=off", "canmount=on")
		}
		if d.Name == root {
			props = append(props, EpochProperty+"="+strconv.FormatUint(epoch, 10))
		}
		// The zfs set waits for a transaction group and the mount does
		// not: they run side by side (a zfs command is most of a second
		// on a small CPU, and this is failover time). The mount asks for
		// rw itself, so their order does not matter: a mount that comes
		// first is rw although the property still says readonly, and a
		// set that finds the dataset mounted remounts it rw anyway.
		var setErr, mountErr error
		var wg sync.WaitGroup
		if d.Type == zfsrepl.Filesystem && !d.Mounted {
			mount := s.Mount
			if mount == nil {
				mount = zfsMountRW
			}
			wg.Go(func() { mountErr = mount(ctx, d.Name) })
		}
		if len(props) > 0 {
			setErr = zfsSet(ctx, d.Name, props...)
		}
		wg.Wait()
		if err := errors.Join(setErr, mountErr); err != nil {
			return err
		}
	}
	return nil
}

// zfsSet sets several properties in one zfs set.
func zfsSet(ctx context.Context, ds string, props ...string) error {
	if err := zfsrepl.ValidateDataset(ds); err != nil {
		return err
	}
	var r command.Runner
	_, err := r.Command(ctx, "zfs", append(append([]string{"set"}, props...), ds)...).Output()
	return err
}

// zfsMountRW runs zfs mount -o rw (writable whatever the readonly
// property says yet); an already mounted dataset is fine.
func zfsMountRW(ctx context.Context, dataset string) error {
	if err := zfsrepl.ValidateDataset(dataset); err != nil {
		return err
	}
	var r command.Runner
	_, err := r.Command(ctx, "zfs", "mount", "-o", "rw", dataset).Output()
	var ce *command.Error
	if errors.As(err, &ce) && strings.Contains(ce.Stderr, "already mounted") {
		return nil
	}
	return err
}

// Unserve implements Executor: the VIP goes first, so clients stop
// reaching this node at once.
func (s *Services) Unserve(ctx context.Context) error {
	// An unexport still running from a handover finishes first (this one
	// runs it again: both are idempotent).
	errs := []error{s.unex.wait()}
	if s.VIP != nil {
		errs = append(errs, s.step("drop the VIP", func() error { return s.VIP.Down(ctx) }))
	}
	// Unexport even when the VIP would not go: a client on a node address
	// must not keep writing to a fenced node.
	if s.Shares != nil {
		errs = append(errs, s.step("unexport the shares", func() error { return s.Shares.Unexport(ctx) }))
	}
	if errs[0] != nil {
		s.log().Warn("the handover's unexport had failed; unexporting again", "err", errs[0])
	}
	return errors.Join(errs[1:]...)
}

// UnserveForHandOver implements HandOverUnserver: the VIP goes at once,
// and the shares are unexported while HandOver takes and sends the final
// snapshot (smbcontrol alone took 2-3 s of every handover in the lab).
// That snapshot still holds every write a client of the VIP saw
// acknowledged: with the address gone from this node no reply can leave
// from it, so any write acknowledged was written before the VIP went, and
// the snapshot comes after. HandOver waits for the unexport (and fails if
// it or the VIP failed) before the peer is asked to promote, so the two
// nodes never export at once.
func (s *Services) UnserveForHandOver(ctx context.Context) error {
	if err := s.unex.wait(); err != nil {
		s.log().Warn("an earlier handover's unexport had failed; unexporting again", "err", err)
	}
	var verr error
	if s.VIP != nil {
		verr = s.step("drop the VIP", func() error { return s.VIP.Down(ctx) })
	}
	s.unex.start(func() error {
		if s.Shares == nil {
			return verr
		}
		return errors.Join(verr, s.step("unexport the shares", func() error { return s.Shares.Unexport(ctx) }))
	})
	return verr
}

// pendingUnexport is one unexport running in the background; actions run
// one at a time, so one is enough.
type pendingUnexport struct {
	mu   sync.Mutex
	done chan struct{}
	err  error
}

func (p *pendingUnexport) start(f func() error) {
	done := make(chan struct{})
	p.mu.Lock()
	p.done, p.err = done, nil
	p.mu.Unlock()
	go func() {
		err := f()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
}

// wait returns once no unexport runs, with the error of the one it waited
// for (reported once).
func (p *pendingUnexport) wait() error {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return nil
	}
	<-done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != done {
		return nil
	}
	err := p.err
	p.done, p.err = nil, nil
	return err
}

// HandOver implements Executor: the final incremental, then the peer is
// asked to promote while this node's roots become replicas.
func (s *Services) HandOver(ctx context.Context, epoch uint64, ask func(context.Context) error) error {
	if s.Changes != nil {
		defer s.Changes.Begin()()
	}
	if s.Final != nil {
		if err := s.step("final incremental", func() error { return s.Final(ctx) }); err != nil {
			return err
		}
	}
	// Unexported (or the VIP dropped) wrongly: the peer must not serve
	// beside us; failing here fences this node, which unexports again.
	if err := s.unex.wait(); err != nil {
		return fmt.Errorf("stopping service before the handover: %w", err)
	}
	// The roots become replicas while the peer is asked: this node stopped
	// serving before the final snapshot, so nothing writes to them, and the
	// peer's promotion need not wait for our zfs list and zfs set. Either
	// failing fails the handover, and a failed handover fences this node.
	var rerr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		rerr = s.step("make roots replicas", func() error { return s.replicas(ctx) })
	}()
	aerr := s.step("ask the peer to promote", func() error { return ask(ctx) })
	<-done
	err := errors.Join(rerr, aerr)
	if err == nil {
		s.handedOver.Store(time.Now().UnixNano())
	}
	return err
}

// settleAfterHandOver waits RejoinSettle in the first rejoin after this
// node's handover.
func (s *Services) settleAfterHandOver(ctx context.Context) error {
	at := s.handedOver.Swap(0)
	if s.RejoinSettle <= 0 || at == 0 || time.Since(time.Unix(0, at)) > time.Minute {
		return nil
	}
	wait := s.RejoinSettle
	s.log().Info("rejoin waits while the peer's clients reconnect", "wait", wait)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Rejoin implements Executor: each root becomes a replica of the peer's
// again. Writes this node took after the newest snapshot both share are
// kept in a rescue dataset, never discarded (rejoin.go), and the root is
// left at that snapshot so the new active's incrementals land without a
// full resend. Without PeerTree the roots are only made readonly.
func (s *Services) Rejoin(ctx context.Context, epoch uint64) error {
	if err := s.unex.wait(); err != nil && s.Shares != nil {
		s.log().Warn("a handover's unexport had failed; unexporting again before the rejoin", "err", err)
		if err := s.step("unexport the shares", func() error { return s.Shares.Unexport(ctx) }); err != nil {
			return err
		}
	}
	if s.Changes != nil {
		defer s.Changes.Begin()()
	}
	if s.PeerTree == nil {
		return s.step("make roots replicas", func() error { return s.replicas(ctx) })
	}
	if err := s.settleAfterHandOver(ctx); err != nil {
		return err
	}
	for i, root := range s.Roots {
		peerRoot := root
		if i < len(s.PeerRoots) {
			peerRoot = s.PeerRoots[i]
		}
		var peer []zfsrepl.TreeDataset
		if err := s.step("list the peer's "+peerRoot, func() (err error) { peer, err = s.PeerTree(ctx, peerRoot); return err }); err != nil {
			return err
		}
		var res RejoinResult
		if err := s.step("rejoin "+root, func() (err error) {
			res, err = Rejoin(ctx, s.ZFS, root, peer, peerRoot, epoch, time.Now(), s.log())
			return err
		}); err != nil {
			return err
		}
		if res.Diverged {
			s.log().Warn("rejoin kept this node's divergent writes in a rescue dataset", "root", root, "rescue", res.Rescue, "snapshot", res.RescueSnapshot)
		}
	}
	return nil
}

func (s *Services) replicas(ctx context.Context) error {
	for _, root := range s.Roots {
		tree, err := s.ZFS.Tree(ctx, root)
		if err != nil {
			return err
		}
		for _, d := range tree {
			if d.ReadOnly {
				continue
			}
			if err := s.ZFS.SetProperty(ctx, d.Name, "readonly", "on"); err != nil {
				return err
			}
		}
	}
	return nil
}

// RootEpochs reads EpochProperty of each root, for the node's start: the
// node never starts under an epoch older than one its pool recorded.
func RootEpochs(ctx context.Context, z zfsrepl.ZFS, roots []string) ([]uint64, error) {
	var out []uint64
	for _, r := range roots {
		v, err := z.GetProperty(ctx, r, EpochProperty)
		if err != nil {
			if errors.Is(err, zfsrepl.ErrDatasetNotFound) {
				continue
			}
			return nil, err
		}
		if v == "" || v == "-" {
			continue
		}
		e, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %s=%q is not an epoch", r, EpochProperty, v)
		}
		out = append(out, e)
	}
	return out, nil
}

// VIPRouter is a VIPHolder that can route the VIP through the peer
// (failover/vip.VIP).
type VIPRouter interface {
	RouteViaPeer(ctx context.Context, gw netip.Addr) error
	UnrouteViaPeer(ctx context.Context) error
	RouteForPeer(ctx context.Context, gw netip.Addr) error
	UnrouteForPeer(ctx context.Context, gw netip.Addr) error
	Announce(ctx context.Context) error
}

func (s *Services) router() (VIPRouter, error) {
	r, ok := s.VIP.(VIPRouter)
	if !ok || !s.PeerGateway.IsValid() {
		return nil, errors.New("routing the VIP through the peer needs a VIP and the peer's link address")
	}
	return r, nil
}

// RouteViaPeer implements Router. Turned off, it announces the VIP here
// again.
func (s *Services) RouteViaPeer(ctx context.Context, on bool) error {
	r, err := s.router()
	if err != nil {
		return err
	}
	if on {
		return r.RouteViaPeer(ctx, s.PeerGateway)
	}
	if err := r.UnrouteViaPeer(ctx); err != nil {
		return err
	}
	return r.Announce(ctx)
}

// RouteForPeer implements Router.
func (s *Services) RouteForPeer(ctx context.Context, on bool) error {
	r, err := s.router()
	if err != nil {
		return err
	}
	if on {
		return r.RouteForPeer(ctx, s.PeerGateway)
	}
	return r.UnrouteForPeer(ctx, s.PeerGateway)
}

// Announce implements Router.
func (s *Services) Announce(ctx context.Context) error {
	r, err := s.router()
	if err != nil {
		return err
	}
	return r.Announce(ctx)
}
