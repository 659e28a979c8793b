package witness

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// session is one lease with its concurrency.Session, plus this package's
// own keepalive loop that moves the client-side deadline (the library's
// session eats its keepalive responses, so it cannot tell us when the last
// one succeeded). A session serves one candidacy and, if won, one
// leadership; once lost it is never reused.
type session struct {
	w   *Witness
	id  clientv3.LeaseID
	cs  *concurrency.Session
	ttl time.Duration

	ctx    context.Context // ends when the session is lost; stops all its goroutines
	cancel context.CancelFunc
	done   chan struct{} // closed when lost

	mu     sync.Mutex
	h      hold
	leader *Leadership // set when the campaign is won and verified
}

// newSession grants a lease (bounded by the request timeout) and starts
// keeping it alive.
func (w *Witness) newSession(ctx context.Context) (*session, error) {
	ttl := w.cfg.LeaseTTL
	secs := int64(ttl / time.Second)
	sent := w.cfg.clock.Now()
	gctx, gcancel := context.WithTimeout(ctx, w.cfg.RequestTimeout)
	g, err := w.client.Grant(gctx, secs)
	gcancel()
	if err != nil {
		return nil, fmt.Errorf("witness: grant a %v lease on etcd %v: %w", ttl, w.cfg.Endpoints, err)
	}
	sctx, cancel := context.WithCancel(w.ctx)
	s := &session{w: w, id: g.ID, ttl: ttl, ctx: sctx, cancel: cancel, done: make(chan struct{})}
	s.h = newHold(ttl, sent)
	// etcd may grant less than asked (never in practice, but the deadline
	// must follow what etcd will enforce) or more (its minimum TTL).
	s.h.deadline = sent + min(time.Duration(g.TTL)*time.Second, ttl) - lossMargin(ttl)
	cs, err := concurrency.NewSession(w.client,
		concurrency.WithLease(g.ID), concurrency.WithTTL(int(secs)), concurrency.WithContext(sctx))
	if err != nil {
		s.lose(ErrSessionClosed)
		return nil, fmt.Errorf("witness: start session on lease %x: %w", int64(g.ID), err)
	}
	s.cs = cs
	go s.keepalive()
	go s.watchdog()
	return s, nil
}

// keepalive sends a keepalive every keepaliveInterval (sooner after a
// failure) and moves the deadline to its send time + TTL - margin when it
// succeeds. Each attempt is bounded by what is left until the deadline.
func (s *session) keepalive() {
	c := s.w.cfg
	interval := keepaliveInterval(s.ttl)
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		sent := c.clock.Now()
		s.mu.Lock()
		left := s.h.deadline - sent
		s.mu.Unlock()
		if left <= 0 {
			s.held() // declares the loss
			return
		}
		kctx, cancel := context.WithTimeout(s.ctx, min(left, c.RequestTimeout))
		resp, err := s.w.client.KeepAliveOnce(kctx, s.id)
		cancel()
		next := interval
		switch {
		case err == nil && resp.TTL > 0:
			s.mu.Lock()
			s.h.renew(sent, time.Duration(resp.TTL)*time.Second)
			s.mu.Unlock()
		case err == nil || errors.Is(err, rpctypes.ErrLeaseNotFound):
			s.lose(ErrLeaseExpired)
			return
		default:
			if s.ctx.Err() != nil {
				return
			}
			c.Log.Debug("witness: keepalive failed", "lease", fmt.Sprintf("%x", int64(s.id)), "err", err)
			next = min(interval, 200*time.Millisecond)
		}
		t.Reset(next)
	}
}

// watchdog turns a passed deadline or the end of the library's session into
// a loss promptly, so Done closes even if nobody calls Held.
func (s *session) watchdog() {
	tick := min(max(s.ttl/20, 10*time.Millisecond), 100*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.cs.Done():
			s.lose(ErrSessionClosed)
			return
		case <-t.C:
			if !s.held() {
				return
			}
		}
	}
}

// arm records the won leadership and starts watching its key for deletion
// from fromRev. It returns false if the session was lost meanwhile.
func (s *session) arm(l *Leadership, fromRev int64) bool {
	if !s.held() {
		return false
	}
	s.mu.Lock()
	s.leader = l
	s.mu.Unlock()
	go s.watchKey(l, fromRev)
	return s.held()
}

// watchKey ends the leadership when its key is deleted: by an operator, or
// by etcd with the lease. During a partition the watch is silent; the
// deadline covers that.
func (s *session) watchKey(l *Leadership, fromRev int64) {
	c := s.w.cfg
	for {
		wctx := clientv3.WithRequireLeader(s.ctx)
		for wr := range s.w.client.Watch(wctx, l.Key, clientv3.WithRev(fromRev)) {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					s.lose(ErrKeyDeleted)
					return
				}
			}
			fromRev = wr.Header.Revision + 1
		}
		if s.ctx.Err() != nil {
			return
		}
		// The watch broke (compaction, no etcd leader): look at the key
		// itself, then watch again from there.
		rctx, cancel := context.WithTimeout(s.ctx, c.RequestTimeout)
		resp, err := s.w.client.Get(rctx, l.Key)
		cancel()
		if err == nil {
			if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != l.Token {
				s.lose(ErrKeyDeleted)
				return
			}
			fromRev = resp.Header.Revision + 1
		}
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// held checks the deadline; passing it ends the session.
func (s *session) held() bool {
	s.mu.Lock()
	held, justLost := s.h.check(s.w.cfg.clock.Now())
	s.mu.Unlock()
	if justLost {
		s.ended(true)
	}
	return held
}

func (s *session) cause() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.h.cause
}

// lose ends the session for cause and revokes the lease in the background
// (unless etcd already said it is gone), so a waiting candidate need not
// wait for the TTL.
func (s *session) lose(cause error) {
	s.mu.Lock()
	justLost := s.h.lose(s.w.cfg.clock.Now(), cause)
	s.mu.Unlock()
	if justLost {
		s.ended(!errors.Is(cause, ErrLeaseExpired))
	}
}

// stop ends the session without revoking: the caller (Resign) does that.
func (s *session) stop(cause error) {
	s.mu.Lock()
	justLost := s.h.lose(s.w.cfg.clock.Now(), cause)
	s.mu.Unlock()
	if justLost {
		s.ended(false)
	}
}

// ended runs once per session, after the hold was marked lost: Done
// closes, keepalives stop (so etcd expires the lease at the latest one TTL
// after the last one it received), and the loss is logged.
func (s *session) ended(revoke bool) {
	close(s.done)
	s.cancel()
	s.mu.Lock()
	l, h := s.leader, s.h
	s.mu.Unlock()
	if l != nil {
		s.w.cfg.Log.Warn("witness: leadership lost", "node", l.Node, "token", l.Token, "cause", h.cause)
	}
	if !revoke {
		return
	}
	w := s.w
	w.mu.Lock()
	track := !w.waiting
	if track {
		w.pending.Add(1)
	}
	w.mu.Unlock()
	go func() {
		if track {
			defer w.pending.Done()
		}
		// Not derived from the session's or the witness's context: both
		// have just ended, and the revoke must still go out.
		ctx, cancel := context.WithTimeout(context.Background(), w.cfg.RequestTimeout)
		defer cancel()
		if _, err := w.client.Revoke(ctx, s.id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			w.cfg.Log.Debug("witness: revoke after loss failed; the lease expires by itself", "lease", fmt.Sprintf("%x", int64(s.id)), "err", err)
		}
	}()
}
