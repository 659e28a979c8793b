package metrics

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/failover"
	"github.com/zrepl-ha/zrepl-ha/transport"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// sinkReceiver drains what it receives, as zfs recv would.
type sinkReceiver struct{ zfsrepl.Receiver }

func (sinkReceiver) Receive(_ context.Context, _ zfsrepl.ReceiveRequest, r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}

// serve starts m on 127.0.0.1:0 and returns its address; the server stops
// with the test and must return nil then.
func serve(t *testing.T, m *Metrics) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- m.ServeListener(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("ServeListener after cancel: %v", err)
		}
	})
	return ln.Addr().String()
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %s, %s\n%s", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	return string(body)
}

func TestScrape(t *testing.T) {
	clk := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	lastAck := clk.Now().Add(-2 * time.Second)
	// 90 s before the start; the clock moves 1.2 s more before the scrape,
	// and the lag is read at scrape time.
	consistent := zfsrepl.SnapshotName(clk.Now().Add(-90*time.Second), 3)
	var stats transport.StreamStats
	stats.BytesIn.Store(4000)
	stats.BytesOut.Store(1000)
	src := Source{
		Now: clk.Now,
		Node: func() failover.Status {
			return failover.Status{Role: "active", Epoch: 7,
				Paths: []failover.PathStatus{
					{Path: "link", Up: true, LastAck: lastAck},
					{Path: "public", Up: false},
				},
				Tiebreaker: &failover.ArbiterState{OK: false},
				Alerts:     []string{"public path to the peer is down", "tiebreaker unreachable"}}
		},
		Roots: func() []zfsrepl.RootStatus {
			return []zfsrepl.RootStatus{{
				Root:             zfsrepl.Root{Source: "tank/data", Target: "tank/data"},
				LatestConsistent: consistent,
				Lag:              5 * time.Second, LastCycle: clk.Now().Add(-10 * time.Second),
				LastError: "peer unreachable", BytesSent: 123456,
			}}
		},
		Compression: &stats,
	}
	m := New(src, 200*time.Millisecond)
	addr := serve(t, m)

	var o failover.Observer = m
	o.Heartbeat(failover.PathLink, time.Millisecond)
	clk.Add(time.Second) // five intervals: four heartbeats went unacknowledged
	o.Heartbeat(failover.PathLink, time.Millisecond)
	clk.Add(200 * time.Millisecond) // the next one, on time: nothing missed
	o.Heartbeat(failover.PathLink, 3*time.Millisecond)
	o.Heartbeat(failover.PathPublic, 20*time.Millisecond)
	o.Decision(failover.Decision{From: failover.Passive, To: failover.Promoting, Epoch: 7,
		Reason: "peer silent for 5.2s on every path and the tiebreaker answers: promote"})
	o.Decision(failover.Decision{From: failover.Promoting, To: failover.Active, Epoch: 7, Reason: "promotion finished"})
	o.Decision(failover.Decision{From: failover.Active, To: failover.Fenced, Epoch: 7, Reason: "resumed after a freeze of 4s: fence before serving anything"})
	o.Decision(failover.Decision{From: failover.Active, To: failover.Demoting, Epoch: 7, Reason: "admin: switchover"})
	o.Step("roll back tank/data to zrepl-ha_20260301T115800Z_000003", 2*time.Second, nil)
	o.Step("roll back tank/other to zrepl-ha_20260301T115800Z_000003", time.Second, nil)
	o.Step("bring up the VIP", 100*time.Millisecond, errors.New("arping: no such device"))
	o.Action(failover.Action{Kind: failover.ActServe, Epoch: 7}, 3*time.Second, nil)

	rcv := m.CountReceived(sinkReceiver{}, []string{"tank", "tank/data"})
	if err := rcv.Receive(context.Background(), zfsrepl.ReceiveRequest{Dataset: "tank/data/sub"}, bytes.NewReader(make([]byte, 1000))); err != nil {
		t.Fatal(err)
	}
	if err := rcv.Receive(context.Background(), zfsrepl.ReceiveRequest{Dataset: "elsewhere/x"}, bytes.NewReader(make([]byte, 10))); err != nil {
		t.Fatal(err)
	}

	body := scrape(t, addr)
	for _, want := range []string{
		`zrepl_ha_role{role="active"} 1`,
		`zrepl_ha_role{role="fenced"} 0`,
		`zrepl_ha_role{role="passive"} 0`,
		`zrepl_ha_epoch 7`,
		`zrepl_ha_path_up{path="link"} 1`,
		`zrepl_ha_path_up{path="public"} 0`,
		`zrepl_ha_heartbeat_last_ack_age_seconds{path="link"} 3.2`,
		`zrepl_ha_tiebreaker_up 0`,
		`zrepl_ha_automatic_failover_configured 1`,
		`zrepl_ha_alerts 2`,
		`zrepl_ha_replication_lag_seconds{root="tank/data"} 91.2`,
		`zrepl_ha_replication_sent_bytes_total{root="tank/data"} 123456`,
		`zrepl_ha_replication_last_cycle_failed{root="tank/data"} 1`,
		`zrepl_ha_replication_received_bytes_total{root="tank/data"} 1000`,
		`zrepl_ha_replication_received_bytes_total{root="other"} 10`,
		`zrepl_ha_transport_uncompressed_bytes_total 4000`,
		`zrepl_ha_transport_wire_bytes_total 1000`,
		`zrepl_ha_transport_compression_ratio 0.25`,
		`zrepl_ha_heartbeat_rtt_seconds_count{path="link"} 3`,
		`zrepl_ha_heartbeat_rtt_seconds_bucket{path="link",le="0.001"} 2`,
		`zrepl_ha_heartbeat_rtt_seconds_count{path="public"} 1`,
		`zrepl_ha_heartbeats_missed_total{path="link"} 4`,
		`zrepl_ha_decisions_total{from="passive",to="promoting"} 1`,
		`zrepl_ha_promotions_total{reason="silence"} 1`,
		`zrepl_ha_fences_total{reason="freeze"} 1`,
		`zrepl_ha_switchovers_total{reason="admin"} 1`,
		`zrepl_ha_step_duration_seconds_count{step="rollback"} 2`,
		`zrepl_ha_step_duration_seconds_sum{step="rollback"} 3`,
		`zrepl_ha_step_failures_total{step="vip_up"} 1`,
		`zrepl_ha_action_duration_seconds_count{action="serve",result="ok"} 1`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, want+"\n") && !strings.Contains(body, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
	for _, unwanted := range []string{
		`zrepl_ha_heartbeats_missed_total{path="public"}`, // one ack: no gap to judge
		`zrepl_ha_witness_lease_held`,                     // no witness configured
		`tank/data to`,                                    // step names must be classes
	} {
		if strings.Contains(body, unwanted) {
			t.Errorf("exposition has %q", unwanted)
		}
	}
	if t.Failed() {
		t.Logf("exposition:\n%s", body)
	}
}

// TestScrapeStarting: before the node's Init the status says "starting";
// the role series says so and the no-arbiter series stays absent, so the
// alert on it does not fire at every start.
func TestScrapeStarting(t *testing.T) {
	m := New(Source{Node: func() failover.Status { return failover.Status{Role: "starting"} }}, 0)
	body := scrape(t, serve(t, m))
	if !strings.Contains(body, `zrepl_ha_role{role="starting"} 1`) || !strings.Contains(body, `zrepl_ha_role{role="active"} 0`) {
		t.Errorf("role series while starting:\n%s", body)
	}
	if strings.Contains(body, "zrepl_ha_automatic_failover_configured") || strings.Contains(body, "zrepl_ha_replication_lag_seconds") {
		t.Errorf("series that need a running node are present:\n%s", body)
	}
}

func TestServeBadAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = New(Source{}, 0).Serve(context.Background(), ln.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "metrics.listen") {
		t.Fatalf("Serve on a used address: %v", err)
	}
}
