// Package metrics owns the Prometheus metrics of the daemon: a registry of
// its own (no global default registry, so tests run side by side), an
// Observer of the failover node (decisions, actions, steps, heartbeat RTTs),
// a collector that reads the node's and the replication engine's status at
// scrape time, a wrapper that counts the bytes each root receives, and the
// HTTP server for /metrics.
//
// It imports failover, zfsrepl and transport to read their state; none of
// them may import it: they report through their own hooks (failover.Observer,
// Engine.Status, transport.StreamStats) and stay usable without Prometheus.
// Metric names are listed in docs/operability.md; they are an interface for
// admins' alert rules, so renaming one is a breaking change.
package metrics
