//go:build platform

package witness

// Platform tests against a real etcd server (Debian's etcd-server, installed
// by fixtures/etcd/install.sh) on 127.0.0.1. They run on the host: etcd is
// userspace. Every wait is bounded.
//
//	go test -tags platform -run TestPlatformWitness -v ./failover/witness

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/zrepl-ha/zrepl-ha/fixtures/etcd"
)

// etcd's smallest lease TTL with its default election timeout is 2s.
const testTTL = 2 * time.Second

// tlog sends slog output to t.Log until the test ends (goroutines of lost
// sessions may still log briefly afterwards).
type tlog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *tlog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func newWitness(t *testing.T, node string, ttl time.Duration, endpoints ...string) *Witness {
	t.Helper()
	lw := &tlog{t: t}
	w, err := New(Config{
		Node: node, Endpoints: endpoints, Prefix: "/test/", LeaseTTL: ttl,
		Log: slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		done := make(chan error, 1)
		go func() { done <- w.Close() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: close: %v", node, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s: Close did not return within 10s", node)
		}
		lw.mu.Lock()
		lw.done = true
		lw.mu.Unlock()
	})
	return w
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func campaign(t *testing.T, w *Witness, within time.Duration) *Leadership {
	t.Helper()
	l, err := w.Campaign(ctxFor(t, within))
	if err != nil {
		t.Fatalf("%s: campaign: %v", w.cfg.Node, err)
	}
	if tok, ok := w.Held(); !ok || tok != l.Token {
		t.Fatalf("%s: won with token %d but Held() = %d, %v", w.cfg.Node, l.Token, tok, ok)
	}
	return l
}

// result of a campaign running in the background
type won struct {
	l   *Leadership
	err error
	at  time.Time
}

func campaignAsync(w *Witness, ctx context.Context) <-chan won {
	ch := make(chan won, 1)
	go func() {
		l, err := w.Campaign(ctx)
		ch <- won{l, err, time.Now()}
	}()
	return ch
}

// rawClient is a plain etcd client for looking at (and tampering with)
// the keys directly.
func rawClient(t *testing.T, ep string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitKeys waits (bounded) until the election has n candidate keys.
func waitKeys(t *testing.T, c *clientv3.Client, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var got int64
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := c.Get(ctx, "/test/leader/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		cancel()
		if err == nil {
			got = resp.Count
			if got == int64(n) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("election has %d candidate keys after %v, want %d", got, within, n)
}

// waitDone waits (bounded) for a leadership to end and returns when.
func waitDone(t *testing.T, l *Leadership, within time.Duration) time.Time {
	t.Helper()
	select {
	case <-l.Done():
		return time.Now()
	case <-time.After(within):
		t.Fatalf("%s: leadership %d still not lost after %v (Held=%v)", l.Node, l.Token, within, l.Held())
		return time.Time{}
	}
}

// The first candidate wins; the second blocks while the first holds, a
// cancelled campaign returns promptly and leaves no key behind, and Leader
// names the holder.
func TestPlatformWitnessFirstWinsSecondBlocks(t *testing.T) {
	t.Parallel()
	srv := etcd.Start(t)
	a := newWitness(t, "alpha", testTTL, srv.Endpoint)
	b := newWitness(t, "beta", testTTL, srv.Endpoint)
	raw := rawClient(t, srv.Endpoint)

	if _, err := b.Leader(ctxFor(t, 5*time.Second)); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("Leader before any campaign: %v, want ErrNoLeader", err)
	}
	la := campaign(t, a, 5*time.Second)
	if la.Token <= 0 {
		t.Fatalf("token %d", la.Token)
	}
	// Campaigning again while leading returns the same leadership.
	if again := campaign(t, a, 5*time.Second); again != la {
		t.Fatalf("second Campaign by the leader returned a new leadership %d", again.Token)
	}

	// beta waits longer than a TTL: alpha keeps the lease alive, so beta
	// must not win; its context ends the wait.
	start := time.Now()
	_, err := b.Campaign(ctxFor(t, testTTL+time.Second))
	if err == nil {
		t.Fatal("beta won while alpha holds the lease")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("beta's campaign: %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > testTTL+2*time.Second {
		t.Fatalf("beta's campaign returned %v after start; its context ended at %v", took, testTTL+time.Second)
	}
	if _, ok := b.Held(); ok {
		t.Fatal("beta Held after a failed campaign")
	}
	if !la.Held() {
		t.Fatal("alpha lost the lease while beta campaigned")
	}
	// The cancelled candidacy is withdrawn (its lease revoked).
	waitKeys(t, raw, 1, 5*time.Second)

	info, err := b.Leader(ctxFor(t, 5*time.Second))
	if err != nil || info.Node != "alpha" || info.Token != la.Token {
		t.Fatalf("Leader = %+v, %v; want alpha with token %d", info, err, la.Token)
	}
	st := a.Status()
	if !st.Held || st.Token != la.Token || st.Remaining <= 0 || st.Remaining > testTTL {
		t.Fatalf("alpha status %+v", st)
	}
}

// Resign hands over at once (not after a TTL) to a waiting candidate, whose
// token is higher.
func TestPlatformWitnessResignHandsOver(t *testing.T) {
	t.Parallel()
	srv := etcd.Start(t)
	ttl := 5 * time.Second // long, so a handover within 1s cannot be an expiry
	a := newWitness(t, "alpha", ttl, srv.Endpoint)
	b := newWitness(t, "beta", ttl, srv.Endpoint)
	raw := rawClient(t, srv.Endpoint)

	la := campaign(t, a, 5*time.Second)
	bch := campaignAsync(b, ctxFor(t, 30*time.Second))
	waitKeys(t, raw, 2, 5*time.Second) // beta is queued
	select {
	case r := <-bch:
		t.Fatalf("beta's campaign returned while alpha leads: %+v", r)
	case <-time.After(200 * time.Millisecond):
	}

	resigned := time.Now()
	if err := a.Resign(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if la.Held() {
		t.Fatal("alpha still Held after Resign")
	}
	if !errors.Is(la.Cause(), ErrResigned) {
		t.Fatalf("alpha's cause %v, want ErrResigned", la.Cause())
	}
	var r won
	select {
	case r = <-bch:
	case <-time.After(3 * time.Second):
		t.Fatal("beta did not win within 3s of alpha's resignation")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if d := r.at.Sub(resigned); d > time.Second {
		t.Errorf("handover took %v; a resignation should not wait for the %v TTL", d, ttl)
	}
	if r.l.Token <= la.Token {
		t.Fatalf("beta's token %d not above alpha's %d", r.l.Token, la.Token)
	}
	info, err := a.Leader(ctxFor(t, 5*time.Second))
	if err != nil || info.Node != "beta" || info.Token != r.l.Token {
		t.Fatalf("Leader = %+v, %v; want beta", info, err)
	}
	// alpha comes back as a candidate and, after beta resigns, leads with
	// a token above both.
	ach := campaignAsync(a, ctxFor(t, 30*time.Second))
	waitKeys(t, raw, 2, 5*time.Second)
	if err := b.Resign(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case r2 := <-ach:
		if r2.err != nil || r2.l.Token <= r.l.Token {
			t.Fatalf("alpha again: %+v; want a token above %d", r2, r.l.Token)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("alpha did not win again within 3s")
	}
}

// The leader's path to etcd is black-holed (a proxy drops everything, no
// resets): its Held turns false within the TTL of the cut, on its own
// clock, and the other candidate, which still reaches etcd, wins only after
// that. Healed, the old leader campaigns again behind the new one.
func TestPlatformWitnessPartitionedLeaderStepsDownFirst(t *testing.T) {
	t.Parallel()
	srv := etcd.Start(t)
	proxy := etcd.NewProxy(t, srv.Endpoint)
	a := newWitness(t, "alpha", testTTL, proxy.Endpoint)
	b := newWitness(t, "beta", testTTL, srv.Endpoint)
	raw := rawClient(t, srv.Endpoint)

	la := campaign(t, a, 5*time.Second)
	bch := campaignAsync(b, ctxFor(t, 30*time.Second))
	waitKeys(t, raw, 2, 5*time.Second)

	cut := time.Now()
	proxy.Partition()
	lost := waitDone(t, la, testTTL+time.Second)
	if d := lost.Sub(cut); d > testTTL+200*time.Millisecond {
		t.Errorf("alpha noticed the loss %v after the cut; want within the %v TTL", d, testTTL)
	}
	if !errors.Is(la.Cause(), ErrLeaseDeadline) {
		t.Errorf("alpha's cause %v, want ErrLeaseDeadline (its own clock)", la.Cause())
	}
	if _, ok := a.Held(); ok {
		t.Fatal("alpha Held after its leadership ended")
	}
	var r won
	select {
	case r = <-bch:
	case <-time.After(testTTL + 3*time.Second):
		t.Fatal("beta did not win within TTL+3s of alpha's loss")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("cut at 0, alpha stopped at %v, beta won at %v", lost.Sub(cut), r.at.Sub(cut))
	if !r.at.After(lost) {
		t.Fatalf("beta won at %v, before alpha stopped believing it leads at %v", r.at.Sub(cut), lost.Sub(cut))
	}
	if r.l.Token <= la.Token {
		t.Fatalf("beta's token %d not above alpha's %d", r.l.Token, la.Token)
	}

	proxy.Heal()
	ach := campaignAsync(a, ctxFor(t, 30*time.Second))
	waitKeys(t, raw, 2, 10*time.Second) // alpha reconnected and queued
	select {
	case r2 := <-ach:
		t.Fatalf("alpha won while beta leads: %+v", r2)
	case <-time.After(500 * time.Millisecond):
	}
	if !r.l.Held() {
		t.Fatal("beta lost its leadership when alpha came back")
	}
}

// etcd hangs (SIGSTOP): the leader gives up within the TTL on its own
// clock although no error ever arrives; nobody can win while etcd is
// frozen, and after it resumes the waiting candidate wins.
func TestPlatformWitnessFrozenServer(t *testing.T) {
	t.Parallel()
	srv := etcd.Start(t)
	a := newWitness(t, "alpha", testTTL, srv.Endpoint)
	b := newWitness(t, "beta", testTTL, srv.Endpoint)
	raw := rawClient(t, srv.Endpoint)

	la := campaign(t, a, 5*time.Second)
	bch := campaignAsync(b, ctxFor(t, 30*time.Second))
	waitKeys(t, raw, 2, 5*time.Second)

	frozen := time.Now()
	srv.Freeze()
	lost := waitDone(t, la, testTTL+time.Second)
	if d := lost.Sub(frozen); d > testTTL+200*time.Millisecond {
		t.Errorf("alpha noticed the loss %v after the freeze; want within the %v TTL", d, testTTL)
	}
	if !errors.Is(la.Cause(), ErrLeaseDeadline) {
		t.Errorf("alpha's cause %v, want ErrLeaseDeadline", la.Cause())
	}
	select {
	case r := <-bch:
		t.Fatalf("beta's campaign returned while etcd is frozen: %+v", r)
	case <-time.After(testTTL):
	}
	srv.Thaw()
	select {
	case r := <-bch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.l.Token <= la.Token {
			t.Fatalf("beta's token %d not above alpha's %d", r.l.Token, la.Token)
		}
	case <-time.After(2*testTTL + 5*time.Second):
		t.Fatal("beta did not win after etcd resumed")
	}
}

// A quick etcd restart (shorter than the TTL minus the margin) does not
// cost the leadership; a long outage does, and etcd keeps the old lease
// for a TTL after it comes back (it renews every lease on becoming
// leader), so the old leader wins again only after that, with a new,
// higher token.
func TestPlatformWitnessServerRestart(t *testing.T) {
	t.Parallel()
	srv := etcd.Start(t)
	ttl := 5 * time.Second
	a := newWitness(t, "alpha", ttl, srv.Endpoint)

	la := campaign(t, a, 5*time.Second)
	start := time.Now()
	srv.Restart()
	restartTook := time.Since(start)
	t.Logf("etcd restart took %v", restartTook)
	// Watch the leadership for a full TTL after the restart.
	for end := time.Now().Add(ttl); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if !la.Held() {
			if restartTook > ttl/2 {
				t.Skipf("etcd took %v to restart, too long to expect the %v lease to survive", restartTook, ttl)
			}
			t.Fatalf("leadership lost (%v) across an etcd restart of %v", la.Cause(), restartTook)
		}
	}
	info, err := a.Leader(ctxFor(t, 5*time.Second))
	if err != nil || info.Token != la.Token {
		t.Fatalf("after restart Leader = %+v, %v; want token %d", info, err, la.Token)
	}

	// Long outage.
	srv.Stop()
	stopped := time.Now()
	lost := waitDone(t, la, ttl+time.Second)
	if d := lost.Sub(stopped); d > ttl+200*time.Millisecond {
		t.Errorf("loss noticed %v after etcd stopped; want within the %v TTL", d, ttl)
	}
	srv.StartAgain()
	l2 := campaign(t, a, 3*ttl)
	if l2.Token <= la.Token {
		t.Fatalf("new token %d not above the old %d", l2.Token, la.Token)
	}
}

// An operator deleting the election key ends the leadership at once.
func TestPlatformWitnessKeyDeleted(t *testing.T) {
	t.Parallel()
	srv := etcd.Start(t)
	a := newWitness(t, "alpha", 5*time.Second, srv.Endpoint)
	raw := rawClient(t, srv.Endpoint)
	la := campaign(t, a, 5*time.Second)
	if _, err := raw.Delete(ctxFor(t, 5*time.Second), la.Key); err != nil {
		t.Fatal(err)
	}
	waitDone(t, la, 2*time.Second)
	if !errors.Is(la.Cause(), ErrKeyDeleted) {
		t.Fatalf("cause %v, want ErrKeyDeleted", la.Cause())
	}
}

// Nothing listens on the endpoint: Check names it, Campaign returns when
// its context ends with the endpoint in the message, and Close is prompt.
func TestPlatformWitnessUnreachableEndpoint(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ep := l.Addr().String()
	l.Close() // nothing listens there now

	w := newWitness(t, "alpha", testTTL, ep)
	start := time.Now()
	err = w.Check(ctxFor(t, 10*time.Second))
	if err == nil || !strings.Contains(err.Error(), ep) {
		t.Fatalf("Check: %v; want an error naming %s", err, ep)
	}
	if d := time.Since(start); d > w.cfg.RequestTimeout+time.Second {
		t.Errorf("Check took %v; the request timeout is %v", d, w.cfg.RequestTimeout)
	}
	t.Logf("Check: %v", err)

	start = time.Now()
	_, err = w.Campaign(ctxFor(t, 3*time.Second))
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), ep) {
		t.Fatalf("Campaign: %v; want context.DeadlineExceeded naming %s", err, ep)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("Campaign took %v with a 3s context", d)
	}
	t.Logf("Campaign: %v", err)
}
