package probe

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/internal/config"
)

// stepClock advances by step on every reading; safe for the concurrent
// probes of one round.
type stepClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// upTCP is a loopback listener that accepts (and drops) every connection.
func upTCP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// closedTCP is a loopback port with no listener: connects are refused.
func closedTCP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func tcp(addr string) Target   { return Target{Address: addr, Method: config.TiebreakTCP} }
func icmpT(addr string) Target { return Target{Address: addr, Method: config.TiebreakICMP} }

func TestTCPUp(t *testing.T) {
	p := &Prober{Targets: []Target{tcp(upTCP(t))}, Timeout: 5 * time.Second, Log: quiet()}
	res := p.ProbeOnce(context.Background())
	tr := res.Targets[0]
	if !res.Reachable || !tr.OK || tr.Err != nil {
		t.Fatalf("want reachable, got %+v", res)
	}
	if tr.RTT <= 0 || !tr.Received.After(tr.Sent) {
		t.Errorf("rtt %s, sent %s, received %s", tr.RTT, tr.Sent, tr.Received)
	}
	st := p.Status()
	if !st.Reachable || st.Rounds != 1 || !st.LastProbeSent.Equal(tr.Sent) || !st.LastOK.Equal(tr.Received) {
		t.Errorf("status %+v does not match the round %+v", st, tr)
	}
}

func TestTCPRefusedIsDownAndQuick(t *testing.T) {
	p := &Prober{Targets: []Target{tcp(closedTCP(t))}, Timeout: 5 * time.Second, Log: quiet()}
	start := time.Now()
	res := p.ProbeOnce(context.Background())
	if res.Reachable || res.Targets[0].OK {
		t.Fatalf("a refused port counted as reachable: %+v", res)
	}
	if err := res.Targets[0].Err; !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("want ECONNREFUSED, got %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a refusal took %s; it should not wait for the timeout", d)
	}
	if st := p.Status(); st.Reachable || !st.LastProbeSent.IsZero() || st.Rounds != 1 {
		t.Errorf("status %+v", st)
	}
}

// blackHoleTCP returns a loopback address whose SYNs are dropped: a listener
// with backlog 0 that never accepts, filled until a connect hangs. Linux
// drops a SYN when the accept queue is full, so the next connect waits for
// SYN retransmits until its deadline, as with a dead host.
func blackHoleTCP(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*syscall.SockaddrInet4).Port}).String()
	for range 8 {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return addr
			}
			t.Fatalf("filling the backlog: %v", err)
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatal("the backlog-0 listener never dropped a SYN; no black hole on loopback")
	return ""
}

func TestTCPBlackHoleTimesOut(t *testing.T) {
	addr := blackHoleTCP(t)
	const timeout = 400 * time.Millisecond
	p := &Prober{Targets: []Target{tcp(addr)}, Timeout: timeout, Log: quiet()}
	start := time.Now()
	res := p.ProbeOnce(context.Background())
	d := time.Since(start)
	if res.Reachable {
		t.Fatalf("a black hole counted as reachable: %+v", res)
	}
	if err := res.Targets[0].Err; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("want a deadline error, got %v", err)
	}
	if d < timeout || d > timeout+time.Second {
		t.Errorf("the probe took %s with timeout %s", d, timeout)
	}
}

// The callers' context bounds a round too, and a round it cut short is not
// recorded: it says nothing about the network.
func TestCallerContextBoundsRoundAndIsNotRecorded(t *testing.T) {
	addr := blackHoleTCP(t)
	p := &Prober{Targets: []Target{tcp(addr)}, Timeout: time.Minute, Log: quiet()}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	res := p.ProbeOnce(ctx)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the round ignored the caller's deadline: %s", d)
	}
	if res.Reachable || !errors.Is(res.Targets[0].Err, context.DeadlineExceeded) {
		t.Errorf("round %+v", res)
	}
	if st := p.Status(); st.Rounds != 0 {
		t.Errorf("a cut-short round was recorded: %+v", st)
	}
}

// Any target answering makes the node reachable; LastOK and LastProbeSent
// survive later failed rounds, while Reachable follows the latest round.
func TestAnyTargetIsEnoughAndLastOKSurvives(t *testing.T) {
	clk := &stepClock{t: time.Unix(1000, 0), step: time.Millisecond}
	up, down := upTCP(t), closedTCP(t)
	p := &Prober{Targets: []Target{tcp(down), tcp(up), tcp(down)}, Timeout: 5 * time.Second, Now: clk.Now, Log: quiet()}

	res := p.ProbeOnce(context.Background())
	if !res.Reachable || res.Targets[0].OK || !res.Targets[1].OK || res.Targets[2].OK {
		t.Fatalf("want only the middle target up: %+v", res)
	}
	if !res.Sent.Equal(res.Targets[1].Sent) || !res.Received.Equal(res.Targets[1].Received) {
		t.Errorf("round times %s/%s are not the answered probe's %s/%s", res.Sent, res.Received, res.Targets[1].Sent, res.Targets[1].Received)
	}
	first := p.Status()
	if !first.Reachable || !first.LastProbeSent.Equal(res.Sent) {
		t.Fatalf("status %+v", first)
	}

	p.Targets = []Target{tcp(down)}
	p.ProbeOnce(context.Background())
	st := p.Status()
	if st.Reachable {
		t.Error("still reachable after a round where nothing answered")
	}
	if !st.LastProbeSent.Equal(first.LastProbeSent) || !st.LastOK.Equal(first.LastOK) || st.Rounds != 2 {
		t.Errorf("the failed round changed the last success: before %+v, after %+v", first, st)
	}
}

// With several answers, the round reports the probe sent last: the freshest
// evidence.
func TestRoundReportsFreshestAnswer(t *testing.T) {
	clk := &stepClock{t: time.Unix(1000, 0), step: time.Millisecond}
	p := &Prober{Targets: []Target{tcp(upTCP(t)), tcp(upTCP(t)), tcp(upTCP(t))}, Timeout: 5 * time.Second, Now: clk.Now, Log: quiet()}
	res := p.ProbeOnce(context.Background())
	var latest time.Time
	for _, tr := range res.Targets {
		if !tr.OK {
			t.Fatalf("target down: %+v", tr)
		}
		if tr.Sent.After(latest) {
			latest = tr.Sent
		}
	}
	if !res.Sent.Equal(latest) {
		t.Errorf("round sent %s, latest answered probe sent %s", res.Sent, latest)
	}
}

// An answer read more than Timeout after sending, by our clock, is a freeze
// (SIGSTOP, a VM pause) between send and receive: it does not count.
func TestAnswerAfterFreezeDoesNotCount(t *testing.T) {
	clk := &stepClock{t: time.Unix(1000, 0), step: 10 * time.Second}
	p := &Prober{Targets: []Target{tcp(upTCP(t))}, Timeout: 5 * time.Second, Now: clk.Now, Log: quiet()}
	res := p.ProbeOnce(context.Background())
	if res.Reachable {
		t.Fatalf("a late answer counted: %+v", res)
	}
	if !errors.Is(res.Targets[0].Err, ErrLate) {
		t.Errorf("want ErrLate, got %v", res.Targets[0].Err)
	}
	if st := p.Status(); st.Reachable || !st.LastProbeSent.IsZero() {
		t.Errorf("status %+v", st)
	}
}

func TestUnknownMethod(t *testing.T) {
	p := &Prober{Targets: []Target{{Address: "127.0.0.1", Method: "udp"}}, Log: quiet()}
	res := p.ProbeOnce(context.Background())
	if res.Reachable || !errors.Is(res.Targets[0].Err, ErrUnknownMethod) {
		t.Fatalf("%+v", res)
	}
}

func TestNoTargetsIsNeverReachable(t *testing.T) {
	p := &Prober{Log: quiet()}
	if res := p.ProbeOnce(context.Background()); res.Reachable {
		t.Fatal("no targets, yet reachable")
	}
	if st := p.Status(); st.Reachable || st.Rounds != 1 {
		t.Fatalf("%+v", st)
	}
}

func TestReachableAfter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, c := range []struct {
		name string
		sent time.Time
		at   time.Time
		want bool
	}{
		{"never answered", time.Time{}, time.Time{}, false},
		{"sent after the instant", t0.Add(time.Second), t0, true},
		{"sent at the instant", t0, t0, true},
		{"sent before the instant (e.g. before a freeze)", t0.Add(-time.Millisecond), t0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := (Status{LastProbeSent: c.sent}).ReachableAfter(c.at); got != c.want {
				t.Fatalf("got %v", got)
			}
		})
	}
}

func TestRunProbesEveryIntervalUntilCancelled(t *testing.T) {
	p := &Prober{Targets: []Target{tcp(upTCP(t))}, Timeout: time.Second, Interval: 10 * time.Millisecond, Log: quiet()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, 10*time.Second, func() bool { return p.Status().Rounds >= 3 })
	if !p.Status().Reachable {
		t.Error("not reachable")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func waitFor(t *testing.T, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", limit)
		}
		time.Sleep(time.Millisecond)
	}
}
