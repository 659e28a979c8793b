//go:build platform

package vip

import (
	"context"
	"testing"
	"time"
)

// WatchCarrier sees a veth lose its carrier when its peer end goes down
// (as a guest NIC does when its cable is pulled) and get it back, and
// ignores other interfaces.
func TestPlatformWatchCarrier(t *testing.T) {
	ns := newNS(t, "vk")
	sh(t, "ip", "-n", ns, "link", "add", "pub0", "type", "veth", "peer", "name", "sw0")
	sh(t, "ip", "-n", ns, "link", "add", "other0", "type", "veth", "peer", "name", "other1")
	for _, d := range []string{"pub0", "sw0", "other0", "other1"} {
		sh(t, "ip", "-n", ns, "link", "set", d, "up")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reports := make(chan bool, 16)
	errc := make(chan error, 1)
	go func() {
		errc <- inNS(ns, func() error { return WatchCarrier(ctx, "pub0", func(up bool) { reports <- up }) })
	}()
	next := func(want bool, what string) {
		t.Helper()
		select {
		case got := <-reports:
			if got != want {
				t.Fatalf("%s: carrier reported %v, want %v", what, got, want)
			}
		case err := <-errc:
			t.Fatalf("%s: the watcher ended: %v", what, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no report in 10 s", what)
		}
	}
	next(true, "at the start")
	sh(t, "ip", "-n", ns, "link", "set", "other1", "down") // not ours
	sh(t, "ip", "-n", ns, "link", "set", "sw0", "down")    // the cable goes
	next(false, "peer end down")
	sh(t, "ip", "-n", ns, "link", "set", "sw0", "up")
	next(true, "peer end up")
	sh(t, "ip", "-n", ns, "link", "set", "pub0", "down") // an admin downs it
	next(false, "own end down")
	select {
	case up := <-reports:
		t.Fatalf("extra report %v", up)
	case <-time.After(300 * time.Millisecond):
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("the watcher: %v", err)
	}
	if err := WatchCarrier(ctx, "bad name!", func(bool) {}); err == nil {
		t.Error("a bad interface name was accepted")
	}
}
