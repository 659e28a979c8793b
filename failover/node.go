package failover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zrepl-ha/zrepl-ha/failover/vip"
	"github.com/zrepl-ha/zrepl-ha/transport"
	"github.com/zrepl-ha/zrepl-ha/transport/zfsrpc"
)

// Executor carries out the machine's long actions. Every method must be
// idempotent and safe to re-run after a crash at any step; ctx is cancelled
// when the machine fences while the action runs.
type Executor interface {
	// Serve promotes this node under epoch: partial receives aborted,
	// replicas rolled back to the latest consistent snapshot, writable,
	// mounted, shares exported, VIP up, epoch recorded on the roots.
	Serve(ctx context.Context, epoch uint64) error
	// Unserve fences: VIP down, shares unexported. Replication state stays.
	Unserve(ctx context.Context) error
	// HandOver sends the final incremental (writes are already stopped) and
	// then asks the peer to promote, through ask.
	HandOver(ctx context.Context, epoch uint64, ask func(context.Context) error) error
	// Rejoin makes this node a replica of the peer's epoch.
	Rejoin(ctx context.Context, epoch uint64) error
}

// HandOverUnserver is an Executor that can stop serving ahead of a
// handover faster than Unserve: it drops the VIP and returns, leaving the
// unexport to finish while the final incremental runs. Its HandOver must
// wait for that unexport before it asks the peer to promote, and every
// later action must wait for it too.
type HandOverUnserver interface {
	UnserveForHandOver(ctx context.Context) error
}

// Router is an Executor that can carry the VIP's traffic over the link
// while the active's public network is down (Options.Route). The node
// calls it from its own goroutine, not the executor's, so a long action
// never holds it up; each method must be idempotent.
type Router interface {
	// RouteViaPeer (on the active) sends the VIP's replies through the
	// peer, or stops that and announces the VIP here again.
	RouteViaPeer(ctx context.Context, on bool) error
	// RouteForPeer (on the passive) takes the peer's VIP traffic and
	// forwards it over the link, or stops that.
	RouteForPeer(ctx context.Context, on bool) error
	// Announce announces the VIP again where this node holds it.
	Announce(ctx context.Context) error
}

// Arbiter is the optional external witness (failover/witness on etcd).
type Arbiter interface {
	Campaign(ctx context.Context) (token int64, err error)
	Held() (token int64, ok bool)
	Resign(ctx context.Context) error
}

// Pinger pets a watchdog; the node pets it from its decision loop only, so a
// hung loop stops the petting and the kernel reboots the machine.
type Pinger interface{ Pet() error }

// PathConfig is one heartbeat path: where we listen and where the peer is.
type PathConfig struct {
	Path     Path
	Listen   string
	PeerAddr string
}

// Node runs one node of the pair: heartbeats on every path, the tiebreaker,
// the witness and the watchdog feed one Machine from one goroutine, and its
// actions are carried out by Exec, one at a time.
type Node struct {
	Options Options
	Persist StateFile
	Initial Persisted // used when the state file does not exist yet
	Paths   []PathConfig
	Sec     transport.Security // for dialing the peer
	// ListenSec protects the listeners (TLS server side); zero uses Sec.
	ListenSec transport.Security
	// Listen opens a path's socket; nil listens on PathConfig.Listen.
	// Tests hand over sockets they opened, so no other test can take the
	// port between picking it and the node's listen.
	Listen   func(addr string) (net.Listener, error)
	Exec     Executor
	Data     transport.Handler // replication requests from the peer
	Stall    time.Duration
	Probe    func(ctx context.Context) error // nil: no tiebreaker
	ProbeTTL time.Duration                   // per probe, and the probe interval
	Witness  Arbiter
	Watchdog Pinger
	// Carrier watches the carrier of the public (VIP) interface
	// (vip.WatchCarrier), reporting each change; nil: not watched.
	Carrier func(ctx context.Context, report func(up bool)) error
	// OnChange is called from the loop after each transition (to start and
	// stop replication); it must not block.
	OnChange func(State, uint64)
	// Newest reports this node's newest snapshot for heartbeats.
	Newest func() string
	// Observer, if set, hears decisions, actions and heartbeat RTTs.
	Observer Observer
	// Failback (failback: auto) returns the roles to the Preferred node (the
	// one configured initial_role: active) with a switchover once it has
	// caught up: its heartbeats carry our newest snapshot for FailbackSettle.
	Failback       bool
	Preferred      bool
	FailbackSettle time.Duration // default 10 s
	// RootStatus and Rescues, if set, fill Status.Roots and Status.Rescues;
	// they must be quick (cached), status calls them every time.
	RootStatus func() []RootStatus
	Rescues    func() []string
	Transfers  func() []Transfer
	// Tickler, if set (the VIP), lists the clients' TCP connections to
	// the VIP when this node hands over, and tickles the ones the peer
	// sent with its handover once this node serves (ConnTickler).
	Tickler ConnTickler
	Log     *slog.Logger
	// Epochs are epochs recorded elsewhere (the zrepl-ha:epoch property of
	// the roots); the node starts with the highest of these and the file's.
	Epochs []uint64

	events  chan event
	started time.Time
	// tickle: the connections the peer's handover named, for the serve
	// that follows it.
	tickle atomic.Pointer[[]vip.Conn]
	// handoverPersist: the persist of a handover's Demoting state, run
	// beside its final incremental; the ask waits for it.
	handoverPersist atomic.Pointer[chan error]

	mu      sync.Mutex
	machine *Machine // for View under mu; owned by the loop otherwise
	beats   []*transport.Heartbeater
	cancel  context.CancelFunc // the action in flight
	hbState PeerBeat
	lastWit bool
	// caughtUp: since when the preferred peer has held our newest snapshot.
	caughtUp time.Time
	// prepared: the executor was asked to read ahead in this silence.
	prepared bool
	actions  chan Action
	// routes: what the machine wants routed (via the peer, for the peer),
	// for the router goroutine; routeKick wakes it.
	routes    [2]bool
	routeKick chan struct{}
	// applied: the routes the router has in place (the kernel's state, not
	// the wish); routeErr: its last failed change, nil once one succeeds.
	// The heartbeat's flags and the status say applied: an active whose
	// rule cannot be added does not ask, and a passive that cannot route
	// does not say it does, so the active hands over after RouteWait; and
	// the active announces its VIP again only once the passive has
	// stopped answering for it.
	applied  [2]bool
	routeErr error
}

type event struct {
	ev    Event
	reply chan error
}

// ErrNotRunning is returned by admin requests when the loop is not running.
var ErrNotRunning = errors.New("the failover loop is not running")

func (n *Node) log() *slog.Logger {
	if n.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return n.Log
}

// Init loads the persisted state and builds the machine. Run calls it if
// the caller did not.
func (n *Node) Init(now time.Time) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.machine != nil {
		return nil
	}
	p, ok, err := n.Persist.Load()
	if err != nil {
		return err
	}
	if !ok {
		p = n.Initial
		if p.State == 0 {
			p.State = Passive
		}
	}
	for _, e := range n.Epochs {
		p.Epoch = max(p.Epoch, e)
	}
	if n.Options.Timing == (Timing{}) {
		n.Options.Timing = DefaultTiming
	}
	n.Options.Tiebreaker = n.Probe != nil
	n.Options.Witness = n.Witness != nil
	n.machine = NewMachine(n.Options, p, now)
	n.started = now
	s, e := n.machine.State()
	n.hbState = PeerBeat{Role: s, Epoch: e}
	if !ok {
		if err := n.Persist.Save(Persisted{State: s, Epoch: e}, now); err != nil {
			return err
		}
	}
	n.events = make(chan event, 4096)
	n.actions = make(chan Action, 64)
	n.routeKick = make(chan struct{}, 1)
	return nil
}

// Run runs the node until ctx ends.
func (n *Node) Run(ctx context.Context) error {
	if err := n.Init(time.Now()); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	// Nothing is served at start: whatever a previous run left (a VIP, an
	// exports file) goes before the first decision.
	if err := n.Exec.Unserve(ctx); err != nil {
		return fmt.Errorf("clean up at start: %w", err)
	}
	var lns []*transport.Listener
	for _, p := range n.Paths {
		lsec := n.ListenSec
		if lsec == (transport.Security{}) {
			lsec = n.Sec
		}
		var ln *transport.Listener
		var err error
		if n.Listen == nil {
			ln, err = transport.Listen(p.Listen, n.Options.Name, n.Options.PeerName, lsec, n.log())
		} else {
			var raw net.Listener
			if raw, err = n.Listen(p.Listen); err == nil {
				if ln, err = transport.ListenOn(raw, n.Options.Name, n.Options.PeerName, lsec, n.log()); err != nil {
					raw.Close()
				}
			}
		}
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("listen on the %s path: %w", p.Path, err)
		}
		lns = append(lns, ln)
		wg.Add(1)
		go func() { defer wg.Done(); n.accept(ctx, p.Path, ln) }()
		hb := &transport.Heartbeater{Path: string(p.Path), Addr: p.PeerAddr, Local: n.Options.Name, Peer: n.Options.PeerName,
			Sec: n.Sec, Interval: n.Options.Timing.Interval, Payload: n.payload, Log: n.log(),
			OnAck: func(sent time.Time) {
				if n.Observer != nil {
					n.Observer.Heartbeat(p.Path, time.Since(sent))
				}
				n.post(Ack{Path: p.Path, Sent: sent})
			}}
		n.mu.Lock()
		n.beats = append(n.beats, hb)
		n.mu.Unlock()
		wg.Add(1)
		go func() { defer wg.Done(); hb.Run(ctx) }()
	}
	if n.Probe != nil {
		wg.Add(1)
		go func() { defer wg.Done(); n.probeLoop(ctx) }()
	}
	if n.Carrier != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := n.Carrier(ctx, func(up bool) {
				if !up {
					n.log().Warn("the public interface lost its carrier")
				}
				// Never dropped (post drops when the queue is full): a lost
				// "up" would hold the node off its public network.
				select {
				case n.events <- event{ev: Carrier{Up: up}}:
				case <-ctx.Done():
				}
			})
			if err != nil && ctx.Err() == nil {
				// Not fatal: the tiebreaker still sees a dead network, a
				// threshold later.
				n.log().Warn("cannot watch the public interface's carrier; the tiebreaker alone judges the public network", "err", err)
			}
		}()
	}
	wg.Add(1)
	go func() { defer wg.Done(); n.executor(ctx) }()
	if r, ok := n.Exec.(Router); ok && n.Options.Route {
		wg.Add(1)
		go func() { defer wg.Done(); n.router(ctx, r) }()
	}
	n.loop(ctx)
	return nil
}

func (n *Node) accept(ctx context.Context, p Path, ln *transport.Listener) {
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			n.log().Warn("accept", "path", p, "err", err)
			continue
		}
		switch c.Purpose {
		case transport.PurposeControl:
			go transport.ServeHeartbeats(ctx, c, n.Options.Timing.Threshold, func(_ string, hb transport.Heartbeat) {
				n.post(Beat{Path: p, PeerBeat: PeerBeat{Role: State(hb.Role), Epoch: hb.Epoch, PublicOK: hb.PublicOK, Newest: hb.NewestSnapshot,
					WantRoute: hb.WantRoute, Routing: hb.Routing}})
			})
		default:
			go func() {
				if err := transport.Serve(ctx, c, dataHandler{n}, n.stall()); err != nil && ctx.Err() == nil {
					n.log().Warn("request from the peer failed", "path", p, "err", err)
				}
			}()
		}
	}
}

func (n *Node) stall() time.Duration {
	if n.Stall > 0 {
		return n.Stall
	}
	return 30 * time.Second
}

// post hands an event to the loop without blocking the caller (a heartbeat
// reader must never stall); a full queue drops it, which the machine
// tolerates like a lost heartbeat.
func (n *Node) post(ev Event) {
	select {
	case n.events <- event{ev: ev}:
	default:
		n.log().Warn("failover event queue full; event dropped", "event", fmt.Sprintf("%T", ev))
	}
}

// request hands an admin or peer request to the loop and waits for the
// machine's answer.
func (n *Node) request(ctx context.Context, ev Event) error {
	if n.events == nil {
		return ErrNotRunning
	}
	r := make(chan error, 1)
	select {
	case n.events <- event{ev: ev, reply: r}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Promote is `zrepl-ha failover --force`.
func (n *Node) Promote(ctx context.Context, ignorePeer bool) error {
	return n.request(ctx, AdminPromote{IgnorePeer: ignorePeer})
}

// Demote is `zrepl-ha demote`.
func (n *Node) Demote(ctx context.Context) error { return n.request(ctx, AdminDemote{}) }

// Switchover is `zrepl-ha switchover`. It asks the peer first whether it
// can take over now: a peer still rejoining (its roots moving into a
// rescue and cloned back, up to a minute after a failover) refuses the
// final incremental, and it did so only after this node had dropped its
// VIP and unexported: an outage for nothing, ending in a fence and a
// resume.
func (n *Node) Switchover(ctx context.Context) error {
	if err := n.peerReady(ctx); err != nil {
		return err
	}
	return n.request(ctx, AdminSwitchover{})
}

// methodReady asks a peer whether it can take over now (Switchover).
const methodReady = "failover.ready"

// peerReadyTimeout bounds the question: a peer that does not answer in
// time is left to the machine's own checks (contact, the peer's role).
const peerReadyTimeout = 3 * time.Second

// peerReady returns an error only when the peer answered that it cannot
// take over now. No answer, or an answer of a release without the
// question, leaves the decision to the machine, as before.
func (n *Node) peerReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, peerReadyTimeout)
	defer cancel()
	body, _ := json.Marshal(struct {
		Method string `json:"method"`
	}{methodReady})
	err := n.callPeer(ctx, "asked the peer whether it can take over", body, peerReadyTimeout)
	if zfsrpc.IsNotReady(err) {
		return fmt.Errorf("the peer cannot take over now (%w); try again once `zrepl-ha status` on it shows no action in progress", err)
	}
	if err != nil {
		n.log().Debug("the peer did not answer whether it can take over; going on", "err", err)
	}
	return nil
}

// readyToTakeOver answers methodReady: nil if this node could take a
// handover now.
func (n *Node) readyToTakeOver() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.machine == nil {
		return zfsrpc.NotReady(fmt.Errorf("this node is starting"))
	}
	m := n.machine
	switch {
	case m.actionBusy == ActRejoin || !m.rejoinRetryAt.IsZero():
		return zfsrpc.NotReady(fmt.Errorf("this node is rejoining (its roots are being rescued and cloned back)"))
	case m.actionBusy != 0:
		return zfsrpc.NotReady(fmt.Errorf("this node is busy (%s in progress)", m.actionBusy))
	case m.state != Passive:
		return fmt.Errorf("this node is %s, not a passive that can take over", m.state)
	}
	return nil
}

func (n *Node) payload() transport.Heartbeat {
	n.mu.Lock()
	defer n.mu.Unlock()
	b := n.hbState
	return transport.Heartbeat{Role: uint8(b.Role), Epoch: b.Epoch, PublicOK: b.PublicOK, NewestSnapshot: b.Newest,
		WantRoute: n.applied[0], Routing: n.applied[1]}
}

func (n *Node) probeLoop(ctx context.Context) {
	every := n.ProbeTTL
	if every <= 0 {
		every = 500 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		sent := time.Now()
		pctx, cancel := context.WithTimeout(ctx, every)
		err := n.Probe(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		n.post(Probe{OK: err == nil, Sent: sent})
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (n *Node) loop(ctx context.Context) {
	tick := time.NewTicker(n.Options.Timing.Interval / 2)
	defer tick.Stop()
	for {
		var ev event
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			ev = event{ev: Tick{}}
			if n.Failback && !n.Preferred {
				n.checkFailback(ctx, time.Now())
			}
			n.checkPrepare(ctx, time.Now())
			if n.Watchdog != nil {
				if err := n.Watchdog.Pet(); err != nil {
					n.log().Error("watchdog pet failed", "err", err)
				}
			}
			if n.Witness != nil {
				_, held := n.Witness.Held()
				if held != n.lastWit {
					n.lastWit = held
					n.step(ctx, Witness{Held: held})
				}
			}
		case ev = <-n.events:
		}
		err := n.step(ctx, ev.ev)
		if ev.reply != nil {
			ev.reply <- err
		}
	}
}

// checkPrepare lets the executor read a promotion's plan ahead once the
// peer has been silent for the loss threshold while this node is an idle
// passive: a failover would come a fence margin later. Once per silence;
// the decision itself is the machine's, and Serve checks that the plan is
// still good.
func (n *Node) checkPrepare(ctx context.Context, now time.Time) {
	p, ok := n.Exec.(Preparer)
	if !ok {
		return
	}
	n.mu.Lock()
	v := n.machine.View(now)
	n.mu.Unlock()
	silent := now.Sub(later(v.PeerHeard, v.Contact))
	if v.State != Passive || v.Busy != "" || silent < n.Options.Timing.Threshold || !v.Tiebreaker {
		if silent < n.Options.Timing.Threshold {
			n.prepared = false
		}
		return
	}
	if n.prepared {
		return
	}
	n.prepared = true
	go p.Prepare(ctx)
}

// checkFailback sends FailbackReady once the preferred peer has held our
// newest snapshot for FailbackSettle while we are active and it is passive.
func (n *Node) checkFailback(ctx context.Context, now time.Time) {
	n.mu.Lock()
	v := n.machine.View(now)
	n.mu.Unlock()
	newest := ""
	if n.Newest != nil {
		newest = n.Newest()
	}
	if v.State != Active || !v.PeerKnown || v.Peer.Role != Passive || newest == "" || v.Peer.Newest != newest {
		n.caughtUp = time.Time{}
		return
	}
	settle := n.FailbackSettle
	if settle <= 0 {
		settle = 10 * time.Second
	}
	if n.caughtUp.IsZero() {
		n.caughtUp = now
		return
	}
	if now.Sub(n.caughtUp) >= settle {
		n.caughtUp = time.Time{}
		n.log().Info("failback: the preferred node has caught up; handing the roles back", "snapshot", newest)
		n.step(ctx, FailbackReady{})
	}
}

// unserveFirst moves unserve actions ahead of the rest, keeping the order
// otherwise. Stopping service needs nothing persisted first (a restart
// with the old state on disk fences and resumes only by consent), while
// the persist is an fsync on the pool: under the lab's SMB copy it held
// a handover's VIP drop for 0.4 s, with the cable already out.
func unserveFirst(acts []Action) []Action {
	i := slices.IndexFunc(acts, func(a Action) bool { return a.Kind == ActUnserve })
	if i <= 0 {
		return acts
	}
	out := make([]Action, 0, len(acts))
	for _, a := range acts {
		if a.Kind == ActUnserve {
			out = append(out, a)
		}
	}
	for _, a := range acts {
		if a.Kind != ActUnserve {
			out = append(out, a)
		}
	}
	return out
}

// step feeds one event and starts its actions. Persisting happens here,
// before anything that depends on it runs: a serve, a rejoin, or (for a
// handover, whose persist runs beside its final incremental) the ask
// that lets the peer promote.
func (n *Node) step(ctx context.Context, ev Event) error {
	now := time.Now()
	n.mu.Lock()
	m := n.machine
	before, be := m.State()
	acts, err := m.Step(now, ev)
	after, ae := m.State()
	hb := m.Heartbeat(now)
	if n.Newest != nil {
		hb.Newest = n.Newest()
	}
	n.hbState = hb
	last := m.Last()
	via, forPeer, why := m.Routes()
	routesChanged := n.routes != [2]bool{via, forPeer}
	n.routes = [2]bool{via, forPeer}
	n.mu.Unlock()
	if routesChanged {
		n.log().Info("routing decision", "via_peer", via, "for_peer", forPeer, "reason", why)
		select {
		case n.routeKick <- struct{}{}:
		default:
		}
	}
	if before != after || be != ae {
		n.log().Info("failover decision", "from", before.String(), "to", after.String(), "epoch", ae, "reason", last.Reason)
		if n.Observer != nil {
			n.Observer.Decision(last)
		}
	}
	acts = unserveFirst(acts)
	for i, a := range acts {
		switch a.Kind {
		case ActPersist:
			if i+1 < len(acts) && acts[i+1].Kind == ActHandOver {
				// The final incremental needs nothing persisted; only the ask
				// does (the peer promotes on it), and it waits for this. The
				// fsync on a busy pool held the final 0.4-0.8 s in the lab.
				done := make(chan error, 1)
				go func(p Persisted) { done <- n.Persist.Save(p, now) }(Persisted{State: a.State, Epoch: a.Epoch})
				n.handoverPersist.Store(&done)
				continue
			}
			if perr := n.Persist.Save(Persisted{State: a.State, Epoch: a.Epoch}, now); perr != nil {
				n.log().Error("cannot persist the failover state; not acting on it", "err", perr)
				// Never serve under an epoch that a restart would not know.
				for _, b := range acts[i+1:] {
					if b.Kind == ActServe || b.Kind == ActHandOver || b.Kind == ActRejoin {
						return errors.Join(err, n.step(ctx, Done{Action: b.Kind, Err: perr}))
					}
				}
			}
		case ActUnserve:
			// Fencing wins over a promotion or handover in flight.
			n.mu.Lock()
			if n.cancel != nil {
				n.cancel()
			}
			n.mu.Unlock()
			n.actions <- a
		case ActCampaign:
			if n.Witness != nil {
				go func() {
					if _, err := n.Witness.Campaign(ctx); err != nil && ctx.Err() == nil {
						n.log().Warn("witness campaign failed", "err", err)
					}
				}()
			}
		case ActResign:
			if n.Witness != nil {
				go func() {
					rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
					defer cancel()
					if err := n.Witness.Resign(rctx); err != nil {
						n.log().Warn("witness resign failed", "err", err)
					}
				}()
			}
		default:
			n.actions <- a
		}
	}
	if (before != after || be != ae) && n.OnChange != nil {
		n.OnChange(after, ae)
	}
	return err
}

// executor runs actions one at a time, in order.
func (n *Node) executor(ctx context.Context) {
	for {
		var a Action
		select {
		case <-ctx.Done():
			return
		case a = <-n.actions:
		}
		actx, cancel := context.WithCancel(ctx)
		n.mu.Lock()
		if a.Kind != ActUnserve {
			n.cancel = cancel
		}
		n.mu.Unlock()
		start := time.Now()
		var err error
		switch a.Kind {
		case ActServe:
			err = n.Exec.Serve(actx, a.Epoch)
			if conns := n.tickle.Swap(nil); err == nil && conns != nil {
				n.tickleClients(ctx, *conns)
			}
		case ActUnserve:
			if hu, ok := n.Exec.(HandOverUnserver); ok && a.HandOver {
				err = hu.UnserveForHandOver(context.WithoutCancel(actx))
			} else {
				err = n.Exec.Unserve(context.WithoutCancel(actx))
			}
		case ActHandOver:
			conns := n.clientConns()
			persisted := n.handoverPersist.Swap(nil)
			err = n.Exec.HandOver(actx, a.Epoch, func(ctx context.Context) error {
				if persisted != nil {
					if perr := <-*persisted; perr != nil {
						n.log().Error("cannot persist the failover state; not asking the peer to take over", "err", perr)
						return fmt.Errorf("persisting the handover before the ask: %w", perr)
					}
				}
				return n.askHandover(ctx, a.Epoch, conns())
			})
		case ActRejoin:
			err = n.Exec.Rejoin(actx, a.Epoch)
		}
		cancel()
		n.mu.Lock()
		n.cancel = nil
		n.mu.Unlock()
		n.log().Info("failover action", "action", a.String(), "took", time.Since(start).Round(time.Millisecond), "err", err)
		if n.Observer != nil {
			n.Observer.Action(a, time.Since(start), err)
		}
		if ctx.Err() != nil {
			return
		}
		n.post(Done{Action: a.Kind, Err: err})
	}
}

// Handover over the data connection: a small JSON call the data handler
// routes to the loop before anything else sees it. Conns are the clients'
// TCP connections to the VIP on the node handing over, for the new
// active's tickle.
type handoverCall struct {
	Method string     `json:"method"`
	Epoch  uint64     `json:"epoch"`
	Conns  []vip.Conn `json:"conns,omitempty"`
}

const methodHandover = "failover.handover"

// ConnTickler is what the handover needs of the VIP (vip.VIP implements
// it): the clients' connections to it on the node that hands over, and
// tickle ACKs for them from the node that takes over, so the clients
// notice the move at once instead of at their next TCP retransmission
// (docs/failover.md).
type ConnTickler interface {
	Connections() ([]vip.Conn, error)
	Tickle(ctx context.Context, conns []vip.Conn) (int, error)
}

// tickleClients runs the tickle in the background: the serve is done, and
// the tickle's rounds (well under a second) must not hold the loop.
func (n *Node) tickleClients(ctx context.Context, conns []vip.Conn) {
	if n.Tickler == nil || len(conns) == 0 {
		return
	}
	go func() {
		sent, err := n.Tickler.Tickle(ctx, conns)
		if err != nil {
			n.log().Warn("tickle ACKs to the clients of the VIP", "connections", len(conns), "sent", sent, "err", err)
			return
		}
		n.log().Info("tickled the clients' connections to the VIP, so they reconnect now", "connections", len(conns), "sent", sent)
	}()
}

// clientConns lists the clients' connections to the VIP in the
// background, for the handover's ask: listed there, after the final
// incremental, it took half a second of the handover in the lab (an
// emulated CPU busy with the zfs commands beside it). The VIP is down
// already when a handover starts, and the sockets stay until their
// retransmissions give up, so the list is as good now as later.
func (n *Node) clientConns() func() []vip.Conn {
	if n.Tickler == nil {
		return func() []vip.Conn { return nil }
	}
	var conns []vip.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		start := time.Now()
		var err error
		conns, err = n.Tickler.Connections()
		if err != nil {
			n.log().Warn("listing the clients' connections to the VIP for the peer's tickle", "err", err)
		}
		n.log().Debug("listed the clients' connections to the VIP", "conns", len(conns), "took", time.Since(start).Round(time.Millisecond))
	}()
	return func() []vip.Conn { <-done; return conns }
}

func (n *Node) askHandover(ctx context.Context, epoch uint64, conns []vip.Conn) error {
	body, _ := json.Marshal(handoverCall{Method: methodHandover, Epoch: epoch, Conns: conns})
	err := n.callPeer(ctx, "ask the peer to take over", body, 30*time.Second)
	var pe *transport.PeerError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pe):
		return fmt.Errorf("the peer refused the handover: %w", err)
	}
	return fmt.Errorf("ask the peer to take over: %w", err)
}

// callPeer makes one call on the peer's data connection, on the link
// first, then the public path. It returns at the first answer, an error
// the peer sent (a *transport.PeerError) included; otherwise the last
// path's error.
func (n *Node) callPeer(ctx context.Context, what string, body []byte, timeout time.Duration) error {
	var last error
	for _, p := range n.Paths {
		start := time.Now()
		c, err := transport.Dial(ctx, p.PeerAddr, n.Options.Name, n.Options.PeerName, transport.PurposeData, n.Sec, n.log())
		if err != nil {
			last = err
			continue
		}
		dialed := time.Now()
		_, err = c.Call(ctx, body, timeout)
		c.Close()
		n.log().Debug(what, "peer", p.PeerAddr, "dial", dialed.Sub(start).Round(time.Millisecond), "call", time.Since(dialed).Round(time.Millisecond), "err", err)
		var pe *transport.PeerError
		if err == nil || errors.As(err, &pe) {
			return err
		}
		last = err
	}
	if last == nil {
		last = errors.New("no path to the peer is configured")
	}
	return last
}

type dataHandler struct{ n *Node }

func (h dataHandler) Call(ctx context.Context, body []byte) ([]byte, error) {
	var c handoverCall
	if json.Unmarshal(body, &c) == nil && c.Method == methodHandover {
		h.n.log().Debug("the peer asks this node to take over", "epoch", c.Epoch, "conns", len(c.Conns))
		h.n.tickle.Store(&c.Conns)
		if err := h.n.request(ctx, HandoverRequest{PeerEpoch: c.Epoch}); err != nil {
			h.n.tickle.Store(nil)
			return nil, err
		}
		return []byte("{}"), nil
	}
	var m struct {
		Method string `json:"method"`
	}
	_ = json.Unmarshal(body, &m)
	if m.Method == methodReady {
		if err := h.n.readyToTakeOver(); err != nil {
			return nil, err
		}
		return []byte("{}"), nil
	}
	if h.n.Data == nil {
		return nil, fmt.Errorf("this node does not accept replication")
	}
	if err := h.n.refuseReplication(m.Method); err != nil {
		return nil, err
	}
	return h.n.Data.Call(ctx, body)
}

func (h dataHandler) Stream(ctx context.Context, body []byte, r io.Reader) transport.End {
	if h.n.Data == nil {
		return transport.ErrorEnd(fmt.Errorf("this node does not accept replication"))
	}
	if err := h.n.refuseReplication("receive"); err != nil {
		return transport.ErrorEnd(err)
	}
	return h.n.Data.Stream(ctx, body, r)
}

// refuseReplication says why a replication request must wait: a serving
// node receives nothing, and while a rejoin moves the root into a rescue
// and clones it back, the sender would see no root and send a full stream
// into the gap. "tree" stays open while serving: a rejoining peer lists
// the active's roots.
func (n *Node) refuseReplication(method string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.machine == nil {
		return zfsrpc.NotReady(fmt.Errorf("this node is starting; try again"))
	}
	st, _ := n.machine.State()
	busy := n.machine.actionBusy
	switch {
	case (busy == ActRejoin || !n.machine.rejoinRetryAt.IsZero()) && method != "" && !strings.HasPrefix(method, "drill"):
		return zfsrpc.NotReady(fmt.Errorf("this node is rejoining (its roots are being rescued and cloned back); replication resumes after it"))
	case st.Serving() && (method == "receive" || method == "confirm"):
		return fmt.Errorf("this node is %s and receives no replication", st)
	}
	return nil
}

// Status is the node's state for `zrepl-ha status` and metrics.
type Status struct {
	Node       string        `json:"node"`
	Peer       string        `json:"peer"`
	Role       string        `json:"role"`
	Epoch      uint64        `json:"epoch"`
	Since      time.Time     `json:"since"`
	Uptime     time.Duration `json:"uptime_ns"`
	Paths      []PathStatus  `json:"paths"`
	Tiebreaker *ArbiterState `json:"tiebreaker,omitempty"`
	Witness    *ArbiterState `json:"witness,omitempty"`
	PeerView   *PeerStatus   `json:"peer_view,omitempty"`
	Decision   DecisionJSON  `json:"last_decision"`
	Busy       string        `json:"busy,omitempty"`
	// Routing: "via-peer" while this node serves through the peer (its
	// public network down), "for-peer" while it routes the peer's VIP.
	Routing string   `json:"routing,omitempty"`
	Alerts  []string `json:"alerts"`
	// Roots is replication per root (empty on a node that has not
	// replicated since it started); Rescues lists rescue datasets that hold
	// writes kept aside by a rejoin.
	Roots   []RootStatus `json:"roots,omitempty"`
	Rescues []string     `json:"rescues,omitempty"`
	// Transfers are the zfs send streams in flight (an initial full sync, a
	// catch-up after an outage), for `zrepl-ha status --watch`.
	Transfers []Transfer `json:"transfers,omitempty"`
}

// Status.Routing values.
const (
	RoutingViaPeer = "via-peer"
	RoutingForPeer = "for-peer"
)

// Transfer is one stream in flight.
type Transfer struct {
	Dataset string    `json:"dataset"`
	Kind    string    `json:"kind"`  // full, incremental, resume
	Bytes   int64     `json:"bytes"` // moved so far
	Total   int64     `json:"total"` // the -nvP estimate, 0 if unknown
	Started time.Time `json:"started"`
	Moved   time.Time `json:"moved,omitzero"` // when Bytes last grew from one report to the next
	Rate    float64   `json:"bytes_per_sec"`  // since it started
}

// RootStatus is one root's replication, from the engine.
type RootStatus struct {
	Source           string        `json:"source"`
	Target           string        `json:"target"`
	LatestSnapshot   string        `json:"latest_snapshot,omitempty"`
	LatestConsistent string        `json:"peer_latest_consistent,omitempty"`
	Lag              time.Duration `json:"lag_ns"` // -1 until something was received
	LastCycle        time.Time     `json:"last_cycle"`
	LastError        string        `json:"last_error,omitempty"`
	// PeerNotReady: the peer refused the last cycle for now (it rejoins
	// or starts); not an error, the next cycle tries again.
	PeerNotReady string `json:"peer_not_ready,omitempty"`
	Conflicts    int    `json:"conflicts,omitempty"`
	BytesSent    int64  `json:"bytes_sent"`
	// Pending is what remains of the transfers in flight for this root, by
	// their zfs send -nvP estimates (0 when nothing is moving).
	Pending int64 `json:"pending_bytes"`
	// Throughput is the bytes per second of the last cycle that sent data.
	Throughput float64 `json:"throughput_bytes_per_sec"`
}

// PathStatus is one heartbeat path.
type PathStatus struct {
	Path    string        `json:"path"`
	Up      bool          `json:"up"`
	RTT     time.Duration `json:"rtt_ns"`
	RTTP99  time.Duration `json:"rtt_p99_ns"`
	LastAck time.Time     `json:"last_ack"`
}

// ArbiterState is the tiebreaker's or witness's answer.
type ArbiterState struct {
	OK bool `json:"ok"`
}

// PeerStatus is what the peer's last heartbeat said.
type PeerStatus struct {
	Role     string    `json:"role"`
	Epoch    uint64    `json:"epoch"`
	PublicOK bool      `json:"public_ok"`
	Newest   string    `json:"newest_snapshot"`
	Heard    time.Time `json:"heard"`
}

// DecisionJSON is the last decision.
type DecisionJSON struct {
	At     time.Time `json:"at"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	Epoch  uint64    `json:"epoch"`
	Reason string    `json:"reason"`
}

// State returns the node's current state and epoch (Passive before Init).
func (n *Node) State() (State, uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.machine == nil {
		return Passive, 0
	}
	return n.machine.State()
}

// PeerState is the role the peer's last heartbeat gave, and whether one
// has been heard.
func (n *Node) PeerState() (State, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.machine == nil {
		return Passive, false
	}
	return n.machine.PeerState()
}

// Status returns the node's status now.
func (n *Node) Status() Status {
	s := n.status()
	if n.RootStatus != nil {
		s.Roots = n.RootStatus()
	}
	if n.Transfers != nil {
		s.Transfers = n.Transfers()
	}
	if n.Rescues != nil {
		s.Rescues = n.Rescues()
		if len(s.Rescues) > 0 {
			s.Alerts = append(s.Alerts, fmt.Sprintf("%d rescue dataset(s) hold writes kept aside by a rejoin: review them", len(s.Rescues)))
		}
	}
	return s
}

func (n *Node) status() Status {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.machine == nil {
		return Status{Node: n.Options.Name, Role: "starting"}
	}
	v := n.machine.View(now)
	s := Status{Node: n.Options.Name, Peer: n.Options.PeerName, Role: v.State.String(), Epoch: v.Epoch,
		Since: v.Since, Uptime: now.Sub(n.started), Busy: v.Busy, Alerts: v.Alerts,
		Decision: DecisionJSON{At: v.Last.At, From: stateOrNone(v.Last.From), To: v.Last.To.String(), Epoch: v.Last.Epoch, Reason: v.Last.Reason}}
	for _, hb := range n.beats {
		ps := hb.Status()
		s.Paths = append(s.Paths, PathStatus{Path: ps.Path, Up: v.Paths[Path(ps.Path)], RTT: ps.RTT, RTTP99: ps.RTTP99, LastAck: ps.LastAck})
	}
	switch {
	case n.applied[0]:
		s.Routing = RoutingViaPeer
	case n.applied[1]:
		s.Routing = RoutingForPeer
	}
	if n.routeErr != nil {
		s.Alerts = append(s.Alerts, fmt.Sprintf("a routing change failed, retried every %s: %v", routeRetry, n.routeErr))
	}
	if n.Options.Tiebreaker {
		s.Tiebreaker = &ArbiterState{OK: v.Tiebreaker}
	}
	if n.Options.Witness {
		s.Witness = &ArbiterState{OK: v.Witness}
	}
	if v.PeerKnown {
		s.PeerView = &PeerStatus{Role: v.Peer.Role.String(), Epoch: v.Peer.Epoch, PublicOK: v.Peer.PublicOK, Newest: v.Peer.Newest, Heard: v.PeerHeard}
	}
	return s
}

// routeRetry: a route change that failed is tried again this often.
const routeRetry = time.Second

// router applies the machine's routing wishes (Machine.Routes) through r,
// level-triggered: it converges on the latest wish whatever happened in
// between, and retries a failed change. When this node stops serving
// through the peer it announces the VIP at once, and again once the
// peer's beats say it stopped routing it (until then the peer may still
// answer a client's ARP request).
func (n *Node) router(ctx context.Context, r Router) {
	var applied [2]bool
	var retry <-chan time.Time
	reannounce := false
	// A run that crashed while routing for the peer left its proxy entry
	// and route: nothing is routed at start.
	if err := r.RouteForPeer(ctx, false); err != nil {
		n.log().Debug("clearing routes for the peer at start", "err", err)
	}
	// poll is set only while a re-announcement waits for the peer to
	// stop routing: no wake-ups otherwise.
	var poll <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.routeKick:
		case <-retry:
			retry = nil
		case <-poll:
			poll = nil
			if !reannounce {
				continue
			}
			n.mu.Lock()
			peerRouting := n.machine.peer.Routing && n.machine.peerFresh(time.Now())
			n.mu.Unlock()
			if peerRouting {
				poll = time.After(n.Options.Timing.Interval)
				continue
			}
			reannounce = false
			if err := r.Announce(ctx); err != nil && ctx.Err() == nil {
				n.log().Warn("announcing the VIP again after routing through the peer", "err", err)
			}
			continue
		}
		n.mu.Lock()
		want := n.routes
		n.mu.Unlock()
		var failed error
		for i, apply := range [2]func(context.Context, bool) error{r.RouteViaPeer, r.RouteForPeer} {
			if want[i] == applied[i] {
				continue
			}
			start := time.Now()
			err := apply(ctx, want[i])
			n.log().Info([2]string{"route via the peer", "route for the peer"}[i], "on", want[i], "took", time.Since(start).Round(time.Millisecond), "err", err)
			if err != nil {
				failed = err
				continue
			}
			applied[i] = want[i]
			if i == 0 {
				reannounce = !want[0]
				if reannounce {
					poll = time.After(n.Options.Timing.Interval)
				}
			}
		}
		n.mu.Lock()
		n.applied, n.routeErr = applied, failed
		n.mu.Unlock()
		if failed != nil && ctx.Err() == nil && retry == nil {
			retry = time.After(routeRetry)
		}
	}
}
