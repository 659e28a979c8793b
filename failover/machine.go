package failover

import (
	"fmt"
	"time"
)

// State is a node's role in the pair. The numbers go on the wire (the
// heartbeat's role byte): append only.
type State uint8

const (
	// Passive receives replication and stands by.
	Passive State = iota + 1
	// Promoting is taking over: it holds serving rights from the moment it
	// enters this state, and becomes Active or Standalone when the Serve
	// action finishes.
	Promoting
	// Active serves and replicates to a peer it can hear.
	Active
	// Standalone serves without a peer: the peer is silent but the arbiter
	// (tiebreaker or witness) confirms this node is the one to serve.
	Standalone
	// Demoting has stopped serving and is handing over to the peer.
	Demoting
	// Fenced does not serve and waits to rejoin: after a lost lease, a
	// freeze, a restart of a former active, or a failed promotion.
	Fenced
)

var stateNames = map[State]string{
	Passive: "passive", Promoting: "promoting", Active: "active",
	Standalone: "standalone", Demoting: "demoting", Fenced: "fenced",
}

func (s State) String() string {
	if n, ok := stateNames[s]; ok {
		return n
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// ParseState is the inverse of String.
func ParseState(name string) (State, error) {
	for s, n := range stateNames {
		if n == name {
			return s, nil
		}
	}
	return 0, fmt.Errorf("unknown node state %q (want passive, promoting, active, standalone, demoting or fenced)", name)
}

// Serving reports whether a node in state s holds serving rights: it may
// have the VIP and exported shares. The safety property of the pair is that
// at most one node is ever in a serving state.
func (s State) Serving() bool { return s == Promoting || s == Active || s == Standalone }

// Path names a heartbeat path.
type Path string

const (
	PathLink   Path = "link"   // the dedicated heartbeat cable
	PathPublic Path = "public" // the client network
)

// Timing is the failure-detection timing, from the heartbeat config.
type Timing struct {
	Interval  time.Duration // heartbeat interval (default 200 ms)
	Threshold time.Duration // loss threshold (default 3 s)
	Margin    time.Duration // fence margin (default 2 s)
}

// DefaultTiming is the documented default.
var DefaultTiming = Timing{Interval: 200 * time.Millisecond, Threshold: 3 * time.Second, Margin: 2 * time.Second}

// settle is how long a peer's consent must stand before a fenced node
// resumes serving on it. Heartbeats queued during a freeze are all read at
// once on resume; waiting a few intervals lets a fresh one contradict them.
func (t Timing) settle() time.Duration { return max(3*t.Interval, 500*time.Millisecond) }

// Options configure a Machine.
type Options struct {
	// Name and PeerName break the tie between two fenced nodes of the same
	// epoch: the smaller name resumes.
	Name, PeerName string
	Timing         Timing
	// Tiebreaker is true when tiebreaker targets are configured. Without a
	// tiebreaker and without a witness the passive never promotes by itself.
	Tiebreaker bool
	// Witness is true when an etcd witness is configured: it then replaces
	// the tiebreaker as the arbiter of serving rights.
	Witness bool
	// Route: when this node serves and its public network is down while
	// the peer's is up, the peer routes the VIP's traffic to it over the
	// link instead of taking over (vip.public_down: route). Without it
	// the node hands over.
	Route bool
}

// Persisted is what survives a restart (the state file and, for the epoch,
// the zrepl-ha:epoch property on each root).
type Persisted struct {
	State State
	Epoch uint64
}

// PeerBeat is a heartbeat from the peer as the machine sees it.
type PeerBeat struct {
	Role     State
	Epoch    uint64
	PublicOK bool
	Newest   string
	// WantRoute: the peer serves with its public network down and asks
	// us to route its VIP. Routing: the peer routes ours.
	WantRoute, Routing bool
}

// Event is one input to the machine. Exactly one of the kinds below.
type Event interface{ isEvent() }

// Tick is the periodic evaluation (every Interval/2 in the daemon).
type Tick struct{}

// Beat: a heartbeat from the peer arrived on Path.
type Beat struct {
	Path Path
	PeerBeat
}

// Ack: the peer acknowledged our heartbeat sent at Sent (our clock) on Path.
// An ack proves the peer heard us at or after Sent; it is the active's
// evidence that the passive will not promote before Sent+Threshold+Margin.
type Ack struct {
	Path Path
	Sent time.Time
}

// Probe: a tiebreaker round sent at Sent got an answer (OK) or none.
type Probe struct {
	OK   bool
	Sent time.Time
}

// Witness: whether this node holds the witness lease now.
type Witness struct{ Held bool }

// Carrier: the kernel's carrier (link) state of this node's public
// interface, the VIP's. A cable out is known at once this way, where the
// tiebreaker needs a whole threshold of silence to say the same.
type Carrier struct{ Up bool }

// CarrierHold is how long the public carrier must stay down before it
// counts as the public network lost: a glitch of a few milliseconds is
// not a cable out. It is short on purpose: while the carrier is down no
// client reaches this node anyway, and a handover loses nothing, while
// every moment of the hold is failover time (a second was an eighth of
// the 8 s target in the lab). A link renegotiating after a switch port
// bounced stays down for seconds, and a handover is the right answer.
const CarrierHold = 250 * time.Millisecond

// Done: an action finished; Err is nil on success.
type Done struct {
	Action ActionKind
	Err    error
}

// AdminPromote is `zrepl-ha failover --force`. Without IgnorePeer it is
// refused while the peer is visibly serving.
type AdminPromote struct{ IgnorePeer bool }

// AdminDemote is `zrepl-ha demote`: stop serving, stay passive.
type AdminDemote struct{}

// AdminSwitchover is `zrepl-ha switchover`: hand over to the peer with a
// final incremental, losing nothing.
type AdminSwitchover struct{}

// FailbackReady: failback is automatic, this node is not the preferred
// active, and the preferred peer has caught up (it holds our newest
// snapshot). The runtime sends it; the machine hands over if it still can.
type FailbackReady struct{}

// HandoverRequest: the demoting peer finished its final sync and asks this
// node to promote. PeerEpoch is the epoch it served under.
type HandoverRequest struct{ PeerEpoch uint64 }

func (Tick) isEvent()            {}
func (Beat) isEvent()            {}
func (Ack) isEvent()             {}
func (Carrier) isEvent()         {}
func (Probe) isEvent()           {}
func (Witness) isEvent()         {}
func (Done) isEvent()            {}
func (AdminPromote) isEvent()    {}
func (AdminDemote) isEvent()     {}
func (AdminSwitchover) isEvent() {}
func (FailbackReady) isEvent()   {}
func (HandoverRequest) isEvent() {}

// ActionKind names what the runtime must do.
type ActionKind uint8

const (
	// ActPersist writes State and Epoch to the state file (before anything
	// else that depends on them).
	ActPersist ActionKind = iota + 1
	// ActServe promotes: abort partial receives, roll back to the latest
	// consistent snapshot, make writable, mount, export shares, bring up the
	// VIP, record Epoch on the roots. Idempotent.
	ActServe
	// ActUnserve fences: drop the VIP and unexport the shares. Replication
	// state is kept. Idempotent.
	ActUnserve
	// ActHandOver takes a final snapshot, sends the final incremental and
	// asks the peer to promote (a HandoverRequest on the peer).
	ActHandOver
	// ActRejoin makes this node a passive of the peer's epoch: it keeps any
	// divergent writes as a rescue snapshot and rolls back to the newest
	// common snapshot so replication resumes incrementally.
	ActRejoin
	// ActCampaign asks the witness for the lease; ActResign gives it back.
	ActCampaign
	ActResign
)

var actionNames = map[ActionKind]string{
	ActPersist: "persist", ActServe: "serve", ActUnserve: "unserve", ActHandOver: "handover",
	ActRejoin: "rejoin", ActCampaign: "campaign", ActResign: "resign",
}

func (a ActionKind) String() string {
	if n, ok := actionNames[a]; ok {
		return n
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// Action is one step for the runtime, carried out in order.
type Action struct {
	Kind  ActionKind
	State State  // for ActPersist
	Epoch uint64 // for ActPersist, ActServe, ActHandOver, ActRejoin
	// HandOver, on an ActUnserve, says an ActHandOver follows: the runtime
	// may finish unexporting while the final incremental runs (the VIP is
	// down first either way), as long as the handover waits for it.
	HandOver bool
}

func (a Action) String() string {
	switch a.Kind {
	case ActPersist:
		return fmt.Sprintf("persist(%s,%d)", a.State, a.Epoch)
	case ActServe, ActHandOver, ActRejoin:
		return fmt.Sprintf("%s(%d)", a.Kind, a.Epoch)
	case ActUnserve:
		if a.HandOver {
			return "unserve(handover)"
		}
	}
	return a.Kind.String()
}

// Decision records a transition and why it happened.
type Decision struct {
	At       time.Time
	From, To State
	Epoch    uint64
	Reason   string
}

// pathView is what the machine knows of the peer on one path.
type pathView struct {
	heard    time.Time // our clock when the last beat arrived
	ackedOut time.Time // send time of our newest acknowledged beat
}

// Machine is the pure decision logic of one node. It is not safe for
// concurrent use: one goroutine (the Node's loop) owns it and feeds it
// events stamped with a monotonic clock.
type Machine struct {
	opt Options

	state    State
	epoch    uint64
	since    time.Time // when state was entered
	lastStep time.Time
	resumed  time.Time // start, or the end of the last freeze

	paths      map[Path]*pathView
	peer       PeerBeat
	peerKnown  bool
	peerViewAt time.Time // when the peer's role or epoch last changed

	probeOK     bool
	probeOKSent time.Time // send time of the last successful probe
	// probeOKSince: send time of the first success after a failure. Silence
	// only counts towards promotion while the tiebreaker answers: a node
	// whose public cable comes back hears the tiebreaker before the peer's
	// first heartbeat on that path.
	probeOKSince time.Time
	probeFailAt  time.Time // send time of the first failure since the last success
	carrierDown  time.Time // when the public carrier went down; zero while up
	witnessHeld  bool
	campaigning  bool

	actionBusy ActionKind // the long action in flight (serve, handover, rejoin), 0 if none
	failedAt   time.Time  // when the last promotion failed, for backoff
	// forced: an admin promoted this node; it keeps serving without the
	// arbiter until the peer is heard again (the admin's override).
	forced bool
	// handoverPending: the peer asked us to take over, and we wait for the
	// witness lease before promoting.
	handoverPending bool
	// viaFailover: this node serves because it promoted itself after the
	// peer went silent, the one case automatic failback undoes (not an
	// admin's switchover or failover --force).
	viaFailover bool
	// rejoinRetryAt: a failed rejoin is tried again from then on.
	rejoinRetryAt time.Time

	// routed: this node serves through the peer, its public network down
	// (since routedAt). routing: this node routes the peer's VIP.
	routed, routing bool
	routedAt        time.Time
	peerRoutedAt    time.Time // the last beat that said the peer routes ours
	publicOKFrom    time.Time // since when publicOK has held, zero while not
	routeNote       string    // why routed or routing last changed

	last Decision
}

// NewMachine starts a node from its persisted state at now. A node that was
// serving (or promoting, or handing over) when it stopped starts fenced: it
// must not serve again until the peer consents or the arbiter confirms.
func NewMachine(opt Options, p Persisted, now time.Time) *Machine {
	if opt.Timing == (Timing{}) {
		opt.Timing = DefaultTiming
	}
	m := &Machine{opt: opt, epoch: p.Epoch, since: now, lastStep: now, resumed: now,
		paths: map[Path]*pathView{PathLink: {}, PathPublic: {}}}
	switch p.State {
	case Passive:
		m.state = Passive
	default:
		m.state = Fenced
	}
	m.last = Decision{At: now, From: p.State, To: m.state, Epoch: p.Epoch, Reason: "started from persisted state " + stateOrNone(p.State)}
	return m
}

func stateOrNone(s State) string {
	if s == 0 {
		return "(none)"
	}
	return s.String()
}

// State returns the current state and epoch.
func (m *Machine) State() (State, uint64) { return m.state, m.epoch }

// Last returns the last decision.
func (m *Machine) Last() Decision { return m.last }

// Heartbeat returns what this node's heartbeats say now.
func (m *Machine) Heartbeat(now time.Time) PeerBeat {
	return PeerBeat{Role: m.state, Epoch: m.epoch, PublicOK: m.publicOK(now), WantRoute: m.routed, Routing: m.routing}
}

// RouteWait: a node that asked the peer to route its VIP hands over
// instead if the peer has not said it routes within this long (a peer
// that cannot: no forwarding allowed, no route to our link address).
// RouteBackHold: the public network must be fine this long before the
// node serves on it again, so a flapping cable does not move the
// clients back and forth with every flap.
const (
	RouteWait     = 5 * time.Second
	RouteBackHold = time.Second
)

// Routes says whether this node serves through the peer (via) and whether
// it routes the peer's VIP (forPeer), and why the last of them changed.
func (m *Machine) Routes() (via, forPeer bool, why string) {
	return m.routed, m.routing, m.routeNote
}

// contact is the newest evidence that the peer hears us: the send time of
// our newest acknowledged heartbeat, on any path.
func (m *Machine) contact() time.Time {
	return m.newest(func(p *pathView) time.Time { return p.ackedOut })
}

// heard is when a heartbeat from the peer last arrived, on any path.
func (m *Machine) heard() time.Time { return m.newest(func(p *pathView) time.Time { return p.heard }) }

func (m *Machine) newest(of func(*pathView) time.Time) time.Time {
	var t time.Time
	for _, p := range m.paths {
		if v := of(p); v.After(t) {
			t = v
		}
	}
	return t
}

// PathUp reports whether path p carried a beat from the peer within the
// threshold.
func (m *Machine) PathUp(p Path, now time.Time) bool {
	v := m.paths[p]
	return v != nil && !v.heard.IsZero() && now.Sub(v.heard) < m.opt.Timing.Threshold
}

func (m *Machine) peerFresh(now time.Time) bool {
	h := m.heard()
	return !h.IsZero() && now.Sub(h) < m.opt.Timing.Threshold
}

// inContact: the peer heard one of our heartbeats sent within the threshold.
func (m *Machine) inContact(now time.Time) bool {
	c := m.contact()
	return !c.IsZero() && now.Sub(c) < m.opt.Timing.Threshold
}

// silentFor is how long the peer has been silent, counted only while this
// process ran: the clock restarts at start and after a freeze, since what
// happened meanwhile is unknown.
func (m *Machine) silentFor(now time.Time) time.Duration {
	// An ack is as good as a beat: the peer is alive and hears us.
	from := later(later(m.heard(), m.contact()), m.resumed)
	if m.opt.Tiebreaker && !m.opt.Witness {
		from = later(from, m.probeOKSince)
	}
	return now.Sub(from)
}

// tiebreakerOK: a probe sent within the threshold, and since the last
// freeze, was answered.
func (m *Machine) tiebreakerOK(now time.Time) bool {
	return m.opt.Tiebreaker && m.probeOK && !m.probeOKSent.Before(m.resumed) &&
		now.Sub(m.probeOKSent) < m.opt.Timing.Threshold
}

// publicOK is this node's view of its own public network. Without a
// tiebreaker it cannot be measured and is assumed fine.
func (m *Machine) publicOK(now time.Time) bool {
	if m.carrierLost(now) {
		return false
	}
	if !m.opt.Tiebreaker {
		return true
	}
	return m.tiebreakerOK(now)
}

// carrierLost: the public interface has had no carrier for CarrierHold.
func (m *Machine) carrierLost(now time.Time) bool {
	return !m.carrierDown.IsZero() && now.Sub(m.carrierDown) >= CarrierHold
}

// publicLost: the public interface has lost its carrier for CarrierHold,
// or the tiebreaker has not answered for a whole threshold while probes
// were being sent (not merely "no result yet").
func (m *Machine) publicLost(now time.Time) bool {
	if m.carrierLost(now) {
		return true
	}
	if !m.opt.Tiebreaker || m.probeFailAt.IsZero() || m.probeOK {
		return false
	}
	return now.Sub(m.probeFailAt) >= m.opt.Timing.Threshold && now.Sub(m.resumed) >= m.opt.Timing.Threshold
}

// arbiterOK: the arbiter lets this node serve without hearing the peer.
func (m *Machine) arbiterOK(now time.Time) bool {
	// A node whose public interface has no carrier cannot serve there,
	// whatever the arbiter says.
	if m.carrierLost(now) {
		return false
	}
	if m.opt.Witness {
		return m.witnessHeld
	}
	return m.tiebreakerOK(now)
}

// peerServing: the peer's last beat, received within the threshold, says it
// holds serving rights.
func (m *Machine) peerServing(now time.Time) bool {
	return m.peerKnown && m.peerFresh(now) && m.peer.Role.Serving()
}

// Step feeds one event at time now (monotonic) and returns the actions to
// carry out, in order, and for admin events an error saying why the request
// was refused.
func (m *Machine) Step(now time.Time, ev Event) ([]Action, error) {
	var acts []Action
	// Freeze: no step for a whole threshold means this process (or its
	// machine) was stopped. Fence before looking at anything that queued up
	// meanwhile, and forget what the arbiter said before.
	if gap := now.Sub(m.lastStep); gap >= m.opt.Timing.Threshold {
		m.resumed = now
		m.witnessHeld = false
		if m.state != Passive && m.state != Fenced {
			acts = m.fence(acts, now, fmt.Sprintf("resumed after a freeze of %s: fence before serving anything", gap.Round(time.Millisecond)))
		}
	}
	m.lastStep = now

	var err error
	switch e := ev.(type) {
	case Tick:
	case Beat:
		v := m.paths[e.Path]
		if v == nil {
			return acts, fmt.Errorf("unknown heartbeat path %q", e.Path)
		}
		v.heard = now
		if e.Routing {
			m.peerRoutedAt = now
		}
		if !m.peerKnown || e.Role != m.peer.Role || e.Epoch != m.peer.Epoch {
			m.peerViewAt = now
		}
		m.peer, m.peerKnown = e.PeerBeat, true
	case Ack:
		v := m.paths[e.Path]
		if v == nil {
			return acts, fmt.Errorf("unknown heartbeat path %q", e.Path)
		}
		if e.Sent.After(v.ackedOut) && !e.Sent.After(now) {
			v.ackedOut = e.Sent
		}
	case Probe:
		if e.OK {
			if !m.probeOK {
				m.probeOKSince = e.Sent
			}
			m.probeOK = true
			if e.Sent.After(m.probeOKSent) {
				m.probeOKSent = e.Sent
			}
			m.probeFailAt = time.Time{}
		} else if !e.Sent.Before(m.probeOKSent) {
			if m.probeOK || m.probeFailAt.IsZero() {
				m.probeFailAt = e.Sent
			}
			m.probeOK = false
		}
	case Carrier:
		if e.Up {
			m.carrierDown = time.Time{}
		} else if m.carrierDown.IsZero() {
			m.carrierDown = now
		}
	case Witness:
		m.witnessHeld = e.Held
		if e.Held {
			m.campaigning = false
		}
	case Done:
		acts = m.done(acts, now, e)
	case AdminPromote:
		acts, err = m.adminPromote(acts, now, e)
	case AdminDemote:
		acts, err = m.adminDemote(acts, now)
	case AdminSwitchover:
		acts, err = m.adminSwitchover(acts, now)
	case FailbackReady:
		if m.state == Active && m.viaFailover && m.actionBusy == 0 && m.inContact(now) && m.peerKnown && m.peer.Role == Passive && m.peer.PublicOK {
			acts = m.handOver(acts, now, "failback: the preferred node has caught up")
		}
	case HandoverRequest:
		acts, err = m.handoverRequest(acts, now, e)
	default:
		return acts, fmt.Errorf("unknown event %T", ev)
	}
	if m.publicOK(now) {
		if m.publicOKFrom.IsZero() {
			m.publicOKFrom = now
		}
	} else {
		m.publicOKFrom = time.Time{}
	}
	acts = m.evaluate(acts, now)
	m.updateRouting(now)
	return acts, err
}

// updateRouting: a passive routes the peer's VIP while the peer, serving
// at an epoch it accepts, asks for it and this node's own public network
// is fine. It is a standing condition, re-read every step, so a lost
// beat or a restart heals by itself.
func (m *Machine) updateRouting(now time.Time) {
	want := m.opt.Route && m.state == Passive && m.peerKnown && m.peerFresh(now) &&
		m.peer.WantRoute && m.peer.Role.Serving() && m.peer.Epoch >= m.epoch && m.publicOK(now)
	if want == m.routing {
		return
	}
	m.routing = want
	if want {
		m.routeNote = fmt.Sprintf("the peer serves at epoch %d with its public network down: route its VIP over the link", m.peer.Epoch)
	} else {
		m.routeNote = "stop routing the peer's VIP"
	}
}

// evaluate applies the standing rules of docs/failover.md to the current
// inputs.
func (m *Machine) evaluate(acts []Action, now time.Time) []Action {
	t := m.opt.Timing
	// A node never serves under an epoch lower than one it has seen.
	if m.peerKnown && m.peerFresh(now) && m.peer.Epoch > m.epoch {
		switch {
		case m.state == Demoting && m.actionBusy == ActHandOver && m.peer.Role.Serving():
			// The peer took over, most likely as our handover asked. We
			// serve nothing already (the VIP went before the final
			// snapshot, the shares before the ask); fencing would only
			// cancel the handover's last step. Its end decides.
			return acts
		case m.state.Serving() || m.state == Demoting:
			acts = m.fence(acts, now, fmt.Sprintf("peer is %s at epoch %d, newer than ours (%d)", m.peer.Role, m.peer.Epoch, m.epoch))
			return m.rejoin(acts, now)
		case (m.state == Fenced || m.state == Passive) && m.peer.Role == Promoting:
			// Rejoin once the peer has promoted: listing its pool during
			// its promotion competes with it for a small machine (seconds
			// of failover time), and could see its rollbacks half done.
			return acts
		case m.state == Fenced || m.state == Passive:
			if m.peer.Role.Serving() || m.state == Fenced {
				return m.rejoin(acts, now)
			}
			// A passive peer with a newer epoch (it served, then was demoted):
			// adopt the epoch, stay passive.
			m.epoch = m.peer.Epoch
			return append(acts, Action{Kind: ActPersist, State: m.state, Epoch: m.epoch})
		}
	}

	switch m.state {
	case Active, Standalone, Promoting:
		if m.inContact(now) {
			m.forced = false
		}
		if m.opt.Witness && !m.witnessHeld && !m.inContact(now) && !m.forced {
			return m.fence(acts, now, "lost the witness lease and the peer")
		}
		if m.peerKnown && m.peerFresh(now) && m.peer.Role.Serving() && m.peer.Epoch == m.epoch {
			return m.fence(acts, now, fmt.Sprintf("peer is also %s at epoch %d: both fence; the node with the smaller name resumes when both are fenced, or an admin chooses with zrepl-ha failover --force", m.peer.Role, m.epoch))
		}
		if !m.inContact(now) {
			if !m.arbiterOK(now) && !m.forced {
				return m.fence(acts, now, fmt.Sprintf("no peer contact for %s and the %s is unreachable: self-fence", t.Threshold, m.arbiterName()))
			}
			if m.state == Active && !m.forced {
				return m.transition(acts, now, Standalone, fmt.Sprintf("no peer contact for %s; the %s confirms us: serving standalone", t.Threshold, m.arbiterName()))
			}
			return acts
		}
		if m.state == Promoting {
			return acts // the rest waits for the promotion to finish
		}
		// In contact with the peer.
		if m.state == Standalone && m.actionBusy == 0 {
			acts = m.transition(acts, now, Active, "peer is back")
		}
		if m.publicLost(now) && m.peerKnown && m.peerFresh(now) && m.peer.PublicOK && m.peer.Role == Passive && m.actionBusy == 0 {
			why := "tiebreaker silent for " + t.Threshold.String()
			if m.carrierLost(now) {
				why = "no carrier on the public interface for " + CarrierHold.String()
			}
			if !m.opt.Route {
				return m.handOver(acts, now, "our public network is down ("+why+") and the peer's is up: hand over")
			}
			if !m.routed {
				m.routed, m.routedAt = true, now
				m.routeNote = "our public network is down (" + why + ") and the peer's is up: serve through the peer"
			}
			if m.peer.Routing || now.Sub(later(m.routedAt, m.peerRoutedAt)) < RouteWait {
				return acts
			}
			// handOver's state change clears routed.
			return m.handOver(acts, now, fmt.Sprintf("our public network is down (%s) and the peer has not routed our VIP for %s: hand over", why, RouteWait))
		}
		if m.routed && !m.publicOKFrom.IsZero() && now.Sub(m.publicOKFrom) >= RouteBackHold {
			m.routed = false
			m.routeNote = "our public network is back for " + RouteBackHold.String() + ": serve on it again"
		}
		return acts

	case Demoting:
		// Wait for the handover; the epoch rule above still applies.
		return acts

	case Passive, Fenced:
		if m.actionBusy != 0 {
			return acts
		}
		if m.state == Passive && !m.rejoinRetryAt.IsZero() && !now.Before(m.rejoinRetryAt) && m.peerServing(now) {
			m.rejoinRetryAt = time.Time{}
			m.actionBusy = ActRejoin
			return append(acts, Action{Kind: ActRejoin, Epoch: m.epoch})
		}
		if m.handoverPending && m.state == Passive && m.witnessHeld {
			m.handoverPending = false
			return m.promote(acts, now, "handover from the peer; witness lease taken")
		}
		// Failover: the peer has been silent for threshold + margin while we
		// ran, and the arbiter confirms we are not the isolated one.
		if m.silentFor(now) >= t.Threshold+t.Margin && (m.opt.Tiebreaker || m.opt.Witness) {
			if !m.failedAt.IsZero() && now.Sub(m.failedAt) < t.Threshold {
				return acts
			}
			if m.opt.Witness && !m.witnessHeld {
				return m.campaign(acts)
			}
			if m.arbiterOK(now) {
				acts = m.promote(acts, now, fmt.Sprintf("peer silent for %s on every path and the %s answers: promote", m.silentFor(now).Round(time.Millisecond), m.arbiterName()))
				m.viaFailover = true
				return acts
			}
			return acts
		}
		// A fenced former active resumes when the peer, heard after we
		// fenced, consents: it is passive (or fenced with an older epoch)
		// and has said so for a settle period.
		if m.state == Fenced && m.peerKnown && m.peerFresh(now) && m.contact().After(m.since) &&
			now.Sub(later(m.peerViewAt, m.since)) >= t.settle() && m.peerConsents() {
			if m.opt.Witness && !m.witnessHeld {
				return m.campaign(acts)
			}
			if m.publicOK(now) {
				return m.serve(acts, now, fmt.Sprintf("peer is %s at epoch %d and consents: resume serving", m.peer.Role, m.peer.Epoch))
			}
		}
		return acts
	}
	return acts
}

// campaign asks for the witness lease once; the Witness event answers.
func (m *Machine) campaign(acts []Action) []Action {
	if m.campaigning {
		return acts
	}
	m.campaigning = true
	return append(acts, Action{Kind: ActCampaign})
}

// peerConsents: the peer's view lets a fenced node of epoch m.epoch serve.
func (m *Machine) peerConsents() bool {
	switch m.peer.Role {
	case Passive:
		return m.peer.Epoch <= m.epoch
	case Fenced:
		return m.peer.Epoch < m.epoch || (m.peer.Epoch == m.epoch && m.opt.Name < m.peerName())
	}
	return false
}

func (m *Machine) peerName() string { return m.opt.PeerName }

func (m *Machine) arbiterName() string {
	switch {
	case m.opt.Witness:
		return "witness"
	case m.opt.Tiebreaker:
		return "tiebreaker"
	}
	return "arbiter (none configured: no tiebreaker, no witness)"
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (m *Machine) setState(now time.Time, to State, reason string) {
	if to != Passive {
		m.handoverPending = false
	}
	if to != Active && to != Standalone && m.routed {
		m.routed = false
		m.routeNote = "no longer serving: " + reason
	}
	m.last = Decision{At: now, From: m.state, To: to, Epoch: m.epoch, Reason: reason}
	m.state, m.since = to, now
}

func (m *Machine) transition(acts []Action, now time.Time, to State, reason string) []Action {
	if m.state == to {
		return acts
	}
	m.setState(now, to, reason)
	return append(acts, Action{Kind: ActPersist, State: to, Epoch: m.epoch})
}

// fence stops serving at once. Replication state is untouched.
func (m *Machine) fence(acts []Action, now time.Time, reason string) []Action {
	wasServing := m.state.Serving()
	m.setState(now, Fenced, reason)
	m.actionBusy = 0
	acts = append(acts, Action{Kind: ActPersist, State: Fenced, Epoch: m.epoch})
	if wasServing {
		acts = append(acts, Action{Kind: ActUnserve})
	}
	if m.opt.Witness && m.witnessHeld {
		m.witnessHeld = false
		acts = append(acts, Action{Kind: ActResign})
	}
	return acts
}

func (m *Machine) rejoin(acts []Action, now time.Time) []Action {
	m.epoch = m.peer.Epoch
	m.setState(now, Passive, fmt.Sprintf("peer is %s at epoch %d: rejoin as passive", m.peer.Role, m.peer.Epoch))
	m.actionBusy = ActRejoin
	return append(acts, Action{Kind: ActPersist, State: Passive, Epoch: m.epoch}, Action{Kind: ActRejoin, Epoch: m.epoch})
}

func (m *Machine) promote(acts []Action, now time.Time, reason string) []Action {
	e := m.epoch
	if m.peerKnown && m.peer.Epoch > e {
		e = m.peer.Epoch
	}
	m.epoch = e + 1
	m.viaFailover = false
	m.setState(now, Promoting, reason)
	m.actionBusy = ActServe
	// Persist the new epoch before serving, so a crash mid-promotion never
	// restarts with the old one.
	return append(acts, Action{Kind: ActPersist, State: Promoting, Epoch: m.epoch}, Action{Kind: ActServe, Epoch: m.epoch})
}

// serve takes serving rights under the current epoch (the peer consented,
// so no new generation starts).
func (m *Machine) serve(acts []Action, now time.Time, reason string) []Action {
	m.setState(now, Promoting, reason)
	m.actionBusy = ActServe
	return append(acts, Action{Kind: ActPersist, State: Promoting, Epoch: m.epoch}, Action{Kind: ActServe, Epoch: m.epoch})
}

func (m *Machine) handOver(acts []Action, now time.Time, reason string) []Action {
	wasServing := m.state.Serving()
	m.setState(now, Demoting, reason)
	m.actionBusy = ActHandOver
	acts = append(acts, Action{Kind: ActPersist, State: Demoting, Epoch: m.epoch})
	if wasServing {
		acts = append(acts, Action{Kind: ActUnserve, HandOver: true})
	}
	return append(acts, Action{Kind: ActHandOver, Epoch: m.epoch})
}

func (m *Machine) done(acts []Action, now time.Time, d Done) []Action {
	if d.Action != m.actionBusy {
		return acts // stale: the machine moved on (e.g. fenced mid-promotion)
	}
	m.actionBusy = 0
	switch d.Action {
	case ActServe:
		if d.Err != nil {
			m.failedAt = now
			return m.fence(acts, now, "promotion failed: "+d.Err.Error())
		}
		if m.inContact(now) {
			return m.transition(acts, now, Active, "promotion finished")
		}
		return m.transition(acts, now, Standalone, "promotion finished; peer not in contact")
	case ActHandOver:
		if d.Err != nil {
			return m.transition(acts, now, Fenced, "handover failed: "+d.Err.Error())
		}
		return m.transition(acts, now, Passive, "handed over: the peer promotes")
	case ActRejoin:
		if d.Err != nil {
			m.last.Reason = "rejoin failed: " + d.Err.Error()
			// Retried: the peer may have been unreachable for a moment, or
			// a mount busy; each step of a rejoin is safe to run again.
			m.rejoinRetryAt = now.Add(3 * m.opt.Timing.Threshold)
		} else {
			m.rejoinRetryAt = time.Time{}
		}
	}
	return acts
}

func (m *Machine) adminPromote(acts []Action, now time.Time, e AdminPromote) ([]Action, error) {
	if m.state.Serving() {
		return acts, fmt.Errorf("this node is already %s", m.state)
	}
	if m.actionBusy != 0 {
		return acts, fmt.Errorf("this node is busy (%s in progress); try again when it finishes", m.actionBusy)
	}
	if m.peerServing(now) && !e.IgnorePeer {
		return acts, fmt.Errorf("the peer is visibly %s at epoch %d (heartbeat %s ago); demote it first or pass --ignore-peer",
			m.peer.Role, m.peer.Epoch, now.Sub(m.heard()).Round(time.Millisecond))
	}
	if m.opt.Witness && !m.witnessHeld {
		return acts, fmt.Errorf("a witness is configured and this node does not hold its lease")
	}
	acts = m.promote(acts, now, "admin: failover --force")
	m.forced = true
	return acts, nil
}

func (m *Machine) adminDemote(acts []Action, now time.Time) ([]Action, error) {
	if !m.state.Serving() && m.state != Fenced {
		return acts, fmt.Errorf("this node is %s, not serving", m.state)
	}
	was := m.state.Serving()
	m.setState(now, Passive, "admin: demote")
	m.actionBusy = 0
	acts = append(acts, Action{Kind: ActPersist, State: Passive, Epoch: m.epoch})
	if was {
		acts = append(acts, Action{Kind: ActUnserve})
	}
	if m.opt.Witness && m.witnessHeld {
		m.witnessHeld = false
		acts = append(acts, Action{Kind: ActResign})
	}
	return acts, nil
}

func (m *Machine) adminSwitchover(acts []Action, now time.Time) ([]Action, error) {
	if m.state != Active {
		return acts, fmt.Errorf("switchover runs on the active node; this node is %s", m.state)
	}
	if !m.inContact(now) || !m.peerKnown || m.peer.Role != Passive {
		return acts, fmt.Errorf("the peer must be a passive in contact for a switchover")
	}
	if m.actionBusy != 0 {
		return acts, fmt.Errorf("this node is busy (%s in progress)", m.actionBusy)
	}
	return m.handOver(acts, now, "admin: switchover"), nil
}

func (m *Machine) handoverRequest(acts []Action, now time.Time, e HandoverRequest) ([]Action, error) {
	if m.state != Passive || m.actionBusy != 0 {
		return acts, fmt.Errorf("cannot take over: this node is %s", m.state)
	}
	if e.PeerEpoch < m.epoch {
		return acts, fmt.Errorf("handover from epoch %d, older than ours (%d)", e.PeerEpoch, m.epoch)
	}
	if m.peerKnown && e.PeerEpoch > m.peer.Epoch {
		m.peer.Epoch = e.PeerEpoch
	}
	if m.opt.Witness && !m.witnessHeld {
		// The demoting peer resigned; take the lease, then promote.
		m.handoverPending = true
		return m.campaign(acts), nil
	}
	return m.promote(acts, now, fmt.Sprintf("handover from the peer at epoch %d", e.PeerEpoch)), nil
}

// View is what the machine knows now, for status and metrics.
type View struct {
	State      State
	Epoch      uint64
	Since      time.Time
	Last       Decision
	Peer       PeerBeat
	PeerKnown  bool
	PeerHeard  time.Time // last beat on any path
	Contact    time.Time // send time of our newest acknowledged beat
	Paths      map[Path]bool
	Tiebreaker bool // answered within the threshold
	PublicOK   bool
	Witness    bool // lease held
	Busy       string
	// Routed: this node has decided to serve through the peer;
	// RoutingForPeer: to route the peer's VIP. Decisions: the Node's
	// status and heartbeats say what its router has in place.
	Routed, RoutingForPeer bool
	Alerts                 []string
}

// PeerState is the role the peer's last heartbeat gave, and whether one
// has been heard.
func (m *Machine) PeerState() (State, bool) { return m.peer.Role, m.peerKnown }

// View returns the machine's view at now.
func (m *Machine) View(now time.Time) View {
	v := View{State: m.state, Epoch: m.epoch, Since: m.since, Last: m.last, Peer: m.peer, PeerKnown: m.peerKnown,
		PeerHeard: m.heard(), Contact: m.contact(), Paths: map[Path]bool{},
		Tiebreaker: m.tiebreakerOK(now), PublicOK: m.publicOK(now), Witness: m.witnessHeld,
		Routed: m.routed, RoutingForPeer: m.routing}
	if m.routed {
		v.Alerts = append(v.Alerts, "serving through the peer: clients reach the VIP over the heartbeat link while our public network is down")
	}
	if m.actionBusy != 0 {
		v.Busy = m.actionBusy.String()
	}
	for p := range m.paths {
		v.Paths[p] = m.PathUp(p, now)
	}
	for _, p := range []Path{PathLink, PathPublic} {
		if !v.Paths[p] {
			v.Alerts = append(v.Alerts, fmt.Sprintf("%s path to the peer is down", p))
		}
	}
	if m.carrierLost(now) {
		v.Alerts = append(v.Alerts, "no carrier on the public interface: its cable or switch port is down")
	}
	if m.opt.Tiebreaker && !v.Tiebreaker {
		v.Alerts = append(v.Alerts, "tiebreaker unreachable: this node's public network may be down")
	}
	if !m.opt.Tiebreaker && !m.opt.Witness {
		v.Alerts = append(v.Alerts, "no tiebreaker and no witness configured: automatic failover is off")
	}
	if m.peerKnown && m.peerFresh(now) && !m.peer.PublicOK {
		v.Alerts = append(v.Alerts, "the peer reports its public network down")
	}
	if m.opt.Witness && !m.witnessHeld && m.state.Serving() {
		v.Alerts = append(v.Alerts, "serving without the witness lease (the peer is in contact)")
	}
	if m.state == Fenced {
		v.Alerts = append(v.Alerts, "fenced: "+m.last.Reason)
	}
	return v
}
