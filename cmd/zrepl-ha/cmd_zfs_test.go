package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

// fakeZFS answers the few calls the zfs commands make; any other call
// panics through the nil embedded interface, so a test cannot pass by
// accident on an unexpected path.
type fakeZFS struct {
	zfsrepl.ZFS
	versions []zfsrepl.Version
	token    string
	aborted  bool
	holds    []zfsrepl.Hold
	size     int64
	sendOpts zfsrepl.SendOptions
}

func (f *fakeZFS) Versions(ctx context.Context, ds string) ([]zfsrepl.Version, error) {
	return f.versions, nil
}
func (f *fakeZFS) ResumeToken(ctx context.Context, ds string) (string, error) { return f.token, nil }
func (f *fakeZFS) AbortResumable(ctx context.Context, ds string) error {
	f.aborted = true
	return nil
}
func (f *fakeZFS) Holds(ctx context.Context, s string) ([]zfsrepl.Hold, error) { return f.holds, nil }
func (f *fakeZFS) SendSize(ctx context.Context, o zfsrepl.SendOptions) (int64, error) {
	f.sendOpts = o
	return f.size, nil
}

func TestZFSVersionsTableAndJSON(t *testing.T) {
	f := &fakeZFS{versions: []zfsrepl.Version{{Name: "p/a@s1", Type: zfsrepl.Snapshot, GUID: 42, CreateTXG: 7, Creation: 0}}}
	var out bytes.Buffer
	if err := runZFSVersions(context.Background(), &out, f, "p/a", false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "p/a@s1") || !strings.Contains(out.String(), "42") || !strings.Contains(out.String(), "1970-01-01T00:00:00Z") {
		t.Fatalf("table: %s", out.String())
	}
	out.Reset()
	if err := runZFSVersions(context.Background(), &out, &fakeZFS{}, "p/a", true); err != nil || strings.TrimSpace(out.String()) != "[]" {
		t.Fatalf("empty JSON must be [], got %q %v", out.String(), err)
	}
	out.Reset()
	runZFSVersions(context.Background(), &out, f, "p/a", true)
	var vs []zfsrepl.Version
	if err := json.Unmarshal(out.Bytes(), &vs); err != nil || vs[0].GUID != 42 {
		t.Fatalf("json: %v %v", vs, err)
	}
}

func TestZFSAbortReceiveNeedsYes(t *testing.T) {
	f := &fakeZFS{token: "1-abc"}
	var out bytes.Buffer
	err := runZFSAbortReceive(context.Background(), &out, f, "p/a", false)
	var ue *usageError
	if !errors.As(err, &ue) || f.aborted || !strings.Contains(err.Error(), "--yes") {
		t.Fatalf("without --yes: %v aborted=%v", err, f.aborted)
	}
	if err := runZFSAbortReceive(context.Background(), &out, f, "p/a", true); err != nil || !f.aborted {
		t.Fatalf("with --yes: %v", err)
	}
	f = &fakeZFS{}
	out.Reset()
	if err := runZFSAbortReceive(context.Background(), &out, f, "p/a", true); err != nil || f.aborted || !strings.Contains(out.String(), "no partial receive") {
		t.Fatalf("nothing to abort: %v %q", err, out.String())
	}
}

func TestZFSResumeTokenNone(t *testing.T) {
	var out bytes.Buffer
	runZFSResumeToken(context.Background(), &out, &fakeZFS{}, "p/a")
	if out.String() != "none\n" {
		t.Fatalf("%q", out.String())
	}
}

func TestZFSEstimatePassesOptions(t *testing.T) {
	f := &fakeZFS{size: 3 << 20}
	var out bytes.Buffer
	o := zfsrepl.SendOptions{Snapshot: "p/a@s2", From: "@s1", Raw: true}
	if err := runZFSEstimate(context.Background(), &out, f, o); err != nil {
		t.Fatal(err)
	}
	if f.sendOpts != o || out.String() != "3145728\t3.0MiB\n" {
		t.Fatalf("%+v %q", f.sendOpts, out.String())
	}
}

func TestZFSHolds(t *testing.T) {
	var out bytes.Buffer
	runZFSHolds(context.Background(), &out, &fakeZFS{}, "p/a@s", false)
	if !strings.Contains(out.String(), "no holds") {
		t.Fatal(out.String())
	}
	out.Reset()
	runZFSHolds(context.Background(), &out, &fakeZFS{holds: []zfsrepl.Hold{{Snapshot: "p/a@s", Tag: "zrepl-ha:beta"}}}, "p/a@s", false)
	if !strings.Contains(out.String(), "zrepl-ha:beta") {
		t.Fatal(out.String())
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 1023: "1023B", 1024: "1.0KiB", 1536: "1.5KiB", 5 << 30: "5.0GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("%d: %s want %s", n, got, want)
		}
	}
}
