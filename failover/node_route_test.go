package failover

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// routeLog records both nodes' routing calls in one order.
type routeLog struct {
	mu    sync.Mutex
	calls []string
}

func (l *routeLog) add(s string) { l.mu.Lock(); l.calls = append(l.calls, s); l.mu.Unlock() }

// index is where s first appears at or after from, -1 if nowhere.
func (l *routeLog) index(s string, from int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := max(from, 0); i < len(l.calls); i++ {
		if l.calls[i] == s {
			return i
		}
	}
	return -1
}

func (l *routeLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.calls, ", ")
}

// routeExec is a recExec that routes: each call goes to the shared log
// as "<node> via on", "<node> for off", "<node> announce" once done.
// forFails makes that many RouteForPeer(true) calls fail first; offDelay
// is how long a RouteForPeer(false) takes (a slow kernel).
type routeExec struct {
	*recExec
	name     string
	log      *routeLog
	forFails atomic.Int32
	viaFails atomic.Int32
	offDelay time.Duration
}

func onOff(on bool) string { return map[bool]string{true: "on", false: "off"}[on] }

func (e *routeExec) RouteViaPeer(ctx context.Context, on bool) error {
	if on && e.viaFails.Add(-1) >= 0 {
		e.log.add(e.name + " via on failed")
		return errors.New("no policy routing")
	}
	e.log.add(e.name + " via " + onOff(on))
	return nil
}

func (e *routeExec) RouteForPeer(ctx context.Context, on bool) error {
	if on && e.forFails.Add(-1) >= 0 {
		e.log.add(e.name + " for on failed")
		return errors.New("forwarding refused")
	}
	if !on {
		time.Sleep(e.offDelay)
	}
	e.log.add(e.name + " for " + onOff(on))
	return nil
}

func (e *routeExec) Announce(ctx context.Context) error {
	e.log.add(e.name + " announce")
	return nil
}

// routedPair starts a pair that routes (Options.Route, a routeExec each,
// passed through set) with carriers the test sets through the returned
// channels.
func routedPair(t *testing.T, set func(*routeExec)) (*pair, *routeLog, map[string]chan bool) {
	rl := &routeLog{}
	carrier := map[string]chan bool{"a": make(chan bool, 4), "b": make(chan bool, 4)}
	p := startPairWith(t, func(n *Node) {
		e := &routeExec{recExec: n.Exec.(*recExec), name: n.Options.Name, log: rl}
		set(e)
		n.Exec = e
		n.Options.Route = true
		ch := carrier[n.Options.Name]
		n.Carrier = func(ctx context.Context, report func(bool)) error {
			report(true)
			for {
				select {
				case <-ctx.Done():
					return nil
				case up := <-ch:
					report(up)
				}
			}
		}
	})
	waitRole(t, p.a, "active", 5*time.Second)
	waitRole(t, p.b, "passive", time.Second)
	waitPeer(t, p.a, "passive", time.Second)
	return p, rl, carrier
}

// waitCall waits until s is in the log at or after from and returns its
// index.
func waitCall(t *testing.T, rl *routeLog, s string, from int, max time.Duration) int {
	t.Helper()
	for end := time.Now().Add(max); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if i := rl.index(s, from); i >= 0 {
			return i
		}
	}
	t.Fatalf("no %q within %s; calls: %s", s, max, rl)
	return -1
}

func hasAlert(s Status, sub string) bool {
	return slices.ContainsFunc(s.Alerts, func(a string) bool { return strings.Contains(a, sub) })
}

// Two nodes on loopback whose executors route: a's carrier goes, b routes
// a's VIP (after a failed first try, retried), a stays active past
// RouteWait, and with the carrier back a announces its VIP again only
// after b's proxy is gone, even when b takes its time removing it.
func TestNodeRoutesThroughPeer(t *testing.T) {
	t.Parallel()
	p, rl, carrier := routedPair(t, func(e *routeExec) {
		if e.name == "b" {
			e.forFails.Store(1)
			e.offDelay = 300 * time.Millisecond
		}
	})
	// Nothing routed at start: a crashed run's proxy entry is cleared.
	waitCall(t, rl, "a for off", 0, time.Second)
	waitCall(t, rl, "b for off", 0, time.Second)

	lost := time.Now()
	carrier["a"] <- false
	failed := waitCall(t, rl, "b for on failed", 0, 3*time.Second)
	// The failure shows in b's status until the retry, and b's beats do
	// not claim the routing.
	sawAlert := false
	for rl.index("b for on", failed) < 0 && time.Since(lost) < 5*time.Second {
		if s := p.b.Status(); hasAlert(s, "routing change failed") && s.Routing == "" {
			sawAlert = true
		}
		time.Sleep(5 * time.Millisecond)
	}
	on := waitCall(t, rl, "b for on", failed, time.Second)
	if !sawAlert {
		t.Error("b's status had no alert (or claimed routing) while its routing change failed")
	}
	if d := time.Since(lost); d < routeRetry {
		t.Errorf("b routed %s after the carrier went: the failed change was retried sooner than %s", d, routeRetry)
	}
	if rl.index("a via on", 0) < 0 {
		t.Fatalf("a never routed through b; calls: %s", rl)
	}
	for end := time.Now().Add(time.Second); ; time.Sleep(5 * time.Millisecond) {
		sa, sb := p.a.Status(), p.b.Status()
		if sa.Routing == RoutingViaPeer && sb.Routing == RoutingForPeer && !hasAlert(sb, "routing change failed") {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("status: a routing %q, b routing %q alerts %q", sa.Routing, sb.Routing, sb.Alerts)
		}
	}
	// Past RouteWait a is still active: b's beats say it routes.
	holdRole(t, p.a, "active", time.Until(lost.Add(RouteWait+500*time.Millisecond)))

	carrier["a"] <- true
	off := waitCall(t, rl, "a via off", on, RouteBackHold+2*time.Second)
	bOff := waitCall(t, rl, "b for off", on, 2*time.Second)
	ann := waitCall(t, rl, "a announce", off, 2*time.Second)
	if ann < bOff {
		t.Errorf("a announced its VIP again before b stopped routing it; calls: %s", rl)
	}
	if p.ea.has("handover") || p.ea.has("unserve for handover") || p.eb.has("serve") {
		t.Errorf("roles moved: a %v, b %v", p.ea.log, p.eb.log)
	}
	if s := p.a.Status(); s.Role != "active" || s.Routing != "" {
		t.Errorf("a after the carrier came back: %s, routing %q", s.Role, s.Routing)
	}
}

// A passive whose routing keeps failing never says it routes, and an
// active whose rule cannot be added never asks: either way the active
// hands over after RouteWait, as without routing.
func TestNodeRouteFailsHandOver(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, fails string
		set         func(*routeExec)
	}{
		{"passive cannot route", "b for on failed", func(e *routeExec) {
			if e.name == "b" {
				e.forFails.Store(1 << 20)
			}
		}},
		{"active cannot add its rule", "a via on failed", func(e *routeExec) {
			if e.name == "a" {
				e.viaFails.Store(1 << 20)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, rl, carrier := routedPair(t, tc.set)
			lost := time.Now()
			carrier["a"] <- false
			waitCall(t, rl, tc.fails, 0, 3*time.Second)
			for end := time.Now().Add(RouteWait + 5*time.Second); !p.ea.has("handover"); time.Sleep(10 * time.Millisecond) {
				if time.Now().After(end) {
					t.Fatalf("a did not hand over; a: %s; calls: %s", p.a.Status().Decision.Reason, rl)
				}
			}
			if d := time.Since(lost); d < RouteWait {
				t.Errorf("a handed over %s after the carrier went, before RouteWait (%s)", d, RouteWait)
			}
			waitRole(t, p.b, "active", 5*time.Second)
			if rl.index("b for on", 0) >= 0 {
				t.Errorf("b routed although a never asked (its rule failed); calls: %s", rl)
			}
		})
	}
}
