package main

import (
	"testing"
	"time"
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
