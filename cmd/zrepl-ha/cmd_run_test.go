package main

import (
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/failover"
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
