package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/failover"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenNow is the clock of the golden status: every time in goldenStatus
// is a fixed offset before it.
var goldenNow = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

func goldenStatus() failover.Status {
	return failover.Status{
		Node: "alpha", Peer: "beta", Role: "active", Epoch: 8,
		Since:  goldenNow.Add(-2 * time.Hour),
		Uptime: 26*time.Hour + 3*time.Minute + 4*time.Second + 500*time.Millisecond,
		Paths: []failover.PathStatus{
			{Path: "link", Up: true, RTT: 412 * time.Microsecond, RTTP99: 1250 * time.Microsecond, LastAck: goldenNow.Add(-180 * time.Millisecond)},
			{Path: "public", Up: false, RTT: 2 * time.Millisecond, RTTP99: 9500 * time.Microsecond, LastAck: goldenNow.Add(-12400 * time.Millisecond)},
		},
		Tiebreaker: &failover.ArbiterState{OK: true},
		PeerView: &failover.PeerStatus{Role: "passive", Epoch: 8, PublicOK: false,
			Newest: "tank/data@zrepl-ha_20300601_115500", Heard: goldenNow.Add(-180 * time.Millisecond)},
		Decision: failover.DecisionJSON{At: goldenNow.Add(-2 * time.Hour), From: "promoting", To: "active", Epoch: 8,
			Reason: "promotion finished"},
		Busy:   "replicate",
		Alerts: []string{"public path down: replication uses the heartbeat link", "peer's public network is down"},
		Roots: []failover.RootStatus{
			{Source: "tank/data", Target: "tank/data", LatestSnapshot: "zrepl-ha_20300601T115955Z_000120",
				LatestConsistent: "zrepl-ha_20300601T115950Z_000119", Lag: 7 * time.Second, LastCycle: goldenNow.Add(-3 * time.Second), BytesSent: 3 << 30,
				Pending: 96 << 20, Throughput: 48 << 20},
			{Source: "tank/vm", Target: "backup/vm", Lag: -1, LastError: "listing receiver root backup/vm: connection refused"},
			{Source: "tank/home", Target: "tank/home", Lag: 40 * time.Second, LatestConsistent: "zrepl-ha_20300601T115920Z_000113",
				LastCycle: goldenNow.Add(-time.Second), PeerNotReady: "listing receiver root tank/home: the peer is not ready for replication yet: on the peer: this node is rejoining"},
		},
		Rescues: []string{"tank/zrepl-ha-rescue/tank_data_7_20300520T101500Z"},
	}
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -run %s -update rewrites it)\n--- got\n%s--- want\n%s", path, t.Name(), got, want)
	}
}

func TestStatusGolden(t *testing.T) {
	sock := serveFake(t, &fakeDaemon{status: goldenStatus()})
	for _, tc := range []struct {
		golden string
		json   bool
	}{{"status.golden", false}, {"status.json.golden", true}} {
		t.Run(tc.golden, func(t *testing.T) {
			var out bytes.Buffer
			opts := statusOptions{controlOptions: controlOptions{Socket: sock}, JSON: tc.json,
				Now: func() time.Time { return goldenNow }, Loc: time.UTC}
			if err := runStatus(context.Background(), &out, opts); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, tc.golden, out.Bytes())
		})
	}
}

// TestStatusStarting: a daemon that has not started its loop has almost
// nothing to say; the table must still render.
func TestStatusStarting(t *testing.T) {
	got := renderStatus(failover.Status{Node: "alpha", Role: "starting"}, goldenNow, time.UTC)
	for _, want := range []string{"role        starting, epoch 0", "paths       none", "tiebreaker  not configured",
		"peer        not heard from since start", "decision    none yet", "alerts      none"} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
}

func TestStatusNoDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "control.sock")
	code, stdout, stderr := runMain(t, "status", "--socket", sock)
	want := "zrepl-ha: no zrepl-ha daemon answers on " + sock + ": is `zrepl-ha run` started?\n"
	if code != exitFailure || stdout != "" || stderr != want {
		t.Fatalf("code %d stdout %q stderr %q, want 1 and %q", code, stdout, stderr, want)
	}
}

// TestStatusSocketFromConfig: without --socket the path is the config's
// node.control_socket; a missing config is a config error.
func TestStatusSocketFromConfig(t *testing.T) {
	code, _, stderr := runMain(t, "-c", exampleConfig, "status")
	if code != exitFailure || !strings.Contains(stderr, "no zrepl-ha daemon answers on /") {
		t.Fatalf("code %d stderr %q", code, stderr)
	}
	code, _, stderr = runMain(t, "-c", filepath.Join(t.TempDir(), "none.yaml"), "status")
	if code != exitUsage {
		t.Fatalf("missing config: code %d stderr %q", code, stderr)
	}
}

func TestTransferLine(t *testing.T) {
	tr := failover.Transfer{Dataset: "tank/data/vm", Kind: "full", Bytes: 256 << 20, Total: 1 << 30,
		Started: goldenNow.Add(-8 * time.Second), Rate: 32 << 20}
	got := transferLine(tr, goldenNow)
	want := "tank/data/vm (full): 256.0MiB of 1.0GiB (25%), 32.0MiB/s, ETA 24s, for 8s"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	tr.Total = 0
	if got := transferLine(tr, goldenNow); strings.Contains(got, "ETA") {
		t.Fatalf("an ETA without an estimate: %q", got)
	}
}

// Without a terminal, --watch prints the transfers in flight as plain
// lines at every interval, and stops when its context ends.
func TestStatusWatchPlainLines(t *testing.T) {
	st := goldenStatus()
	st.Transfers = []failover.Transfer{{Dataset: "tank/data", Kind: "incremental", Bytes: 1 << 20, Total: 4 << 20,
		Started: goldenNow.Add(-2 * time.Second), Rate: 512 << 10}}
	sock := serveFake(t, &fakeDaemon{status: st})
	ctx, cancel := context.WithTimeout(context.Background(), 350*time.Millisecond)
	defer cancel()
	var out bytes.Buffer
	opts := statusOptions{controlOptions: controlOptions{Socket: sock}, Now: func() time.Time { return goldenNow }, Loc: time.UTC}
	if err := runStatusWatch(ctx, &out, opts, false, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "2030-06-01T12:00:00Z tank/data (incremental): 1.0MiB of 4.0MiB (25%)") {
		t.Fatalf("output:\n%s", out.String())
	}
	if strings.Contains(out.String(), "\033[") {
		t.Fatal("terminal escapes without a terminal")
	}
}

// TestStatusRouting: each side of a VIP routed through the peer says so.
func TestStatusRouting(t *testing.T) {
	for routing, want := range map[string]string{
		failover.RoutingViaPeer: "routing     serving through the peer over the heartbeat link",
		failover.RoutingForPeer: "routing     routing the peer's VIP to it over the heartbeat link",
	} {
		got := renderStatus(failover.Status{Node: "alpha", Role: "active", Routing: routing}, goldenNow, time.UTC)
		if !strings.Contains(got, want) {
			t.Errorf("routing %q: missing %q in\n%s", routing, want, got)
		}
	}
	if got := renderStatus(failover.Status{Node: "alpha", Role: "active"}, goldenNow, time.UTC); strings.Contains(got, "routing") {
		t.Errorf("a node that does not route shows a routing line:\n%s", got)
	}
}
