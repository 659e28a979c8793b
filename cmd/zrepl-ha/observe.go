package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/zrepl-ha/zrepl-ha/failover"
	"github.com/zrepl-ha/zrepl-ha/internal/config"
	"github.com/zrepl-ha/zrepl-ha/internal/metrics"
	"github.com/zrepl-ha/zrepl-ha/transport"
	"github.com/zrepl-ha/zrepl-ha/transport/zfsrpc"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

// observe hands the node's decisions, actions and steps to the events
// journal (always, in node.state_dir) and to the metrics (when
// metrics.listen is set), counts the bytes the peer's streams bring and the
// compression of the streams sent. It returns the metrics server to run,
// nil when metrics are off. Call it before the node and the replicator run.
func observe(cfg *config.Config, node *failover.Node, svc *failover.Services, rep *replicator, roots []string, log *slog.Logger) func(context.Context) {
	obs := failover.Observers{&failover.Journal{Path: filepath.Join(cfg.Node.StateDir, failover.JournalFile), Log: log}}
	var serve func(context.Context)
	if cfg.Metrics.Listen != "" {
		rep.stats = &transport.StreamStats{}
		m := metrics.New(metrics.Source{Node: node.Status, Compression: rep.stats,
			Roots: func() []zfsrepl.RootStatus { return rep.engine().Status() }}, time.Duration(cfg.Heartbeat.Interval))
		if srv, ok := node.Data.(*zfsrpc.Server); ok {
			srv.Receiver = m.CountReceived(srv.Receiver, roots)
		}
		obs = append(obs, m)
		serve = func(ctx context.Context) {
			log.Info("metrics listening", "address", cfg.Metrics.Listen)
			// A failover daemon keeps running without its metrics: the
			// "metrics absent" alert tells the admin, a dead daemon would not
			// serve at all.
			if err := m.Serve(ctx, cfg.Metrics.Listen); err != nil {
				log.Error("metrics server stopped; the daemon goes on without /metrics", "err", err)
			}
		}
	}
	node.Observer, svc.Observer = obs, obs
	return serve
}

// notifyReady sends READY=1 once the control socket answers and the node
// listens on every heartbeat path, so `systemctl start` returns when
// `zrepl-ha status` works, and a node that cannot listen never looks up.
func notifyReady(ctx context.Context, sd *systemd, socket string, paths int) {
	cl := failover.ControlClient{Path: socket}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := cl.Status(sctx)
		cancel()
		if err == nil && len(st.Paths) >= paths {
			sd.notify("READY=1")
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
