package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/zrepl-ha/zrepl-ha/internal/config"
)

// Target is one tiebreaker address: a host for ICMP, host:port for TCP. It is
// the config's type so that a validated config needs no conversion.
type Target = config.TiebreakTarget

// Defaults used when the Prober's fields are zero.
const (
	DefaultTimeout  = time.Duration(config.DefaultTiebreakTimeout)
	DefaultInterval = time.Second
)

var (
	// ErrLate is an answer that arrived, by the Prober's clock, more than
	// Timeout after its probe was sent. After a process freeze the kernel may
	// hold an answer that is long stale; counting it would report a network
	// that may since have gone.
	ErrLate = errors.New("the answer arrived after the timeout")
	// ErrUnknownMethod is a target whose method is neither icmp nor tcp.
	ErrUnknownMethod = errors.New("unknown probe method")
)

// TargetResult is the outcome of one probe of one target.
type TargetResult struct {
	Target   Target
	Sent     time.Time // just before the echo was written or the connect began
	Received time.Time // when the probe ended, answered or not
	OK       bool
	RTT      time.Duration // Received - Sent when OK
	Err      error         // why not OK
}

// Result is one round: every target probed once, concurrently.
type Result struct {
	// Reachable is true when at least one target answered in time.
	Reachable bool
	// Sent and Received are those of the answered probe that was sent last
	// (the freshest evidence); zero when nothing answered.
	Sent     time.Time
	Received time.Time
	Targets  []TargetResult // in the order of Prober.Targets
}

// Status is what the failover logic reads.
type Status struct {
	// Reachable is the latest round's verdict. It is false before the first
	// round, and always false with no targets: the Prober never claims a
	// reachability it did not observe; whether "no tiebreaker" may promote
	// is the failover logic's call.
	Reachable bool
	// LastOK is when the answer of the most recent successful round arrived,
	// and LastProbeSent when that answered probe was sent. A decision that
	// must only trust evidence gathered after some instant (the heartbeat
	// loss, the end of a freeze) compares against LastProbeSent, not LastOK:
	// only the send time bounds when the network was known to work.
	LastOK        time.Time
	LastProbeSent time.Time
	// Last is the latest completed round, with per-target results.
	Last   Result
	Rounds int // completed rounds
}

// ReachableAfter reports whether a probe sent at or after t was answered in
// time: the network was alive at some point no earlier than t.
func (s Status) ReachableAfter(t time.Time) bool {
	return !s.LastProbeSent.IsZero() && !s.LastProbeSent.Before(t)
}

// Prober probes Targets every Interval. Set the fields before calling Run or
// ProbeOnce and do not change them afterwards.
type Prober struct {
	Targets []Target
	// Timeout bounds each probe (DefaultTimeout when zero). Rounds do not
	// overlap: with Timeout > Interval the next round starts when the
	// previous one ends.
	Timeout  time.Duration
	Interval time.Duration // DefaultInterval when zero
	// Now stamps send and receive times (time.Now when nil). Tests inject a
	// clock to simulate a freeze between sending and receiving.
	Now func() time.Time
	Log *slog.Logger // slog.Default() when nil

	mu     sync.Mutex
	status Status
}

// Run probes until ctx ends, one round right away and then one every
// Interval, and returns ctx's error.
func (p *Prober) Run(ctx context.Context) error {
	interval := p.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		p.ProbeOnce(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// ProbeOnce probes every target once, concurrently, each bounded by Timeout
// and ctx, and returns the round. It is what `zrepl-ha drill` and `status`
// call. The round is recorded in Status unless ctx ended during it: a round
// cut short by the caller says nothing about the network.
func (p *Prober) ProbeOnce(ctx context.Context) Result {
	res := Result{Targets: make([]TargetResult, len(p.Targets))}
	var wg sync.WaitGroup
	for i, tg := range p.Targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res.Targets[i] = p.probe(ctx, tg)
		}()
	}
	wg.Wait()
	for _, tr := range res.Targets {
		if tr.OK && (!res.Reachable || tr.Sent.After(res.Sent)) {
			res.Reachable, res.Sent, res.Received = true, tr.Sent, tr.Received
		}
	}
	if !cutShort(ctx) {
		p.record(res)
	}
	return res
}

// cutShort reports whether ctx ended during the round. Its deadline counts
// even before ctx.Err() says so: a probe's socket deadline, derived from
// it, can fire a moment before ctx's own timer.
func cutShort(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// Status returns the latest state. It is safe to call concurrently with Run.
func (p *Prober) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.status
	s.Last.Targets = append([]TargetResult(nil), s.Last.Targets...)
	return s
}

func (p *Prober) record(res Result) {
	p.mu.Lock()
	was, first := p.status.Reachable, p.status.Rounds == 0
	p.status.Reachable = res.Reachable
	p.status.Last = res
	p.status.Rounds++
	if res.Reachable {
		p.status.LastOK, p.status.LastProbeSent = res.Received, res.Sent
	}
	p.mu.Unlock()

	log := p.log()
	// Transitions at Info/Warn, every round at Debug: a flapping gateway
	// shows up in the log without a line per second when all is well.
	switch {
	case res.Reachable && (!was || first):
		log.Info("tiebreaker reachable", "answered", answered(res))
	case !res.Reachable && (was || first):
		log.Warn("tiebreaker unreachable", "errors", errorsOf(res))
	default:
		log.Debug("tiebreaker round", "reachable", res.Reachable, "answered", answered(res))
	}
}

func (p *Prober) probe(ctx context.Context, tg Target) TargetResult {
	timeout := p.timeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tr := TargetResult{Target: tg, Sent: p.now()}
	var err error
	switch tg.Method {
	case config.TiebreakICMP:
		err = pingICMP(ctx, tg.Address)
	case config.TiebreakTCP:
		err = connectTCP(ctx, tg.Address)
	default:
		err = fmt.Errorf("%w %q", ErrUnknownMethod, tg.Method)
	}
	tr.Received = p.now()
	if err == nil && tr.Received.Sub(tr.Sent) > timeout {
		err = fmt.Errorf("%w (%s after sending, timeout %s)", ErrLate, tr.Received.Sub(tr.Sent), timeout)
	}
	if err != nil {
		tr.Err = fmt.Errorf("%s %s: %w", tg.Method, tg.Address, err)
		return tr
	}
	tr.OK, tr.RTT = true, tr.Received.Sub(tr.Sent)
	return tr
}

func (p *Prober) timeout() time.Duration {
	if p.Timeout > 0 {
		return p.Timeout
	}
	return DefaultTimeout
}

func (p *Prober) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func (p *Prober) log() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.Default()
}

func answered(res Result) []string {
	var out []string
	for _, tr := range res.Targets {
		if tr.OK {
			out = append(out, fmt.Sprintf("%s %s %s", tr.Target.Method, tr.Target.Address, tr.RTT.Round(time.Microsecond)))
		}
	}
	return out
}

func errorsOf(res Result) []string {
	var out []string
	for _, tr := range res.Targets {
		if tr.Err != nil {
			out = append(out, tr.Err.Error())
		}
	}
	return out
}
