package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/failover"
)

var eventsT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// writeJournal records a failover two days ago, then a fence and a rejoin
// an hour ago, through the daemon's own Journal.
func writeJournal(t *testing.T, dir string) string {
	t.Helper()
	now := eventsT0.Add(-48 * time.Hour)
	j := &failover.Journal{Path: filepath.Join(dir, failover.JournalFile), Now: func() time.Time { return now }}
	j.Decision(failover.Decision{At: now, From: failover.Passive, To: failover.Promoting, Epoch: 4,
		Reason: "peer silent for 5.2s on every path and the tiebreaker answers: promote"})
	now = now.Add(1500 * time.Millisecond)
	j.Step("roll back tank/data to zrepl-ha_20260227T115900Z_000007", 800*time.Millisecond, nil)
	now = now.Add(200 * time.Millisecond)
	j.Step("bring up the VIP", 120*time.Millisecond, nil)
	j.Action(failover.Action{Kind: failover.ActServe, Epoch: 4}, 1700*time.Millisecond, nil)
	now = eventsT0.Add(-time.Hour)
	j.Decision(failover.Decision{At: now, From: failover.Active, To: failover.Fenced, Epoch: 4,
		Reason: "peer is active at epoch 5, newer than ours (4)"})
	now = now.Add(time.Second)
	j.Decision(failover.Decision{At: now, From: failover.Fenced, To: failover.Passive, Epoch: 5,
		Reason: "peer is active at epoch 5: rejoin as passive"})
	now = now.Add(3 * time.Second)
	j.Action(failover.Action{Kind: failover.ActRejoin, Epoch: 5}, 3*time.Second, errors.New("zfs set readonly=on tank/data: dataset is busy"))
	return j.Path
}

func eventsOpts(file string) eventsOptions {
	return eventsOptions{File: file, Now: func() time.Time { return eventsT0 }, Loc: time.UTC}
}

func TestRunEventsHuman(t *testing.T) {
	path := writeJournal(t, t.TempDir())
	var out bytes.Buffer
	if err := runEvents(context.Background(), &out, eventsOpts(path)); err != nil {
		t.Fatal(err)
	}
	want := `2026-02-27 12:00:00.000  promotion   passive -> promoting  epoch 4  (silence) peer silent for 5.2s on every path and the tiebreaker answers: promote
2026-02-27 12:00:01.700  serve       epoch 4  took 1.7s  ok
                         roll back tank/data to zrepl-ha_20260227T115900Z_000007  800ms
                         bring up the VIP  120ms
2026-03-01 11:00:00.000  fence       active -> fenced  epoch 4  (newer_epoch) peer is active at epoch 5, newer than ours (4)
2026-03-01 11:00:01.000  rejoin      fenced -> passive  epoch 5  (newer_epoch) peer is active at epoch 5: rejoin as passive
2026-03-01 11:00:04.000  rejoin      epoch 5  took 3s  FAILED: zfs set readonly=on tank/data: dataset is busy
`
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestRunEventsFilters(t *testing.T) {
	path := writeJournal(t, t.TempDir())
	tests := []struct {
		name      string
		since     time.Duration
		last      int
		wantFirst string
		wantN     int
	}{
		{"all", 0, 0, "promotion", 5},
		{"since 24h drops the old failover", 24 * time.Hour, 0, "fence", 3},
		{"last 2", 0, 2, "rejoin", 2},
		{"since and last", 24 * time.Hour, 1, "rejoin", 1},
		{"since 1m: nothing", time.Minute, 0, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := eventsOpts(path)
			o.JSON, o.Since, o.Last = true, tt.since, tt.last
			var out bytes.Buffer
			if err := runEvents(context.Background(), &out, o); err != nil {
				t.Fatal(err)
			}
			var got []failover.JournalEntry
			dec := json.NewDecoder(&out)
			for dec.More() {
				var e failover.JournalEntry
				if err := dec.Decode(&e); err != nil {
					t.Fatalf("--json output is not JSON lines: %v", err)
				}
				got = append(got, e)
			}
			if len(got) != tt.wantN || (tt.wantN > 0 && got[0].Event != tt.wantFirst) {
				t.Fatalf("got %d entries starting %+v; want %d starting with %s", len(got), got, tt.wantN, tt.wantFirst)
			}
		})
	}
}

func TestRunEventsEmptyAndTorn(t *testing.T) {
	dir := t.TempDir()
	var out, warn bytes.Buffer
	o := eventsOpts(filepath.Join(dir, failover.JournalFile))
	o.Warn = &warn
	if err := runEvents(context.Background(), &out, o); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "no events recorded in "+o.File) {
		t.Errorf("empty journal: %q", out.String())
	}
	if err := os.WriteFile(o.File, []byte("{\"kind\":\"decis\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := runEvents(context.Background(), &out, o); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(warn.String(), "skipped 1 malformed line") {
		t.Errorf("torn line not reported: %q", warn.String())
	}
}

// TestEventsCommand runs the CLI: the journal is found through the
// config's node.state_dir, and -n parses.
func TestEventsCommand(t *testing.T) {
	dir := t.TempDir()
	writeJournal(t, dir)
	cfg := filepath.Join(t.TempDir(), "zrepl-ha.yaml")
	writeConfig(t, cfg, "state_dir: /var/lib/zrepl-ha", "state_dir: "+dir)
	code, stdout, stderr := runMain(t, "-c", cfg, "events", "-n", "1")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if lines := strings.Split(strings.TrimSpace(stdout), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "FAILED: zfs set readonly=on") {
		t.Errorf("events -n 1:\n%s", stdout)
	}
	code, _, stderr = runMain(t, "-c", badConfig, "events")
	if code != exitUsage || !strings.Contains(stderr, "configuration rejected") {
		t.Errorf("bad config: exit %d, %q", code, stderr)
	}
	code, _, _ = runMain(t, "-c", cfg, "events", "extra")
	if code != exitUsage {
		t.Errorf("extra argument: exit %d", code)
	}
}
