package failover

import (
	"strings"
	"testing"
	"time"
)

var tbRoute = Options{Tiebreaker: true, Route: true}

// The active's public network goes down while the link and the peer's
// public network are fine: with Route it keeps serving and asks the peer
// to route its VIP (docs/failover.md, "Public network lost: route through
// the peer").
func TestRouteThroughPeer(t *testing.T) {
	routingPeer := PeerBeat{Role: Passive, Epoch: 1, PublicOK: true, Routing: true}

	t.Run("active asks the peer to route after CarrierHold and keeps serving", func(t *testing.T) {
		h := activeNode(t, tbRoute)
		from := len(h.acts)
		h.mustStep(0, Carrier{Up: false})
		h.feed(CarrierHold-100*time.Millisecond, world{link: true, peer: passivePeer})
		if h.m.Heartbeat(h.now).WantRoute {
			t.Fatal("asked for routing before CarrierHold")
		}
		h.feed(200*time.Millisecond, world{link: true, peer: passivePeer})
		hb := h.m.Heartbeat(h.now)
		if !hb.WantRoute {
			t.Fatal("no route asked for CarrierHold after the carrier went")
		}
		h.feed(RouteWait-time.Second, world{link: true, peer: routingPeer})
		h.feed(30*time.Second, world{link: true, peer: routingPeer})
		h.expect(Active, 1)
		if len(h.acts) != from {
			t.Fatalf("actions %v while routed through the peer, want none (nothing moves)", h.acts[from:])
		}
		v := h.m.View(h.now)
		if !v.Routed || !strings.Contains(strings.Join(v.Alerts, ";"), "serving through the peer") {
			t.Errorf("view %+v does not say it serves through the peer", v)
		}
		if _, _, why := h.m.Routes(); !strings.Contains(why, "no carrier") {
			t.Errorf("routing reason %q does not name the carrier", why)
		}
	})

	t.Run("active hands over when the peer does not route within RouteWait", func(t *testing.T) {
		h := activeNode(t, tbRoute)
		h.mustStep(0, Carrier{Up: false})
		took := h.feedUntil(RouteWait+5*time.Second, world{link: true, peer: passivePeer}, Demoting)
		if took < RouteWait || took > RouteWait+CarrierHold+500*time.Millisecond {
			t.Fatalf("handover %s after the carrier went, want about %s", took, RouteWait+CarrierHold)
		}
		if r := h.m.Last().Reason; !strings.Contains(r, "has not routed") {
			t.Errorf("reason %q", r)
		}
		if h.m.Heartbeat(h.now).WantRoute {
			t.Error("still asks for routing while handing over")
		}
	})

	t.Run("active hands over when the peer stops routing for RouteWait", func(t *testing.T) {
		h := activeNode(t, tbRoute)
		h.mustStep(0, Carrier{Up: false})
		h.feed(10*time.Second, world{link: true, peer: routingPeer})
		h.expect(Active, 1)
		h.feedUntil(RouteWait+time.Second, world{link: true, peer: passivePeer}, Demoting)
	})

	t.Run("active serves on its own network again RouteBackHold after it is back", func(t *testing.T) {
		h := activeNode(t, tbRoute)
		h.mustStep(0, Carrier{Up: false})
		h.feed(10*time.Second, world{link: true, peer: routingPeer})
		h.mustStep(0, Carrier{Up: true})
		// The tiebreaker must answer again too (the cable may be in, the
		// switch port not yet forwarding).
		h.feed(3*time.Second, world{link: true, peer: routingPeer})
		if !h.m.Heartbeat(h.now).WantRoute {
			t.Fatal("stopped routing with the carrier back but no tiebreaker answer")
		}
		h.feed(RouteBackHold-100*time.Millisecond, healthy(routingPeer))
		if !h.m.Heartbeat(h.now).WantRoute {
			t.Fatal("stopped routing before RouteBackHold")
		}
		h.feed(600*time.Millisecond, healthy(routingPeer))
		if h.m.Heartbeat(h.now).WantRoute {
			t.Fatal("still routed RouteBackHold after the public network came back")
		}
		h.expect(Active, 1)
	})

	t.Run("active routed through the peer loses the link too: self-fence", func(t *testing.T) {
		h := activeNode(t, tbRoute)
		h.mustStep(0, Carrier{Up: false})
		h.feed(5*time.Second, world{link: true, peer: routingPeer})
		h.feedUntil(10*time.Second, world{}, Fenced)
		if h.m.Heartbeat(h.now).WantRoute {
			t.Error("a fenced node still asks for routing")
		}
	})

	t.Run("without Route the active hands over as before", func(t *testing.T) {
		h := activeNode(t, tb)
		h.mustStep(0, Carrier{Up: false})
		h.feedUntil(2*time.Second, world{link: true, peer: passivePeer}, Demoting)
	})

	wanting := PeerBeat{Role: Active, Epoch: 1, PublicOK: false, WantRoute: true}

	t.Run("passive routes while the serving peer asks, and stops when it stops", func(t *testing.T) {
		h := passiveNode(t, tbRoute)
		h.feed(300*time.Millisecond, world{link: true, tiebreaker: true, peer: wanting})
		if !h.m.Heartbeat(h.now).Routing {
			t.Fatal("not routing for a peer that asks")
		}
		if v := h.m.View(h.now); !v.RoutingForPeer {
			t.Error("view does not say it routes for the peer")
		}
		h.feed(30*time.Second, world{link: true, tiebreaker: true, peer: wanting})
		h.expect(Passive, 1)
		h.feed(300*time.Millisecond, healthy(activePeer))
		if h.m.Heartbeat(h.now).Routing {
			t.Fatal("still routing after the peer stopped asking")
		}
	})

	t.Run("passive without its own public network does not route", func(t *testing.T) {
		h := passiveNode(t, tbRoute)
		h.mustStep(0, Carrier{Up: false})
		h.feed(time.Second, world{link: true, tiebreaker: true, peer: wanting})
		if h.m.Heartbeat(h.now).Routing {
			t.Fatal("routing with no carrier on its own public interface")
		}
	})

	t.Run("passive does not route for an older epoch or without Route", func(t *testing.T) {
		h := newHarness(t, tbRoute, Persisted{State: Passive, Epoch: 3})
		h.feed(time.Second, world{link: true, tiebreaker: true, peer: wanting})
		if h.m.Heartbeat(h.now).Routing {
			t.Fatal("routing for a peer at epoch 1, older than ours (3)")
		}
		h2 := passiveNode(t, tb)
		h2.feed(time.Second, world{link: true, tiebreaker: true, peer: wanting})
		if h2.m.Heartbeat(h2.now).Routing {
			t.Fatal("routing without Route")
		}
	})

	t.Run("passive routing for a peer that goes silent stops, then promotes", func(t *testing.T) {
		h := passiveNode(t, tbRoute)
		h.feed(time.Second, world{link: true, tiebreaker: true, peer: wanting})
		h.feed(DefaultTiming.Threshold, world{tiebreaker: true})
		if h.m.Heartbeat(h.now).Routing {
			t.Fatal("still routing for a peer silent for the threshold")
		}
		h.feedUntil(10*time.Second, world{tiebreaker: true}, Promoting)
		if h.m.Heartbeat(h.now).Routing {
			t.Fatal("routing while promoting")
		}
	})
}
