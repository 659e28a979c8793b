package witness

import (
	"errors"
	"time"
)

// Why a leadership ended; Leadership.Cause returns one of these, wrapped.
var (
	// ErrLeaseDeadline: no keepalive succeeded in time, so this node gave
	// up the lease on its own clock (etcd unreachable, hung or partitioned).
	ErrLeaseDeadline = errors.New("no successful lease keepalive before the client-side deadline")
	// ErrLeaseExpired: etcd answered that the lease no longer exists.
	ErrLeaseExpired = errors.New("etcd reports the lease expired or revoked")
	// ErrSessionClosed: the etcd client stopped keeping the lease alive.
	ErrSessionClosed = errors.New("the etcd session ended")
	// ErrKeyDeleted: the election key was deleted (by hand, or with its lease).
	ErrKeyDeleted = errors.New("the election key was deleted")
	// ErrResigned: Resign was called.
	ErrResigned = errors.New("resigned")
	// ErrClosed: the Witness was closed.
	ErrClosed = errors.New("witness closed")
)

// lossMargin is how much of the TTL the client keeps as its own margin: the
// deadline is send time + TTL - lossMargin(TTL). It is the time the node has
// to stop serving before etcd can expire the lease.
func lossMargin(ttl time.Duration) time.Duration { return ttl / 5 }

// keepaliveInterval is how often a keepalive is sent: three tries before the
// deadline of the previous one.
func keepaliveInterval(ttl time.Duration) time.Duration { return ttl / 4 }

// hold is the client-side view of one lease: until when it is safe to
// believe etcd still has it, and whether it has been given up. It is pure
// (times are passed in) and not safe for concurrent use; session locks it.
type hold struct {
	ttl      time.Duration
	deadline time.Duration // clock reading after which the lease is not trusted
	lost     bool
	lostAt   time.Duration
	cause    error
}

func newHold(ttl, grantSentAt time.Duration) hold {
	return hold{ttl: ttl, deadline: grantSentAt + ttl - lossMargin(ttl)}
}

// renew records a successful keepalive sent at sentAt, for which etcd
// granted serverTTL. The deadline only moves forward, and never after a
// loss: a lost hold is final.
func (h *hold) renew(sentAt, serverTTL time.Duration) {
	if h.lost {
		return
	}
	ttl := min(serverTTL, h.ttl)
	if d := sentAt + ttl - lossMargin(h.ttl); d > h.deadline {
		h.deadline = d
	}
}

// check reports whether the lease is held at now, and marks it lost with
// ErrLeaseDeadline (lost at the deadline, not at now) if the deadline has
// passed. It returns true when this call is the one that lost it.
func (h *hold) check(now time.Duration) (held, justLost bool) {
	if h.lost {
		return false, false
	}
	if now >= h.deadline {
		h.lost, h.lostAt, h.cause = true, h.deadline, ErrLeaseDeadline
		return false, true
	}
	return true, false
}

// lose marks the hold lost at now for cause, unless it already is. It
// returns true when this call is the one that lost it.
func (h *hold) lose(now time.Duration, cause error) bool {
	if h.lost {
		return false
	}
	if now >= h.deadline {
		// The deadline passed first; report it, and when it happened.
		h.lost, h.lostAt, h.cause = true, h.deadline, ErrLeaseDeadline
		return true
	}
	h.lost, h.lostAt, h.cause = true, now, cause
	return true
}
