package scheduler

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseCadence(t *testing.T) {
	base := time.Date(2026, 3, 29, 0, 59, 58, 0, time.UTC)
	cases := []struct {
		spec string
		next time.Time
		bad  bool
	}{
		{"", base.Add(5 * time.Second), false},
		{"@every 1s", base.Add(time.Second), false},
		{"*/10 * * * * *", time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC), false},
		{"0 */5 * * * *", time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC), false},
		{"*/5 * * * *", time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC), false},
		{"@every 500ms", time.Time{}, true},
		{"every five seconds", time.Time{}, true},
		{"* * * * * * *", time.Time{}, true},
	}
	for _, c := range cases {
		s, err := ParseCadence(c.spec)
		if c.bad {
			if err == nil {
				t.Errorf("%q accepted", c.spec)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.spec, err)
			continue
		}
		if got := s.Next(base); !got.Equal(c.next) {
			t.Errorf("%q: next %v, want %v", c.spec, got, c.next)
		}
	}
}

// Ticks during a long cycle cause exactly one more cycle, right after it.
func TestCoalescerCoalescesOverruns(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	var runs atomic.Int32
	co := &coalescer{run: func() {
		runs.Add(1)
		started <- struct{}{}
		<-release
	}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); co.Run() }()
	<-started
	for i := 0; i < 50; i++ { // a storm of missed ticks
		co.Run()
	}
	release <- struct{}{} // first cycle ends; the coalesced one starts
	<-started
	release <- struct{}{}
	wg.Wait()
	if n := runs.Load(); n != 2 {
		t.Fatalf("%d cycles ran, want 2 (one, then one coalescing 50 ticks)", n)
	}
}

// A panicking cycle does not wedge the scheduler.
func TestCoalescerReleasesAfterPanic(t *testing.T) {
	var runs atomic.Int32
	co := &coalescer{run: func() {
		runs.Add(1)
		panic("boom")
	}}
	for i := 0; i < 3; i++ {
		func() {
			defer func() { recover() }()
			co.Run()
		}()
	}
	if runs.Load() != 3 {
		t.Fatalf("runs %d after panics, want 3", runs.Load())
	}
}

func TestScheduleRunsAndRecovers(t *testing.T) {
	var runs atomic.Int32
	stop, err := Schedule("@every 1s", func() {
		if runs.Add(1) == 1 {
			panic("first cycle panics")
		}
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for runs.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	if runs.Load() < 2 {
		t.Fatalf("only %d cycles in 10 s at 1 s cadence after a panic", runs.Load())
	}
}
