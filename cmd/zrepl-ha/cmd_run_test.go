package main

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/failover"
	"github.com/zrepl-ha/zrepl-ha/internal/config"
	"github.com/zrepl-ha/zrepl-ha/internal/syncbuf"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

type countPinger struct{ n int }

func (c *countPinger) Pet() error { c.n++; return nil }

// The node's loop calls Pet every 100 ms; the device sees watchdog.interval.
func TestEveryPinger(t *testing.T) {
	c := &countPinger{}
	e := &everyPinger{p: c, every: 50 * time.Millisecond}
	for end := time.Now().Add(220 * time.Millisecond); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		e.Pet()
	}
	if c.n < 4 || c.n > 6 {
		t.Fatalf("%d pets in 220 ms at one per 50 ms", c.n)
	}
}

// A promotion or a handover runs with the replicator idle: no cadence and
// no receiver pruning beside the promotion's zfs commands.
func TestReplicatorModes(t *testing.T) {
	for s, want := range map[failover.State]replicatorMode{
		failover.Active: modeServe, failover.Standalone: modeServe,
		failover.Promoting: modeIdle, failover.Demoting: modeIdle,
		failover.Passive: modePrune, failover.Fenced: modePrune,
	} {
		if got := modeFor(s); got != want {
			t.Errorf("%v: mode %d, want %d", s, got, want)
		}
	}
	r := &replicator{}
	r.onChange(failover.Promoting, 1) // needs no config: nothing is scheduled
	if r.stopFn != nil || r.mode != modeIdle {
		t.Fatalf("promoting: stopFn set %v, mode %d", r.stopFn != nil, r.mode)
	}
}

// The handover's drain waits for a transfer only while it moves: one
// whose bytes stopped growing is cut after drainStill, one still moving
// is left to finish.
func TestDrainWaitsOnlyForAMovingTransfer(t *testing.T) {
	step := zfsrepl.Step{Target: "tank/data", Kind: zfsrepl.StepIncremental}
	drained := func(r *replicator) (time.Duration, bool) {
		cancelled := make(chan struct{})
		var once sync.Once
		cancel := func() { once.Do(func() { close(cancelled) }) }
		stop := func() { <-cancelled } // a cycle that ends when cancelled
		start := time.Now()
		done := make(chan struct{})
		go func() { r.drain(cancel, stop); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("drain still waits after 20 s")
		}
		select {
		case <-cancelled:
			return time.Since(start), true
		default:
			return time.Since(start), false
		}
	}

	// One late report of 1,396 bytes, then nothing: not moving, cut at the
	// first look.
	r := &replicator{}
	r.progress(zfsrepl.Progress{Step: step, Bytes: 1396})
	if took, cut := drained(r); !cut || took > time.Second {
		t.Fatalf("a transfer that does not move: cut %v after %s", cut, took)
	}
	// Moved, then stuck: cut once drainStill has passed since it moved.
	r = &replicator{}
	r.progress(zfsrepl.Progress{Step: step, Bytes: 64 << 10})
	r.progress(zfsrepl.Progress{Step: step, Bytes: 128 << 10})
	if took, cut := drained(r); !cut || took < drainStill-500*time.Millisecond || took > drainStill+time.Second {
		t.Fatalf("a transfer that stopped moving: cut %v after %s, want about %s", cut, took, drainStill)
	}

	// Moving for 1.5 s, then done: the drain waits for it and cancels
	// nothing that still runs.
	r = &replicator{}
	r.progress(zfsrepl.Progress{Step: step, Bytes: 64 << 10})
	r.progress(zfsrepl.Progress{Step: step, Bytes: 96 << 10})
	go func() {
		for i := 2; i <= 15; i++ {
			time.Sleep(100 * time.Millisecond)
			r.progress(zfsrepl.Progress{Step: step, Bytes: int64(i) * 64 << 10})
		}
		r.progress(zfsrepl.Progress{Step: step, Bytes: 16 * 64 << 10, Done: true})
	}()
	if took, _ := drained(r); took < 1400*time.Millisecond {
		t.Fatalf("the drain cut a moving transfer after %s", took)
	}

	if !moving([]failover.Transfer{{Moved: time.Now().Add(-time.Second)}}, time.Now()) ||
		moving([]failover.Transfer{{Moved: time.Now().Add(-drainStill)}}, time.Now()) ||
		moving([]failover.Transfer{{Started: time.Now()}}, time.Now()) || moving(nil, time.Now()) ||
		!moving([]failover.Transfer{{Bytes: drainWorth, Moved: time.Now().Add(-time.Minute)}}, time.Now()) {
		t.Fatal("moving: wrong verdict")
	}
}

// A node that has just promoted lets its clients reconnect before its
// first cycle; a node that starts serving otherwise (a daemon start)
// cycles at once. The config has no retention, so a cycle that runs
// fails at once with a retention error: that is how the test sees it ran.
func TestFirstCycleWaitsAfterAPromotion(t *testing.T) {
	run := func(states ...failover.State) string {
		var buf syncbuf.Buffer
		r := &replicator{cfg: &config.Config{Snapshots: config.Snapshots{Cadence: "@every 1s"}},
			log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
		for _, s := range states {
			r.onChange(s, 1)
		}
		time.Sleep(1500 * time.Millisecond)
		r.stop()
		return buf.String()
	}
	if out := run(failover.Promoting, failover.Active); !strings.Contains(out, "replication cycle skipped") || strings.Contains(out, "retention grid") {
		t.Errorf("after a promotion, the first second's cycle ran:\n%s", out)
	}
	if out := run(failover.Active); strings.Contains(out, "skipped") || !strings.Contains(out, "retention grid") {
		t.Errorf("at a start as active, the first cycle did not run:\n%s", out)
	}
}

func TestPeerLinkIP(t *testing.T) {
	for in, want := range map[string]string{
		"198.18.1.2:7701":          "198.18.1.2",
		"[::ffff:198.18.1.2]:7701": "198.18.1.2",
		"localhost:7701":           "127.0.0.1",
	} {
		got, err := peerLinkIP(in)
		if err != nil || got.String() != want {
			t.Errorf("peerLinkIP(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for in, msg := range map[string]string{
		"[2001:db8::2]:7701": "not IPv4",
		"198.18.1.2":         "missing port",
	} {
		if _, err := peerLinkIP(in); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("peerLinkIP(%q): %v, want an error with %q", in, err, msg)
		}
	}
}
