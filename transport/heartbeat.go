package transport

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"
)

// Heartbeats travel on their own control connection, never behind stream
// data: a saturated data connection cannot delay them in our buffers or in
// TCP's. Each node runs a Heartbeater per path (heartbeat link, public
// network) towards the peer, and answers the peer's heartbeats on its
// listener with ServeHeartbeats.

// Heartbeater sends heartbeats to the peer on one path and measures RTT.
type Heartbeater struct {
	Path     string // "link" or "public", for logs and status
	Addr     string
	Local    string
	Peer     string
	Sec      Security
	Interval time.Duration
	// Payload fills each heartbeat's role, epoch, health and newest
	// snapshot (Seq and SentUnixNano are set here).
	Payload func() Heartbeat
	// OnAck, if set, is called for each acknowledged heartbeat with the
	// local time it was sent (monotonic, from Now): the ack proves the peer
	// heard us at or after that moment, which is the failover lease's
	// evidence. It must not block.
	OnAck func(sent time.Time)
	Now   func() time.Time
	Log   *slog.Logger

	mu      sync.Mutex
	rtts    []time.Duration // ring of recent RTTs
	next    int
	lastAck time.Time
	up      bool
	// sent remembers recent send times by seq, so an ack maps back to a
	// monotonic local time rather than the wall-clock echo.
	sent [sentRing]sentAt
}

type sentAt struct {
	seq uint64
	at  time.Time
}

const sentRing = 256

const rttWindow = 1024

// Run sends heartbeats until ctx ends, reconnecting with backoff (100 ms
// doubling to 1 s: a path that comes back must be seen well within the
// loss threshold) when the path fails.
func (h *Heartbeater) Run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	downs := 0 // failed sessions since the path was last up
	for ctx.Err() == nil {
		err := h.session(ctx)
		wasUp := h.Status().Up
		h.setUp(false)
		if ctx.Err() != nil {
			return
		}
		// Warn when the path goes down; the retries of a path that stays
		// down log at debug, or a dead peer would fill the log every
		// second.
		if h.Log != nil && (wasUp || downs == 0) {
			h.Log.Warn("heartbeat path down", "path", h.Path, "err", err, "retry_in", backoff)
		} else if h.Log != nil {
			h.Log.Debug("heartbeat path still down", "path", h.Path, "err", err, "retry_in", backoff)
		}
		downs++
		if wasUp {
			downs = 1
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, time.Second)
	}
}

func (h *Heartbeater) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Heartbeater) session(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, 2*h.Interval+time.Second)
	c, err := Dial(dctx, h.Addr, h.Local, h.Peer, PurposeControl, h.Sec, h.Log)
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()
	stop := closeOnDone(ctx, c)
	defer stop()
	h.setUp(true)
	errc := make(chan error, 1)
	go func() {
		for {
			// No ack within a few intervals: the path is dead even if TCP
			// has not noticed.
			c.SetReadDeadline(time.Now().Add(5*h.Interval + time.Second))
			f, err := c.Recv()
			if err != nil {
				errc <- err
				return
			}
			if f.Type != FrameHeartbeatAck {
				continue
			}
			var a HeartbeatAck
			if a.UnmarshalBinary(f.Payload) == nil {
				h.acked(a)
			}
		}
	}()
	tick := time.NewTicker(h.Interval)
	defer tick.Stop()
	var seq uint64
	for {
		var hb Heartbeat
		if h.Payload != nil {
			hb = h.Payload()
		}
		seq++
		now := h.now()
		hb.Seq, hb.SentUnixNano = seq, now.UnixNano()
		h.mu.Lock()
		h.sent[seq%sentRing] = sentAt{seq, now}
		h.mu.Unlock()
		payload, err := hb.MarshalBinary()
		if err != nil {
			return err
		}
		c.SetWriteDeadline(time.Now().Add(h.Interval + time.Second))
		if err := c.Send(Frame{Type: FrameHeartbeat, Payload: payload}); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errc:
			return err
		case <-tick.C:
		}
	}
}

// acked records an ack's RTT and reports the acked beat's send time. Acks
// of beats sent before this session (a reconnect reuses seq 1) or beyond
// the ring are only measured.
func (h *Heartbeater) acked(a HeartbeatAck) {
	h.mu.Lock()
	s := h.sent[a.Seq%sentRing]
	h.mu.Unlock()
	if s.seq != a.Seq || s.at.UnixNano() != a.EchoSentUnixNano {
		h.record(h.now().Sub(time.Unix(0, a.EchoSentUnixNano)))
		return
	}
	h.record(h.now().Sub(s.at))
	if h.OnAck != nil {
		h.OnAck(s.at)
	}
}

func (h *Heartbeater) setUp(up bool) {
	h.mu.Lock()
	h.up = up
	h.mu.Unlock()
}

func (h *Heartbeater) record(rtt time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.rtts) < rttWindow {
		h.rtts = append(h.rtts, rtt)
	} else {
		h.rtts[h.next] = rtt
		h.next = (h.next + 1) % rttWindow
	}
	h.lastAck = h.now()
}

// PathStatus is one path's state for status and metrics.
type PathStatus struct {
	Path      string
	Up        bool
	LastAck   time.Time
	RTT       time.Duration // last
	RTTP99    time.Duration // over the recent window
	RTTSample int
}

// Status reports the path's state.
func (h *Heartbeater) Status() PathStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := PathStatus{Path: h.Path, Up: h.up, LastAck: h.lastAck, RTTSample: len(h.rtts)}
	if len(h.rtts) == 0 {
		return s
	}
	last := h.next - 1
	if len(h.rtts) < rttWindow {
		last = len(h.rtts) - 1
	} else if last < 0 {
		last = rttWindow - 1
	}
	s.RTT = h.rtts[last]
	sorted := append([]time.Duration(nil), h.rtts...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	s.RTTP99 = sorted[(len(sorted)*99)/100]
	return s
}

// ServeHeartbeats answers heartbeats on a control connection: each is
// acknowledged at once (for the sender's RTT) and handed to onBeat (the
// failover logic), which must not block. It returns when the connection
// fails or ctx ends; silence for idle is a failure.
func ServeHeartbeats(ctx context.Context, c *Conn, idle time.Duration, onBeat func(peer string, hb Heartbeat)) error {
	defer c.Close()
	stop := closeOnDone(ctx, c)
	defer stop()
	for {
		c.SetReadDeadline(time.Now().Add(idle))
		f, err := c.Recv()
		if err != nil {
			return stalled(err)
		}
		if f.Type != FrameHeartbeat {
			return fmt.Errorf("%w: %s on a control connection", ErrUnexpectedFrame, f.Type)
		}
		var hb Heartbeat
		if err := hb.UnmarshalBinary(f.Payload); err != nil {
			return err
		}
		ack, _ := HeartbeatAck{Seq: hb.Seq, EchoSentUnixNano: hb.SentUnixNano}.MarshalBinary()
		c.SetWriteDeadline(time.Now().Add(idle))
		if err := c.Send(Frame{Type: FrameHeartbeatAck, Payload: ack}); err != nil {
			return err
		}
		if onBeat != nil {
			onBeat(c.Peer, hb)
		}
	}
}
