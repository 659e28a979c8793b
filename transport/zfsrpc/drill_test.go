package zfsrpc

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/transport"
)

type fakeDrill struct {
	calls atomic.Int32
	got   DrillSampleRequest
}

func (f *fakeDrill) DrillSample(ctx context.Context, req DrillSampleRequest) (DrillSampleResponse, error) {
	f.calls.Add(1)
	f.got = req
	out := DrillSampleResponse{GUID: req.GUID, Count: 3, CountComplete: true}
	for _, p := range req.Paths {
		out.Files = append(out.Files, DrillFile{Path: p, Size: 1, SHA256: "ab"})
	}
	return out, nil
}

func (f *fakeDrill) DrillInfo(ctx context.Context) (DrillInfo, error) {
	f.calls.Add(1)
	return DrillInfo{Node: "beta", ZFSVersion: "2.3.1-1", Pools: []DrillPool{{Name: "backup", Features: map[string]string{"feature@lz4_compress": "active"}}}}, nil
}

// drillSetup serves a fake drill handler over loopback (plaintext).
func drillSetup(t *testing.T, h DrillHandler) *Client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sec := transport.Security{Plaintext: true}
	ln, err := transport.Listen("127.0.0.1:0", "beta", "alpha", sec, nil)
	if err != nil {
		t.Fatal(err)
	}
	go ServeListener(ctx, ln, &Server{Receiver: &fakeReceiver{}, Roots: []string{"backup/data"}, Drill: h}, 5*time.Second, nil)
	return &Client{Addr: ln.Addr().String(), Local: "alpha", Peer: "beta", Sec: sec}
}

func TestDrillRoundTrip(t *testing.T) {
	f := &fakeDrill{}
	c := drillSetup(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req := DrillSampleRequest{Snapshot: "backup/data/a@s1", GUID: 42, Paths: []string{"x", "d/y"}, FileBytes: 1 << 20, MaxCount: 1000}
	resp, err := c.DrillSample(ctx, req)
	if err != nil || resp.GUID != 42 || len(resp.Files) != 2 || resp.Files[1].Path != "d/y" || !resp.CountComplete {
		t.Fatalf("%+v %v", resp, err)
	}
	if f.got.Snapshot != req.Snapshot || f.got.FileBytes != req.FileBytes {
		t.Fatalf("handler got %+v", f.got)
	}
	info, err := c.DrillInfo(ctx)
	if err != nil || info.Node != "beta" || info.Pools[0].Features["feature@lz4_compress"] != "active" {
		t.Fatalf("%+v %v", info, err)
	}
}

func TestDrillPathsRefused(t *testing.T) {
	for _, p := range []string{"", "/etc/passwd", "..", "../x", "a/../../x", "a/../b", "./a", "a//b", "a/", ".zfs", ".zfs/snapshot/other/f", `a\..\b`, "a\x00b", strings.Repeat("a", MaxDrillPathLen+1)} {
		if err := CheckDrillPath(p); err == nil {
			t.Errorf("path %q accepted", p)
		}
	}
	for _, p := range []string{"a", "a/b/c", ".hidden", "a/.zfs", "..a", "a..b/c"} {
		if err := CheckDrillPath(p); err != nil {
			t.Errorf("path %q refused: %v", p, err)
		}
	}
}

// The server checks every request itself: a client that skips its own
// checks (an old or hostile peer) is refused before the handler runs.
func TestDrillServerRefuses(t *testing.T) {
	f := &fakeDrill{}
	c := drillSetup(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ok := DrillSampleRequest{Snapshot: "backup/data@s1", Paths: []string{"f"}, FileBytes: 1024}
	many := make([]string, MaxDrillPaths+1)
	for i := range many {
		many[i] = "f"
	}
	cases := map[string]func(r *DrillSampleRequest){
		"outside the roots":     func(r *DrillSampleRequest) { r.Snapshot = "rpool/ROOT@s1" },
		"a root's sibling":      func(r *DrillSampleRequest) { r.Snapshot = "backup/data-evil@s1" },
		"not a snapshot":        func(r *DrillSampleRequest) { r.Snapshot = "backup/data" },
		"path traversal":        func(r *DrillSampleRequest) { r.Paths = []string{"../../etc/shadow"} },
		"absolute path":         func(r *DrillSampleRequest) { r.Paths = []string{"/etc/shadow"} },
		"into .zfs":             func(r *DrillSampleRequest) { r.Paths = []string{".zfs/snapshot/s0/f"} },
		"no file bytes":         func(r *DrillSampleRequest) { r.FileBytes = 0 },
		"too many file bytes":   func(r *DrillSampleRequest) { r.FileBytes = MaxDrillFileBytes + 1 },
		"too many paths":        func(r *DrillSampleRequest) { r.Paths = many },
		"too many bytes in all": func(r *DrillSampleRequest) { r.Paths = many[:MaxDrillPaths]; r.FileBytes = MaxDrillFileBytes },
		"count too large":       func(r *DrillSampleRequest) { r.MaxCount = MaxDrillCount + 1 },
		"negative count":        func(r *DrillSampleRequest) { r.MaxCount = -1 },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			req := ok
			req.Paths = append([]string(nil), ok.Paths...)
			mod(&req)
			// Only the server knows its roots; everything else both check.
			if err := CheckDrillSample(req); err == nil && !strings.Contains(name, "root") {
				t.Errorf("client side accepted %+v", req)
			}
			// Straight to the server, past the client's check.
			_, err := c.call(ctx, request{Method: "drill.sample", DrillSample: &req})
			if err == nil || !strings.Contains(err.Error(), "on the peer") {
				t.Errorf("server accepted it: %v", err)
			}
		})
	}
	if n := f.calls.Load(); n != 0 {
		t.Fatalf("the handler ran %d times for refused requests", n)
	}
	if _, err := c.call(ctx, request{Method: "drill.sample"}); err == nil {
		t.Error("drill.sample without a request accepted")
	}
	if _, err := c.DrillSample(ctx, ok); err != nil || f.calls.Load() != 1 {
		t.Fatalf("the valid request: %v", err)
	}
}

func TestDrillWithoutHandler(t *testing.T) {
	c := setup(t, &fakeReceiver{}) // a Server without Drill, like an older daemon
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.DrillInfo(ctx); err == nil || !strings.Contains(err.Error(), "does not answer drills") {
		t.Fatalf("want a refusal, got %v", err)
	}
}
