package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/zrepl-ha/zrepl-ha/failover"
	"github.com/zrepl-ha/zrepl-ha/transport"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

const namespace = "zrepl_ha"

// Source is what the collector reads at scrape time. Every field is
// optional: a nil one leaves its series out.
type Source struct {
	// Node is the failover node's status (failover.Node.Status).
	Node func() failover.Status
	// Roots is the replication engine's per-root status (Engine.Status);
	// only a node that sends has any.
	Roots func() []zfsrepl.RootStatus
	// Compression counts the bytes of every replication stream this node
	// sends, before and after compression (transport.StreamOptions.Stats).
	Compression *transport.StreamStats
	// Now is the clock for lag and ages; nil is time.Now.
	Now func() time.Time
}

// Metrics is the daemon's registry. It is a failover.Observer: hand it to
// failover.Node.Observer and failover.Services.Observer (through
// failover.Observers when the journal listens too).
type Metrics struct {
	reg      *prometheus.Registry
	src      Source
	interval time.Duration

	rtt          *prometheus.HistogramVec
	missed       *prometheus.CounterVec
	decisions    *prometheus.CounterVec
	promotions   *prometheus.CounterVec
	fences       *prometheus.CounterVec
	switchovers  *prometheus.CounterVec
	steps        *prometheus.HistogramVec
	stepFailures *prometheus.CounterVec
	actions      *prometheus.HistogramVec
	received     *prometheus.CounterVec

	mu       sync.Mutex
	lastSent map[failover.Path]time.Time // send time of the newest acked heartbeat
}

var _ failover.Observer = (*Metrics)(nil)

// Bucket bounds. Heartbeat RTTs on a cable are well under a millisecond and
// a loaded public network reaches tens; anything near the loss threshold
// (seconds) is a failure in the making. Steps and actions range from a
// property set (tens of ms) to a final incremental (minutes).
var (
	rttBuckets  = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
	stepBuckets = []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900}
)

// New builds the registry. heartbeatInterval (heartbeat.interval) lets the
// missed-heartbeat counter turn a gap between acknowledged heartbeats into
// a count; zero disables that counter's updates.
func New(src Source, heartbeatInterval time.Duration) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), src: src, interval: heartbeatInterval,
		lastSent: map[failover.Path]time.Time{}}
	m.rtt = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "heartbeat_rtt_seconds",
		Help: "Round-trip time of acknowledged heartbeats, per path.", Buckets: rttBuckets}, []string{"path"})
	m.missed = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "heartbeats_missed_total",
		Help: "Heartbeat intervals without an acknowledged heartbeat, per path. Counted when the next acknowledgement arrives; " +
			"while a path stays down, zrepl_ha_path_up is 0 and this counter waits."}, []string{"path"})
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "decisions_total",
		Help: "Transitions of the failover state machine."}, []string{"from", "to"})
	m.promotions = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "promotions_total",
		Help: "Promotions of this node by reason: silence (failover), handover (switchover from the peer), admin (failover --force), resume (fenced node resumed with the peer's consent)."},
		[]string{"reason"})
	m.fences = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "fences_total",
		Help: "Fences of this node by reason class."}, []string{"reason"})
	m.switchovers = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "switchovers_total",
		Help: "Handovers started by this node: admin (zrepl-ha switchover) or public_lost (its public network is down)."}, []string{"reason"})
	m.steps = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "step_duration_seconds",
		Help: "Duration of promotion, handover and rejoin steps, by step class.", Buckets: stepBuckets}, []string{"step"})
	m.stepFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "step_failures_total",
		Help: "Failed promotion, handover and rejoin steps, by step class."}, []string{"step"})
	m.actions = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "action_duration_seconds",
		Help: "Duration of failover actions (serve, unserve, handover, rejoin) and whether they failed.", Buckets: stepBuckets},
		[]string{"action", "result"})
	m.received = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "replication_received_bytes_total",
		Help: "Bytes of replication streams received from the peer, per root (as handed to zfs recv)."}, []string{"root"})
	m.reg.MustRegister(m.rtt, m.missed, m.decisions, m.promotions, m.fences, m.switchovers, m.steps, m.stepFailures,
		m.actions, m.received, collector{m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is the registry /metrics serves.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

func (m *Metrics) now() time.Time {
	if m.src.Now != nil {
		return m.src.Now()
	}
	return time.Now()
}

// Decision implements failover.Observer.
func (m *Metrics) Decision(d failover.Decision) {
	from := "none"
	if d.From != 0 {
		from = d.From.String()
	}
	m.decisions.WithLabelValues(from, d.To.String()).Inc()
	c := failover.ClassifyDecision(d)
	switch c.Event {
	case failover.EventPromotion:
		m.promotions.WithLabelValues(c.Reason).Inc()
	case failover.EventFence:
		m.fences.WithLabelValues(c.Reason).Inc()
	case failover.EventSwitchover:
		m.switchovers.WithLabelValues(c.Reason).Inc()
	}
}

// Action implements failover.Observer.
func (m *Metrics) Action(a failover.Action, took time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.actions.WithLabelValues(a.Kind.String(), result).Observe(took.Seconds())
}

// Step implements failover.Observer.
func (m *Metrics) Step(step string, took time.Duration, err error) {
	class := failover.StepClass(step)
	m.steps.WithLabelValues(class).Observe(took.Seconds())
	if err != nil {
		m.stepFailures.WithLabelValues(class).Inc()
	}
}

// Heartbeat implements failover.Observer. It is called as the ack
// arrives, so the heartbeat was sent rtt ago; the gap since the previous
// acked heartbeat's send time, in intervals, less one, is how many were
// sent without an ack (lost, or sent on a connection that was down).
func (m *Metrics) Heartbeat(path failover.Path, rtt time.Duration) {
	p := string(path)
	m.rtt.WithLabelValues(p).Observe(rtt.Seconds())
	if m.interval <= 0 {
		return
	}
	sent := m.now().Add(-rtt)
	m.mu.Lock()
	prev := m.lastSent[path]
	if sent.After(prev) {
		m.lastSent[path] = sent
	}
	m.mu.Unlock()
	if prev.IsZero() || !sent.After(prev) {
		return
	}
	// Rounded: the heartbeater's ticker and scheduling jitter make gaps of
	// 0.9 or 1.1 intervals between consecutive heartbeats.
	if n := (sent.Sub(prev)+m.interval/2)/m.interval - 1; n > 0 {
		m.missed.WithLabelValues(p).Add(float64(n))
	}
}
