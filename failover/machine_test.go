package failover

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// world describes the world around the node under test for feed: which paths
// carry the peer's beats and acks, whether the tiebreaker answers, and what
// the peer says.
type world struct {
	link, public bool
	tiebreaker   bool
	peer         PeerBeat
}

var (
	passivePeer = PeerBeat{Role: Passive, Epoch: 1, PublicOK: true}
	activePeer  = PeerBeat{Role: Active, Epoch: 1, PublicOK: true}
	healthy     = func(p PeerBeat) world { return world{link: true, public: true, tiebreaker: true, peer: p} }
)

type harness struct {
	t   *testing.T
	m   *Machine
	now time.Time
	// log of every action returned, in order
	acts []Action
	// when each probe/beat was last fed, to keep their cadence
	lastBeat, lastProbe time.Time
}

func newHarness(t *testing.T, opt Options, p Persisted) *harness {
	t.Helper()
	if opt.Name == "" {
		opt.Name, opt.PeerName = "a", "b"
	}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	return &harness{t: t, m: NewMachine(opt, p, now), now: now}
}

// step advances the clock by d and feeds ev.
func (h *harness) step(d time.Duration, ev Event) ([]Action, error) {
	h.now = h.now.Add(d)
	a, err := h.m.Step(h.now, ev)
	h.acts = append(h.acts, a...)
	return a, err
}

func (h *harness) mustStep(d time.Duration, ev Event) []Action {
	h.t.Helper()
	a, err := h.step(d, ev)
	if err != nil {
		h.t.Fatalf("step %T: %v", ev, err)
	}
	return a
}

// feed runs the node for d in 100 ms ticks in world n: beats and acks every
// 200 ms on the paths that are up, a tiebreaker probe every 500 ms.
func (h *harness) feed(d time.Duration, n world) {
	h.t.Helper()
	end := h.now.Add(d)
	for h.now.Before(end) {
		h.mustStep(100*time.Millisecond, Tick{})
		if h.now.Sub(h.lastBeat) >= 200*time.Millisecond {
			h.lastBeat = h.now
			for _, p := range []struct {
				up   bool
				path Path
			}{{n.link, PathLink}, {n.public, PathPublic}} {
				if p.up {
					h.mustStep(0, Beat{Path: p.path, PeerBeat: n.peer})
					h.mustStep(0, Ack{Path: p.path, Sent: h.now.Add(-5 * time.Millisecond)})
				}
			}
		}
		if h.now.Sub(h.lastProbe) >= 500*time.Millisecond {
			h.lastProbe = h.now
			h.mustStep(0, Probe{OK: n.tiebreaker, Sent: h.now.Add(-2 * time.Millisecond)})
		}
	}
}

// feedUntil feeds until the node reaches state want, or fails after max.
func (h *harness) feedUntil(max time.Duration, n world, want State) time.Duration {
	h.t.Helper()
	start := h.now
	for h.now.Sub(start) < max {
		h.feed(100*time.Millisecond, n)
		if s, _ := h.m.State(); s == want {
			return h.now.Sub(start)
		}
	}
	s, e := h.m.State()
	h.t.Fatalf("not %s after %s: %s at epoch %d (last decision: %s)", want, max, s, e, h.m.Last().Reason)
	return 0
}

func (h *harness) expect(want State, epoch uint64) {
	h.t.Helper()
	if s, e := h.m.State(); s != want || e != epoch {
		h.t.Fatalf("state %s epoch %d, want %s epoch %d (last decision: %s)", s, e, want, epoch, h.m.Last().Reason)
	}
}

// took reports whether kind appears in the actions since index from.
func (h *harness) took(from int, kind ActionKind) bool {
	return slices.ContainsFunc(h.acts[from:], func(a Action) bool { return a.Kind == kind })
}

func (h *harness) done(kind ActionKind, err error) {
	h.t.Helper()
	h.mustStep(0, Done{Action: kind, Err: err})
}

// activeNode returns a harness whose node serves at epoch 1 with a healthy
// passive peer.
func activeNode(t *testing.T, opt Options) *harness {
	t.Helper()
	h := newHarness(t, opt, Persisted{State: Active, Epoch: 1})
	h.expect(Fenced, 1)
	h.feedUntil(5*time.Second, healthy(passivePeer), Promoting)
	h.done(ActServe, nil)
	h.expect(Active, 1)
	h.feed(time.Second, healthy(passivePeer))
	return h
}

func passiveNode(t *testing.T, opt Options) *harness {
	t.Helper()
	h := newHarness(t, opt, Persisted{State: Passive, Epoch: 1})
	h.feed(time.Second, healthy(activePeer))
	h.expect(Passive, 1)
	return h
}

var tb = Options{Tiebreaker: true}

// The rows of the state table in docs/failover.md, one test each. The row
// names are the table's first column.
func TestTableRows(t *testing.T) {
	const T, M = 3 * time.Second, 2 * time.Second

	t.Run("passive/peer silent, tiebreaker answers: promote after threshold+margin", func(t *testing.T) {
		h := passiveNode(t, tb)
		from, last := len(h.acts), h.lastBeat
		h.feedUntil(10*time.Second, world{tiebreaker: true}, Promoting)
		if took := h.now.Sub(last); took < T+M || took > T+M+500*time.Millisecond {
			t.Fatalf("promoted %s after the last beat, want within [%s, %s]", took, T+M, T+M+500*time.Millisecond)
		}
		h.expect(Promoting, 2)
		want := []Action{{Kind: ActPersist, State: Promoting, Epoch: 2}, {Kind: ActServe, Epoch: 2}}
		if got := h.acts[from:]; !slices.Equal(got, want) {
			t.Fatalf("actions %v, want %v", got, want)
		}
	})

	t.Run("passive/peer silent, tiebreaker silent: isolated, never promote", func(t *testing.T) {
		h := passiveNode(t, tb)
		h.feed(60*time.Second, world{})
		h.expect(Passive, 1)
		if !strings.Contains(h.m.Last().Reason, "started") {
			t.Fatalf("unexpected decision %q", h.m.Last().Reason)
		}
	})

	t.Run("passive/heartbeat link down, public alive: no failover", func(t *testing.T) {
		h := passiveNode(t, tb)
		h.feed(60*time.Second, world{public: true, tiebreaker: true, peer: activePeer})
		h.expect(Passive, 1)
		if h.m.PathUp(PathLink, h.now) || !h.m.PathUp(PathPublic, h.now) {
			t.Fatal("path view wrong: link should be down, public up")
		}
	})

	t.Run("passive/own public network down: nothing changes, heartbeats say so", func(t *testing.T) {
		h := passiveNode(t, tb)
		h.feed(30*time.Second, world{link: true, peer: activePeer})
		h.expect(Passive, 1)
		if h.m.Heartbeat(h.now).PublicOK {
			t.Fatal("heartbeat still claims PublicOK")
		}
	})

	t.Run("passive/without tiebreaker or witness: never promotes by itself", func(t *testing.T) {
		h := passiveNode(t, Options{})
		h.feed(60*time.Second, world{tiebreaker: true})
		h.expect(Passive, 1)
	})

	t.Run("active/peer lost, tiebreaker silent: self-fence within the threshold", func(t *testing.T) {
		h := activeNode(t, tb)
		from := len(h.acts)
		took := h.feedUntil(10*time.Second, world{}, Fenced)
		if took > T {
			t.Fatalf("fenced %s after the last ack, want at most %s", took, T)
		}
		if !h.took(from, ActUnserve) {
			t.Fatal("fence did not unserve")
		}
		if h.took(from, ActRejoin) || h.took(from, ActServe) {
			t.Fatal("fence touched replication state")
		}
	})

	t.Run("active/peer lost, tiebreaker answers: standalone", func(t *testing.T) {
		h := activeNode(t, tb)
		from := len(h.acts)
		h.feedUntil(10*time.Second, world{tiebreaker: true}, Standalone)
		if h.took(from, ActUnserve) {
			t.Fatal("standalone stopped serving")
		}
		h.feed(60*time.Second, world{tiebreaker: true})
		h.expect(Standalone, 1)
	})

	t.Run("standalone/peer back: active", func(t *testing.T) {
		h := activeNode(t, tb)
		h.feedUntil(10*time.Second, world{tiebreaker: true}, Standalone)
		h.feedUntil(2*time.Second, healthy(passivePeer), Active)
	})

	t.Run("standalone/tiebreaker lost too: fence", func(t *testing.T) {
		h := activeNode(t, tb)
		h.feedUntil(10*time.Second, world{tiebreaker: true}, Standalone)
		took := h.feedUntil(10*time.Second, world{}, Fenced)
		if took > T+500*time.Millisecond {
			t.Fatalf("fenced after %s", took)
		}
	})

	t.Run("active/heartbeat link down, public alive: keep serving", func(t *testing.T) {
		h := activeNode(t, tb)
		h.feed(60*time.Second, world{public: true, tiebreaker: true, peer: passivePeer})
		h.expect(Active, 1)
	})

	t.Run("active/own public down, link alive, peer's public up: hand over", func(t *testing.T) {
		h := activeNode(t, tb)
		from := len(h.acts)
		took := h.feedUntil(10*time.Second, world{link: true, peer: passivePeer}, Demoting)
		if took > T+time.Second {
			t.Fatalf("handover after %s", took)
		}
		want := []ActionKind{ActPersist, ActUnserve, ActHandOver}
		var got []ActionKind
		for _, a := range h.acts[from:] {
			got = append(got, a.Kind)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("actions %v, want %v (unserve before the final sync)", got, want)
		}
		if !h.acts[from+1].HandOver {
			t.Error("the unserve before a handover is not marked as such")
		}
	})

	t.Run("active/public carrier lost, link alive, peer's public up: hand over after CarrierHold", func(t *testing.T) {
		h := activeNode(t, tb)
		h.mustStep(0, Carrier{Up: false})
		// The tiebreaker's last answer is fresh: only the carrier says the
		// cable is out.
		took := h.feedUntil(10*time.Second, world{link: true, peer: passivePeer}, Demoting)
		if took < CarrierHold || took > CarrierHold+300*time.Millisecond {
			t.Fatalf("handover %s after the carrier went, want about %s (the tiebreaker takes %s)", took, CarrierHold, T)
		}
		if r := h.m.Last().Reason; !strings.Contains(r, "no carrier") {
			t.Errorf("reason %q does not name the carrier", r)
		}
	})

	t.Run("active/public carrier bounces for less than CarrierHold: keep serving", func(t *testing.T) {
		h := activeNode(t, tb)
		for i := 0; i < 10; i++ {
			h.mustStep(0, Carrier{Up: false})
			h.feed(CarrierHold-200*time.Millisecond, healthy(passivePeer))
			h.mustStep(0, Carrier{Up: true})
			h.feed(300*time.Millisecond, healthy(passivePeer))
		}
		h.expect(Active, 1)
		if !h.m.View(h.now).PublicOK {
			t.Error("public reported down after the bounces ended")
		}
	})

	t.Run("passive/public carrier lost: reports public down to the peer, never promotes", func(t *testing.T) {
		h := passiveNode(t, tb)
		h.mustStep(0, Carrier{Up: false})
		h.feed(CarrierHold+100*time.Millisecond, healthy(activePeer))
		if h.m.Heartbeat(h.now).PublicOK {
			t.Fatal("heartbeat says public OK without a carrier")
		}
		h.feed(20*time.Second, world{link: false, public: false, tiebreaker: true})
		if s, _ := h.m.State(); s.Serving() || s == Promoting {
			t.Fatalf("promoted without a public carrier: %s", s)
		}
	})

	t.Run("active/own public down, peer's public down too: keep serving", func(t *testing.T) {
		h := activeNode(t, tb)
		p := passivePeer
		p.PublicOK = false
		h.feed(30*time.Second, world{link: true, peer: p})
		h.expect(Active, 1)
	})

	t.Run("demoting/handover done: passive", func(t *testing.T) {
		h := activeNode(t, tb)
		h.feedUntil(10*time.Second, world{link: true, peer: passivePeer}, Demoting)
		h.done(ActHandOver, nil)
		h.expect(Passive, 1)
		// The peer promotes to epoch 2; we follow it as passive.
		p := PeerBeat{Role: Active, Epoch: 2, PublicOK: true}
		h.feed(time.Second, world{link: true, peer: p})
		h.expect(Passive, 2)
	})

	t.Run("demoting/the peer promotes during our handover: no fence, rejoin once it is active", func(t *testing.T) {
		h := activeNode(t, tb)
		h.feedUntil(10*time.Second, world{link: true, peer: passivePeer}, Demoting)
		from := len(h.acts)
		// Our ask reached the peer before our handover action ended.
		promoting := PeerBeat{Role: Promoting, Epoch: 2, PublicOK: true}
		h.feed(time.Second, world{link: true, peer: promoting})
		h.expect(Demoting, 1)
		if h.took(from, ActUnserve) || h.took(from, ActRejoin) {
			t.Fatalf("acted on the peer's promotion before our handover ended: %v", h.acts[from:])
		}
		h.done(ActHandOver, nil)
		h.feed(time.Second, world{link: true, peer: promoting})
		h.expect(Passive, 1)
		if h.took(from, ActRejoin) {
			t.Fatal("rejoined while the peer was still promoting")
		}
		h.feed(time.Second, world{link: true, peer: PeerBeat{Role: Active, Epoch: 2, PublicOK: true}})
		h.expect(Passive, 2)
		if !h.took(from, ActRejoin) || h.took(from, ActUnserve) {
			t.Fatalf("actions %v: want a rejoin and no fence", h.acts[from:])
		}
	})

	t.Run("demoting/handover failed: fenced", func(t *testing.T) {
		h := activeNode(t, tb)
		h.feedUntil(10*time.Second, world{link: true, peer: passivePeer}, Demoting)
		h.done(ActHandOver, errors.New("final send: link down"))
		h.expect(Fenced, 1)
	})

	t.Run("passive/handover request: promote", func(t *testing.T) {
		h := passiveNode(t, tb)
		a := h.mustStep(0, HandoverRequest{PeerEpoch: 1})
		h.expect(Promoting, 2)
		if len(a) != 2 || a[1].Kind != ActServe || a[1].Epoch != 2 {
			t.Fatalf("actions %v", a)
		}
	})

	t.Run("promoting/serve done: active if in contact, standalone if not", func(t *testing.T) {
		h := passiveNode(t, tb)
		h.mustStep(0, HandoverRequest{PeerEpoch: 1})
		h.done(ActServe, nil)
		h.expect(Active, 2)

		h = passiveNode(t, tb)
		h.feedUntil(10*time.Second, world{tiebreaker: true}, Promoting)
		h.done(ActServe, nil)
		h.expect(Standalone, 2)
	})

	t.Run("promoting/serve failed: fenced, retried after the threshold", func(t *testing.T) {
		h := passiveNode(t, tb)
		h.feedUntil(10*time.Second, world{tiebreaker: true}, Promoting)
		h.done(ActServe, errors.New("rollback: dataset is busy"))
		h.expect(Fenced, 2)
		took := h.feedUntil(10*time.Second, world{tiebreaker: true}, Promoting)
		if took < T {
			t.Fatalf("retried after %s, want at least %s", took, T)
		}
		h.expect(Promoting, 3)
	})

	t.Run("any/peer serving at a newer epoch: fence and rejoin as passive", func(t *testing.T) {
		h := activeNode(t, tb)
		from := len(h.acts)
		h.feed(300*time.Millisecond, healthy(PeerBeat{Role: Active, Epoch: 2, PublicOK: true}))
		h.expect(Passive, 2)
		var got []ActionKind
		for _, a := range h.acts[from:] {
			got = append(got, a.Kind)
		}
		want := []ActionKind{ActPersist, ActUnserve, ActPersist, ActRejoin}
		if !slices.Equal(got, want) {
			t.Fatalf("actions %v, want %v", got, want)
		}
	})

	t.Run("active/freeze longer than the threshold: fence before anything", func(t *testing.T) {
		h := activeNode(t, tb)
		// 20 s without a step; the first thing after is a queued beat that
		// still says the peer is passive.
		a := h.mustStep(20*time.Second, Beat{Path: PathLink, PeerBeat: passivePeer})
		if len(a) < 2 || a[0].Kind != ActPersist || a[0].State != Fenced || a[1].Kind != ActUnserve || a[1].HandOver {
			t.Fatalf("first actions after the freeze %v, want persist(fenced), unserve", a)
		}
		h.expect(Fenced, 1)
		// Fresh beats from a peer that promoted meanwhile: rejoin.
		h.feed(500*time.Millisecond, healthy(PeerBeat{Role: Active, Epoch: 2, PublicOK: true}))
		h.expect(Passive, 2)
	})

	t.Run("active/freeze shorter than the threshold: keep serving", func(t *testing.T) {
		h := activeNode(t, tb)
		h.mustStep(2*time.Second, Tick{})
		h.feed(2*time.Second, healthy(passivePeer))
		h.expect(Active, 1)
	})

	t.Run("passive/freeze: silence counts again from the resume", func(t *testing.T) {
		h := passiveNode(t, tb)
		h.mustStep(20*time.Second, Tick{})
		h.expect(Passive, 1)
		took := h.feedUntil(10*time.Second, world{tiebreaker: true}, Promoting)
		if took < T+M {
			t.Fatalf("promoted %s after resuming, want at least %s", took, T+M)
		}
	})

	t.Run("fenced/peer passive at our epoch, heard after fencing: resume", func(t *testing.T) {
		h := newHarness(t, tb, Persisted{State: Active, Epoch: 3})
		p := passivePeer
		p.Epoch = 3
		took := h.feedUntil(5*time.Second, healthy(p), Promoting)
		if took < DefaultTiming.settle() {
			t.Fatalf("resumed after %s, before the settle time", took)
		}
		h.expect(Promoting, 3) // consent: no new epoch
	})

	t.Run("fenced/peer passive at a newer epoch: rejoin", func(t *testing.T) {
		h := newHarness(t, tb, Persisted{State: Active, Epoch: 1})
		h.feed(time.Second, healthy(PeerBeat{Role: Passive, Epoch: 2, PublicOK: true}))
		h.expect(Passive, 2)
		if !h.took(0, ActRejoin) {
			t.Fatal("no rejoin")
		}
	})

	t.Run("fenced/peer fenced at the same epoch: the smaller name resumes", func(t *testing.T) {
		p := PeerBeat{Role: Fenced, Epoch: 4, PublicOK: true}
		a := newHarness(t, Options{Tiebreaker: true, Name: "a", PeerName: "b"}, Persisted{State: Active, Epoch: 4})
		a.feedUntil(5*time.Second, healthy(p), Promoting)
		b := newHarness(t, Options{Tiebreaker: true, Name: "b", PeerName: "a"}, Persisted{State: Active, Epoch: 4})
		b.feed(10*time.Second, healthy(p))
		b.expect(Fenced, 4)
	})

	t.Run("restart/was active: starts fenced", func(t *testing.T) {
		for _, s := range []State{Active, Standalone, Promoting, Demoting, Fenced} {
			m := NewMachine(tb, Persisted{State: s, Epoch: 7}, time.Now())
			if got, e := m.State(); got != Fenced || e != 7 {
				t.Errorf("persisted %s: started %s/%d, want fenced/7", s, got, e)
			}
		}
		m := NewMachine(tb, Persisted{State: Passive, Epoch: 7}, time.Now())
		if got, _ := m.State(); got != Passive {
			t.Errorf("persisted passive: started %s", got)
		}
	})

	t.Run("restart/fenced, peer silent, tiebreaker answers: promote only after threshold+margin of its own", func(t *testing.T) {
		h := newHarness(t, tb, Persisted{State: Active, Epoch: 1})
		took := h.feedUntil(10*time.Second, world{tiebreaker: true}, Promoting)
		if took < T+M {
			t.Fatalf("promoted %s after start", took)
		}
		h.expect(Promoting, 2)
	})

	t.Run("admin/failover --force refused while the peer is visibly active", func(t *testing.T) {
		h := passiveNode(t, tb)
		if _, err := h.step(0, AdminPromote{}); err == nil || !strings.Contains(err.Error(), "--ignore-peer") {
			t.Fatalf("err %v", err)
		}
		h.expect(Passive, 1)
		h.mustStep(0, AdminPromote{IgnorePeer: true})
		h.expect(Promoting, 2)
	})

	t.Run("admin/failover --force without a peer or arbiter sticks", func(t *testing.T) {
		h := passiveNode(t, Options{})
		h.feed(10*time.Second, world{})
		h.mustStep(0, AdminPromote{})
		h.done(ActServe, nil)
		h.feed(30*time.Second, world{})
		h.expect(Standalone, 2)
	})

	t.Run("admin/demote: passive, unserved", func(t *testing.T) {
		h := activeNode(t, tb)
		from := len(h.acts)
		h.mustStep(0, AdminDemote{})
		h.expect(Passive, 1)
		if !h.took(from, ActUnserve) {
			t.Fatal("demote did not unserve")
		}
		h.feed(30*time.Second, healthy(passivePeer))
		h.expect(Passive, 1)
	})

	t.Run("admin/switchover: hand over", func(t *testing.T) {
		h := activeNode(t, tb)
		h.mustStep(0, AdminSwitchover{})
		h.expect(Demoting, 1)
		if _, err := passiveNode(t, tb).step(0, AdminSwitchover{}); err == nil {
			t.Fatal("switchover accepted on a passive")
		}
	})

	t.Run("active/peer active at the same epoch: fence", func(t *testing.T) {
		h := activeNode(t, tb)
		h.feed(300*time.Millisecond, healthy(activePeer))
		h.expect(Fenced, 1)
	})

	t.Run("witness/active keeps serving on the lease alone; loses it: fence", func(t *testing.T) {
		opt := Options{Witness: true}
		h := newHarness(t, opt, Persisted{State: Active, Epoch: 1})
		h.feed(time.Second, healthy(passivePeer))
		a := h.acts
		if !slices.ContainsFunc(a, func(a Action) bool { return a.Kind == ActCampaign }) {
			t.Fatalf("no campaign before resuming: %v", a)
		}
		h.mustStep(0, Witness{Held: true})
		h.feedUntil(time.Second, healthy(passivePeer), Promoting)
		h.done(ActServe, nil)
		h.feedUntil(10*time.Second, world{}, Standalone)
		h.mustStep(0, Witness{Held: false})
		h.expect(Fenced, 1)
	})

	t.Run("witness/passive campaigns after threshold+margin, promotes when it holds the lease", func(t *testing.T) {
		h := passiveNode(t, Options{Witness: true})
		from := len(h.acts)
		h.feed(T+M+300*time.Millisecond, world{})
		h.expect(Passive, 1)
		if !h.took(from, ActCampaign) {
			t.Fatal("no campaign")
		}
		h.mustStep(0, Witness{Held: true})
		h.expect(Promoting, 2)
	})
}

// Sequences that cross several rows.
func TestSequences(t *testing.T) {
	t.Run("link flapping every 500ms for a minute: no failover", func(t *testing.T) {
		a, p := activeNode(t, tb), passiveNode(t, tb)
		for i := range 120 {
			link := i%2 == 0
			a.feed(500*time.Millisecond, world{link: link, public: true, tiebreaker: true, peer: passivePeer})
			p.feed(500*time.Millisecond, world{link: link, public: true, tiebreaker: true, peer: activePeer})
		}
		a.expect(Active, 1)
		p.expect(Passive, 1)
	})

	t.Run("both paths flapping out of phase: no failover", func(t *testing.T) {
		p := passiveNode(t, tb)
		for i := range 60 {
			p.feed(time.Second, world{link: i%2 == 0, public: i%2 == 1, tiebreaker: true, peer: activePeer})
		}
		p.expect(Passive, 1)
	})

	t.Run("restart while fenced keeps fenced and the epoch", func(t *testing.T) {
		h := activeNode(t, tb)
		h.feedUntil(10*time.Second, world{}, Fenced)
		s, e := h.m.State()
		h2 := newHarness(t, tb, Persisted{State: s, Epoch: e})
		h2.feed(30*time.Second, world{})
		h2.expect(Fenced, 1)
	})

	t.Run("fenced node does not resume on queued beats from before a freeze", func(t *testing.T) {
		h := activeNode(t, tb)
		h.mustStep(20*time.Second, Tick{})
		h.expect(Fenced, 1)
		// A burst of stale "passive, epoch 1" beats read at once, and acks
		// of beats sent before the fence: no resume.
		for range 10 {
			h.mustStep(0, Beat{Path: PathLink, PeerBeat: passivePeer})
			h.mustStep(0, Ack{Path: PathLink, Sent: h.now.Add(-time.Second)})
		}
		h.mustStep(100*time.Millisecond, Tick{})
		h.expect(Fenced, 1)
	})

	t.Run("epoch never goes backwards on a stale peer", func(t *testing.T) {
		h := passiveNode(t, tb)
		h.feed(time.Second, healthy(PeerBeat{Role: Active, Epoch: 5, PublicOK: true}))
		h.expect(Passive, 5)
		h.feed(time.Second, healthy(PeerBeat{Role: Active, Epoch: 2, PublicOK: true}))
		h.expect(Passive, 5)
	})
}

func TestStateNames(t *testing.T) {
	for s := Passive; s <= Fenced; s++ {
		got, err := ParseState(s.String())
		if err != nil || got != s {
			t.Errorf("%d: %q round-trips to %v, %v", s, s, got, err)
		}
	}
	if _, err := ParseState("leader"); err == nil {
		t.Error("ParseState accepted leader")
	}
	if got := State(99).String(); got != "state(99)" {
		t.Errorf("unknown state prints %q", got)
	}
	for _, a := range []Action{{Kind: ActPersist, State: Active, Epoch: 2}, {Kind: ActServe, Epoch: 3}, {Kind: ActUnserve}} {
		if strings.Contains(a.String(), "action(") {
			t.Errorf("action %v has no name", a.Kind)
		}
	}
	_ = fmt.Sprint(Decision{})
}

func TestFailbackReady(t *testing.T) {
	// Only a node that took over by failover hands the roles back.
	h := passiveNode(t, tb)
	h.feedUntil(10*time.Second, world{tiebreaker: true}, Promoting)
	h.done(ActServe, nil)
	h.feedUntil(2*time.Second, healthy(PeerBeat{Role: Passive, Epoch: 2, PublicOK: true}), Active)
	from := len(h.acts)
	h.mustStep(0, FailbackReady{})
	h.expect(Demoting, 2)
	if !h.took(from, ActHandOver) || !strings.Contains(h.m.Last().Reason, "failback") {
		t.Fatalf("actions %v, reason %q", h.acts[from:], h.m.Last().Reason)
	}
	// Not on a node that serves by consent, switchover or admin.
	a := activeNode(t, tb)
	a.mustStep(0, FailbackReady{})
	a.expect(Active, 1)
	p := passiveNode(t, tb)
	p.mustStep(0, FailbackReady{})
	p.expect(Passive, 1)
}

// A failed rejoin is tried again after three thresholds while the peer
// serves.
func TestRejoinRetried(t *testing.T) {
	h := newHarness(t, tb, Persisted{State: Active, Epoch: 1})
	h.feed(time.Second, healthy(PeerBeat{Role: Active, Epoch: 2, PublicOK: true}))
	h.expect(Passive, 2)
	h.done(ActRejoin, errors.New("listing the peer: connection refused"))
	from := len(h.acts)
	h.feed(8*time.Second, healthy(PeerBeat{Role: Active, Epoch: 2, PublicOK: true}))
	if h.took(from, ActRejoin) {
		t.Fatal("retried before three thresholds")
	}
	h.feed(2*time.Second, healthy(PeerBeat{Role: Active, Epoch: 2, PublicOK: true}))
	if !h.took(from, ActRejoin) {
		t.Fatal("never retried")
	}
	h.done(ActRejoin, nil)
	from = len(h.acts)
	h.feed(20*time.Second, healthy(PeerBeat{Role: Active, Epoch: 2, PublicOK: true}))
	if h.took(from, ActRejoin) {
		t.Fatal("retried after success")
	}
}

func TestPeerState(t *testing.T) {
	h := newHarness(t, Options{}, Persisted{State: Passive, Epoch: 1})
	if _, ok := h.m.PeerState(); ok {
		t.Fatal("a peer known before any heartbeat")
	}
	h.mustStep(time.Second, Beat{Path: PathLink, PeerBeat: PeerBeat{Role: Demoting, Epoch: 1, PublicOK: true}})
	if st, ok := h.m.PeerState(); !ok || st != Demoting {
		t.Fatalf("after a demoting heartbeat: %v %v", st, ok)
	}
}
