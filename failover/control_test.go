package failover

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeController records admin requests and answers with err.
type fakeController struct {
	mu     sync.Mutex
	status Status
	err    error
	calls  []string
}

func (f *fakeController) Status() Status { return f.status }

func (f *fakeController) record(call string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	return f.err
}

func (f *fakeController) Promote(_ context.Context, ignorePeer bool) error {
	return f.record(fmt.Sprintf("promote ignore_peer=%v", ignorePeer))
}
func (f *fakeController) Demote(context.Context) error     { return f.record("demote") }
func (f *fakeController) Switchover(context.Context) error { return f.record("switchover") }

// startControl serves c on a socket in a fresh directory and returns its
// path; the server stops at the end of the test.
func startControl(t *testing.T, c Controller) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "control.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeControl(ctx, path, c, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeControl: %v", err)
		}
	})
	waitForSocket(t, path, done)
	return path
}

// waitForSocket waits until the server accepts, or fails if it returned.
func waitForSocket(t *testing.T, path string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("ServeControl returned early: %v", err)
		default:
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, not waiting out a timer
	}
	t.Fatal("control socket never answered")
}

func TestControlRoundTrip(t *testing.T) {
	since := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	f := &fakeController{status: Status{
		Node: "alpha", Peer: "beta", Role: "active", Epoch: 7, Since: since,
		Paths:    []PathStatus{{Path: "link", Up: true, RTT: 400 * time.Microsecond}},
		PeerView: &PeerStatus{Role: "passive", Epoch: 7, Heard: since},
		Decision: DecisionJSON{At: since, From: "promoting", To: "active", Epoch: 7, Reason: "promotion finished"},
		Alerts:   []string{"public path down"},
	}}
	path := startControl(t, f)
	cl := ControlClient{Path: path}
	ctx := context.Background()

	st, err := cl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Node != "alpha" || st.Epoch != 7 || !st.Since.Equal(since) || len(st.Paths) != 1 ||
		st.Paths[0].RTT != 400*time.Microsecond || st.PeerView == nil || st.Decision.Reason != "promotion finished" {
		t.Fatalf("status did not survive the round trip: %+v", st)
	}
	if err := cl.Promote(ctx, true); err != nil {
		t.Fatal(err)
	}
	if err := cl.Promote(ctx, false); err != nil {
		t.Fatal(err)
	}
	if err := cl.Demote(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cl.Switchover(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"promote ignore_peer=true", "promote ignore_peer=false", "demote", "switchover"}
	if strings.Join(f.calls, ",") != strings.Join(want, ",") {
		t.Fatalf("calls %q, want %q", f.calls, want)
	}

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("socket directory mode %v, want 0700", di.Mode().Perm())
	}
}

func TestControlErrors(t *testing.T) {
	cases := []struct {
		name    string
		err     error
		refused bool
	}{
		{"refusal", errors.New("the peer is visibly active at epoch 7 (heartbeat 200ms ago); demote it first or pass --ignore-peer"), true},
		{"loop not running", ErrNotRunning, false},
		{"loop timed out", fmt.Errorf("waiting: %w", context.DeadlineExceeded), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := startControl(t, &fakeController{err: tc.err})
			err := ControlClient{Path: path}.Promote(context.Background(), false)
			if err == nil {
				t.Fatal("no error")
			}
			if err.Error() != tc.err.Error() {
				t.Errorf("error %q does not carry the daemon's message %q", err, tc.err)
			}
			if errors.Is(err, ErrRefused) != tc.refused {
				t.Errorf("errors.Is(ErrRefused) = %v, want %v", !tc.refused, tc.refused)
			}
		})
	}
}

func TestControlBadRequests(t *testing.T) {
	path := startControl(t, &fakeController{})
	cl := ControlClient{Path: path}
	var ce *ControlError
	err := cl.do(context.Background(), "POST", "/v1/failover?ignore_peer=maybe", nil)
	if !errors.As(err, &ce) || ce.HTTPStatus != 400 || !strings.Contains(ce.Msg, "ignore_peer") {
		t.Fatalf("bad ignore_peer: %v", err)
	}
	err = cl.do(context.Background(), "GET", "/v1/failover", nil)
	if !errors.As(err, &ce) || ce.HTTPStatus != 405 {
		t.Fatalf("GET on an admin endpoint: %v", err)
	}
	err = cl.do(context.Background(), "GET", "/v2/status", nil)
	if !errors.As(err, &ce) || ce.HTTPStatus != 404 || !strings.Contains(ce.Msg, "/v2/status") {
		t.Fatalf("unknown path: %v", err)
	}
}

func TestControlClientNoDaemon(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{"no file": filepath.Join(dir, "none.sock"), "stale socket": staleSocket(t, dir)}
	for name, path := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ControlClient{Path: path}.Status(context.Background())
			var nr *DaemonNotRunningError
			if !errors.As(err, &nr) {
				t.Fatalf("err %v (%T), want DaemonNotRunningError", err, err)
			}
			want := "no zrepl-ha daemon answers on " + path + ": is `zrepl-ha run` started?"
			if err.Error() != want {
				t.Fatalf("message %q, want %q", err, want)
			}
		})
	}
}

// staleSocket leaves a socket file that nothing listens on, as a crashed
// daemon does.
func staleSocket(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	return path
}

func TestServeControlReplacesStaleSocket(t *testing.T) {
	path := staleSocket(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeControl(ctx, path, &fakeController{status: Status{Node: "alpha"}}, nil) }()
	waitForSocket(t, path, done)
	st, err := ControlClient{Path: path}.Status(ctx)
	if err != nil || st.Node != "alpha" {
		t.Fatalf("status %+v, %v", st, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("socket left behind after shutdown: %v", err)
	}
}

func TestServeControlRefusesSecondDaemon(t *testing.T) {
	path := startControl(t, &fakeController{})
	err := ServeControl(context.Background(), path, &fakeController{}, nil)
	if err == nil || !strings.Contains(err.Error(), "another zrepl-ha daemon answers on "+path) {
		t.Fatalf("second daemon: %v", err)
	}
	// The first one still answers.
	if _, err := (ControlClient{Path: path}).Status(context.Background()); err != nil {
		t.Fatalf("first daemon lost its socket: %v", err)
	}
}

func TestServeControlRefusesNonSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.sock")
	if err := os.WriteFile(path, []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := ServeControl(context.Background(), path, &fakeController{}, nil)
	if err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Fatalf("err %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the file was removed: %v", err)
	}
}
