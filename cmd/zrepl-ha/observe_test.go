package main

import (
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/zrepl-ha/zrepl-ha/failover"
	"github.com/zrepl-ha/zrepl-ha/transport/zfsrpc"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

// TestObserveWiring: the daemon's node and services report to the journal
// in node.state_dir and, with metrics.listen, to the metrics, which also
// count received bytes and sent-stream compression.
func TestObserveWiring(t *testing.T) {
	for _, withMetrics := range []bool{false, true} {
		cfg := loadExample(t)
		cfg.Node.StateDir = t.TempDir()
		if !withMetrics {
			cfg.Metrics.Listen = ""
		}
		local := &zfsrepl.LocalReceiver{}
		node := &failover.Node{Data: &zfsrpc.Server{Receiver: local}}
		svc := &failover.Services{}
		rep := &replicator{cfg: cfg}
		serve := observe(cfg, node, svc, rep, []string{"tank/data"}, slog.New(slog.DiscardHandler))
		if node.Observer == nil || svc.Observer == nil {
			t.Fatal("node or services not observed")
		}
		if (serve != nil) != withMetrics || (rep.stats != nil) != withMetrics {
			t.Errorf("metrics=%v: serve %v, stats %v", withMetrics, serve != nil, rep.stats != nil)
		}
		wrapped := node.Data.(*zfsrpc.Server).Receiver != zfsrepl.Receiver(local)
		if wrapped != withMetrics {
			t.Errorf("metrics=%v: receiver wrapped %v", withMetrics, wrapped)
		}
		node.Observer.Decision(failover.Decision{From: failover.Passive, To: failover.Promoting, Reason: "admin: failover --force"})
		got, _, err := failover.ReadJournal(filepath.Join(cfg.Node.StateDir, failover.JournalFile))
		if err != nil || len(got) != 1 || got[0].Class != "admin" {
			t.Errorf("journal after one decision: %+v, %v", got, err)
		}
	}
}
