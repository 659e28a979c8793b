package witness

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// ErrNoLeader is returned by Leader when nobody holds the election.
var ErrNoLeader = errors.New("witness: no leader")

// Witness is one node's handle on the etcd election. It is safe for
// concurrent use. A node holds at most one Leadership at a time.
type Witness struct {
	cfg    Config
	client *clientv3.Client
	pfx    string // election prefix, without the trailing slash that concurrency adds

	ctx    context.Context // ends at Close; parent of every session
	cancel context.CancelFunc

	campaign chan struct{} // one Campaign at a time; a token channel so waiting honours ctx

	mu      sync.Mutex
	cur     *Leadership // the current or most recent leadership
	closed  bool
	waiting bool           // Close is waiting on pending; later revokes are not tracked
	pending sync.WaitGroup // background revokes
}

// New validates cfg and creates the etcd client. It does not wait for etcd:
// a witness that is down at start is a failure mode the pair handles (see
// docs/witness.md), not a reason to refuse to start. Use Check to probe the
// endpoints.
func New(cfg Config) (*Witness, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.RequestTimeout,
		TLS:         cfg.TLS,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{
			// Reconnect quickly after an etcd restart: gRPC's default
			// backoff grows to two minutes, far beyond any lease TTL.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff: backoff.Config{
					BaseDelay:  100 * time.Millisecond,
					Multiplier: 1.6,
					Jitter:     0.2,
					MaxDelay:   min(time.Second, cfg.RequestTimeout),
				},
				MinConnectTimeout: cfg.RequestTimeout,
			}),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("witness: etcd client for %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Witness{
		cfg:      cfg,
		client:   client,
		pfx:      strings.TrimSuffix(cfg.Prefix, "/") + "/leader",
		ctx:      ctx,
		cancel:   cancel,
		campaign: make(chan struct{}, 1),
	}
	return w, nil
}

// Close gives up any leadership (revoking its lease, bounded by the request
// timeout) and closes the client. A Campaign in progress returns ErrClosed.
func (w *Witness) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	cur := w.cur
	w.mu.Unlock()
	if cur != nil {
		cur.s.lose(ErrClosed)
	}
	w.cancel()
	w.mu.Lock()
	w.waiting = true
	w.mu.Unlock()
	w.pending.Wait()
	if err := w.client.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("witness: close etcd client: %w", err)
	}
	return nil
}

// Check asks every endpoint for its status, each bounded by the request
// timeout, and returns one error per endpoint that did not answer, naming
// it. Use it at start and in `zrepl-ha status`.
func (w *Witness) Check(ctx context.Context) error {
	var errs []error
	for _, ep := range w.cfg.Endpoints {
		rctx, cancel := context.WithTimeout(ctx, w.cfg.RequestTimeout)
		_, err := w.client.Status(rctx, ep)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("witness: etcd endpoint %s did not answer within %v: %w", ep, w.cfg.RequestTimeout, err))
		}
	}
	return errors.Join(errs...)
}

// Campaign blocks until this node leads the election, and returns the
// leadership; its Token is the fencing token. If this node already holds a
// leadership that is still held, Campaign returns it. Transient failures
// (etcd unreachable, the lease lost while waiting) are retried with a new
// session until ctx ends; then Campaign returns ctx's error wrapped with
// the last failure. When ctx ends, Campaign returns at once: withdrawing
// the candidacy (revoking its lease) continues in the background, bounded
// by the request timeout, and if etcd is unreachable the lease expires by
// itself within the TTL.
func (w *Witness) Campaign(ctx context.Context) (*Leadership, error) {
	select {
	case w.campaign <- struct{}{}:
		defer func() { <-w.campaign }()
	case <-ctx.Done():
		return nil, fmt.Errorf("witness: campaign: %w", ctx.Err())
	case <-w.ctx.Done():
		return nil, fmt.Errorf("witness: campaign: %w", ErrClosed)
	}
	if l := w.Current(); l != nil && l.Held() {
		return l, nil
	}
	delay := 100 * time.Millisecond
	var last error
	for {
		l, err := w.campaignOnce(ctx)
		if err == nil {
			return l, nil
		}
		switch {
		case w.ctx.Err() != nil:
			return nil, fmt.Errorf("witness: campaign: %w", ErrClosed)
		case ctx.Err() != nil:
			if last == nil || !errors.Is(err, ctx.Err()) {
				last = err
			}
			return nil, fmt.Errorf("witness: campaign for %q on %s: %w (last error: %v)", w.cfg.Node, strings.Join(w.cfg.Endpoints, ","), ctx.Err(), last)
		}
		last = err
		w.cfg.Log.Warn("witness: campaign failed; retrying", "err", err, "retry_in", delay)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
		case <-w.ctx.Done():
		}
		delay = min(2*delay, w.cfg.LeaseTTL/2)
	}
}

// campaignOnce runs one candidacy on a fresh session.
func (w *Witness) campaignOnce(ctx context.Context) (*Leadership, error) {
	s, err := w.newSession(ctx)
	if err != nil {
		return nil, err
	}
	e := concurrency.NewElection(s.cs, w.pfx)
	// The campaign ends when ctx does or when the session is lost: a
	// candidate whose lease expired while it waited must not be told it won.
	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	res := make(chan error, 1)
	go func() { res <- e.Campaign(ectx, w.cfg.Node) }()
	select {
	case err = <-res:
	case <-ectx.Done():
		// concurrency's cleanup after a cancelled campaign resigns with
		// the client's context, which can block while etcd is away; do
		// not wait for it. Losing the session revokes the lease.
		err = ectx.Err()
	}
	if err != nil {
		sessionLost := s.ctx.Err() != nil && ctx.Err() == nil
		s.lose(ErrResigned)
		if sessionLost {
			return nil, fmt.Errorf("witness: lease lost while campaigning: %w", s.cause())
		}
		return nil, fmt.Errorf("witness: campaign: %w", err)
	}
	// Campaign can return after our own key was deleted (the lease
	// expired while we waited for older keys to go). Believe only the key.
	key, rev := e.Key(), e.Rev()
	rctx, rcancel := context.WithTimeout(ctx, w.cfg.RequestTimeout)
	resp, err := w.client.Get(rctx, key)
	rcancel()
	if err != nil {
		s.lose(ErrResigned)
		return nil, fmt.Errorf("witness: verify election key %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != rev || clientv3.LeaseID(resp.Kvs[0].Lease) != s.id {
		s.lose(ErrKeyDeleted)
		return nil, fmt.Errorf("witness: campaign won on a key that is gone: %w", ErrKeyDeleted)
	}
	l := &Leadership{Token: rev, Key: key, Node: w.cfg.Node, s: s, e: e}
	if !s.arm(l, resp.Header.Revision) {
		return nil, fmt.Errorf("witness: lease lost as the campaign was won: %w", s.cause())
	}
	w.mu.Lock()
	w.cur = l
	w.mu.Unlock()
	w.cfg.Log.Info("witness: leader", "node", w.cfg.Node, "token", rev, "lease", fmt.Sprintf("%x", int64(s.id)))
	return l, nil
}

// Current returns the current or most recent leadership, or nil.
func (w *Witness) Current() *Leadership {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur
}

// Held reports whether this node leads right now, and its fencing token.
// It checks the client-side deadline itself, so it turns false at the
// deadline even if no goroutine has run since (a frozen process that
// resumes sees false at once).
func (w *Witness) Held() (token int64, ok bool) {
	l := w.Current()
	if l == nil || !l.Held() {
		return 0, false
	}
	return l.Token, true
}

// Resign gives up the current leadership: Held turns false first, then the
// election key is deleted and the lease revoked, so a waiting candidate
// wins at once instead of after the TTL. Call it after this node has
// stopped serving. If etcd cannot be reached the error says so; the lease
// then expires by itself within the TTL. Resign without a leadership does
// nothing.
func (w *Witness) Resign(ctx context.Context) error {
	l := w.Current()
	if l == nil {
		return nil
	}
	return l.Resign(ctx)
}

// LeaderInfo says who holds the election.
type LeaderInfo struct {
	Node  string // the leader's node name
	Token int64  // its fencing token (the key's create revision)
	Key   string
}

// Leader returns who holds the election now, or ErrNoLeader, bounded by
// the request timeout. It reads etcd, so it reflects etcd's view: a leader
// whose lease has not expired there yet is still listed even if it already
// stopped believing it leads.
func (w *Witness) Leader(ctx context.Context) (LeaderInfo, error) {
	rctx, cancel := context.WithTimeout(ctx, w.cfg.RequestTimeout)
	defer cancel()
	resp, err := w.client.Get(rctx, w.pfx+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return LeaderInfo{}, fmt.Errorf("witness: read leader from %s: %w", strings.Join(w.cfg.Endpoints, ","), err)
	}
	if len(resp.Kvs) == 0 {
		return LeaderInfo{}, ErrNoLeader
	}
	kv := resp.Kvs[0]
	return LeaderInfo{Node: string(kv.Value), Token: kv.CreateRevision, Key: string(kv.Key)}, nil
}

// Status is a snapshot for `zrepl-ha status`.
type Status struct {
	Held      bool
	Token     int64         // of the current or most recent leadership; 0 if none
	Remaining time.Duration // until the client-side deadline, while held
	LostAgo   time.Duration // since the leadership was lost, once lost
	Cause     error         // why it was lost, once lost
}

// Status describes the current or most recent leadership.
func (w *Witness) Status() Status {
	l := w.Current()
	if l == nil {
		return Status{}
	}
	st := Status{Token: l.Token}
	now := w.cfg.clock.Now()
	l.s.mu.Lock()
	held, justLost := l.s.h.check(now)
	h := l.s.h
	l.s.mu.Unlock()
	if justLost {
		l.s.lose(ErrLeaseDeadline)
	}
	if held {
		st.Held, st.Remaining = true, h.deadline-now
	} else {
		st.LostAgo, st.Cause = now-h.lostAt, h.cause
	}
	return st
}

// Leadership is one won election. It ends (Done closes) when the lease is
// lost, the key is deleted, or it is resigned; it never comes back: to lead
// again, Campaign again, which creates a new key with a higher Token.
type Leadership struct {
	Token int64  // fencing token: the election key's create revision
	Key   string // the election key
	Node  string

	s *session
	e *concurrency.Election
}

// Held reports whether the leadership still holds, checking the
// client-side deadline.
func (l *Leadership) Held() bool { return l.s.held() }

// Done is closed when the leadership is lost or resigned.
func (l *Leadership) Done() <-chan struct{} { return l.s.done }

// Cause says why the leadership ended (one of the Err* of this package),
// or nil while it holds.
func (l *Leadership) Cause() error {
	if l.s.held() {
		return nil
	}
	return l.s.cause()
}

// Resign ends the leadership: see Witness.Resign.
func (l *Leadership) Resign(ctx context.Context) error {
	s := l.s
	s.stop(ErrResigned) // Held is false from here on
	rctx, cancel := context.WithTimeout(ctx, s.w.cfg.RequestTimeout)
	defer cancel()
	var errs []error
	if err := l.e.Resign(rctx); err != nil {
		errs = append(errs, fmt.Errorf("delete election key %s: %w", l.Key, err))
	}
	if _, err := s.w.client.Revoke(rctx, s.id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		errs = append(errs, fmt.Errorf("revoke lease %x: %w", int64(s.id), err))
	}
	if len(errs) > 0 {
		return fmt.Errorf("witness: resign token %d (the lease expires by itself within %v): %w", l.Token, s.w.cfg.LeaseTTL, errors.Join(errs...))
	}
	s.w.cfg.Log.Info("witness: resigned", "node", l.Node, "token", l.Token)
	return nil
}
