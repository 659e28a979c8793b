package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/failover"
)

// fakeDaemon is a failover.Controller with a fixed status; admin requests
// are recorded and answered with err.
type fakeDaemon struct {
	status failover.Status
	err    error
	mu     sync.Mutex
	calls  []string
}

func (f *fakeDaemon) Status() failover.Status { return f.status }

func (f *fakeDaemon) record(call string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	return f.err
}

func (f *fakeDaemon) Promote(_ context.Context, ignorePeer bool) error {
	return f.record(fmt.Sprintf("promote ignore_peer=%v", ignorePeer))
}
func (f *fakeDaemon) Demote(context.Context) error     { return f.record("demote") }
func (f *fakeDaemon) Switchover(context.Context) error { return f.record("switchover") }

func (f *fakeDaemon) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// serveFake runs the real control server for d on a temporary socket.
func serveFake(t *testing.T, d failover.Controller) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "control.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- failover.ServeControl(ctx, path, d, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeControl: %v", err)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("ServeControl returned early: %v", err)
		default:
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return path
		}
		time.Sleep(5 * time.Millisecond) // polling a condition
	}
	t.Fatal("control socket never answered")
	return ""
}
