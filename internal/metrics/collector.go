package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zrepl-ha/zrepl-ha/failover"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

// roles are every role the role gauge reports, so that an alert on
// zrepl_ha_role{role="fenced"} == 1 has a series that is 0 when healthy
// rather than one that appears only when it fires.
var roles = []failover.State{failover.Passive, failover.Promoting, failover.Active,
	failover.Standalone, failover.Demoting, failover.Fenced}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
}

var (
	descRole       = desc("role", "1 for this node's current role, 0 for the others.", "role")
	descEpoch      = desc("epoch", "The failover epoch this node is at.")
	descPathUp     = desc("path_up", "1 if the peer's heartbeats arrive on this path within the loss threshold.", "path")
	descLastAck    = desc("heartbeat_last_ack_age_seconds", "Seconds since the peer last acknowledged a heartbeat on this path.", "path")
	descTiebreaker = desc("tiebreaker_up", "1 if the tiebreaker answered within the loss threshold (only when one is configured).")
	descWitness    = desc("witness_lease_held", "1 if this node holds the witness lease (only when a witness is configured).")
	descAuto       = desc("automatic_failover_configured", "1 if a tiebreaker or a witness is configured; without one the passive never promotes by itself.")
	descAlerts     = desc("alerts", "Number of alerts `zrepl-ha status` shows now.")
	descLag        = desc("replication_lag_seconds", "Age of the newest snapshot consistent on the peer, per root (the data a failover now would lose).", "root")
	descSent       = desc("replication_sent_bytes_total", "Bytes of replication streams sent, per root, since the daemon started.", "root")
	descLastCycle  = desc("replication_last_cycle_timestamp_seconds", "When the last replication cycle of the root ended (Unix time).", "root")
	descCycleErr   = desc("replication_last_cycle_failed", "1 if the last replication cycle of the root failed.", "root")
	descConflicts  = desc("replication_conflicts", "Datasets the last cycle could not replicate because the peer's copy diverged.", "root")
	descIn         = desc("transport_uncompressed_bytes_total", "Bytes of send streams before compression (what zfs send produced).")
	descOut        = desc("transport_wire_bytes_total", "Bytes of send streams on the wire after compression, chunk headers included.")
	descRatio      = desc("transport_compression_ratio", "Wire bytes over uncompressed bytes of every stream sent since start; below 1 compression saves bandwidth.")
)

// collector reads Source at scrape time: state that already lives in the
// node and the engine is not copied into gauges that could go stale.
type collector struct{ m *Metrics }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRole, descEpoch, descPathUp, descLastAck, descTiebreaker, descWitness,
		descAuto, descAlerts, descLag, descSent, descLastCycle, descCycleErr, descConflicts, descIn, descOut, descRatio} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	src, now := c.m.src, c.m.now()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	if src.Node != nil {
		st := src.Node()
		known := false
		for _, r := range roles {
			gauge(descRole, b2f(st.Role == r.String()), r.String())
			known = known || st.Role == r.String()
		}
		if !known && st.Role != "" {
			gauge(descRole, 1, st.Role) // "starting"
		}
		gauge(descEpoch, float64(st.Epoch))
		for _, p := range st.Paths {
			gauge(descPathUp, b2f(p.Up), p.Path)
			if !p.LastAck.IsZero() {
				gauge(descLastAck, now.Sub(p.LastAck).Seconds(), p.Path)
			}
		}
		if st.Tiebreaker != nil {
			gauge(descTiebreaker, b2f(st.Tiebreaker.OK))
		}
		if st.Witness != nil {
			gauge(descWitness, b2f(st.Witness.OK))
		}
		// Before Init the node does not know its arbiters yet; saying
		// "off" then would fire the alert at every start.
		if st.Role != "starting" {
			gauge(descAuto, b2f(st.Tiebreaker != nil || st.Witness != nil))
		}
		gauge(descAlerts, float64(len(st.Alerts)))
	}
	if src.Roots != nil {
		for _, r := range src.Roots() {
			root := r.Root.Source
			if t, _, ok := zfsrepl.ParseSnapshotName(r.LatestConsistent); ok {
				gauge(descLag, now.Sub(t).Seconds(), root)
			} else if r.Lag >= 0 {
				gauge(descLag, r.Lag.Seconds(), root)
			}
			counter(descSent, float64(r.BytesSent), root)
			if !r.LastCycle.IsZero() {
				gauge(descLastCycle, float64(r.LastCycle.UnixNano())/1e9, root)
			}
			gauge(descCycleErr, b2f(r.LastError != ""), root)
			gauge(descConflicts, float64(r.Conflicts), root)
		}
	}
	if s := src.Compression; s != nil {
		in, out := s.BytesIn.Load(), s.BytesOut.Load()
		counter(descIn, float64(in))
		counter(descOut, float64(out))
		if in > 0 {
			gauge(descRatio, s.Ratio())
		}
	}
}
