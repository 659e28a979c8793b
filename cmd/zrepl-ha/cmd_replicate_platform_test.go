//go:build platform

package main

// replicate --once against real OpenZFS in the lab VM: a local copy of a
// dataset tree into another part of the same pool, through the real command
// tree, then incrementals, then nothing to do.

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

func zfsOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("zfs", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("zfs %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// writeRandom writes n random files of 128 KiB into ds's mountpoint.
func writeRandom(t *testing.T, ds, prefix string, n int) map[string][]byte {
	t.Helper()
	mp := zfsOut(t, "get", "-H", "-o", "value", "mountpoint", ds)
	files := map[string][]byte{}
	for i := range n {
		b := make([]byte, 128<<10)
		rand.Read(b)
		name := fmt.Sprintf("%s-%d", prefix, i)
		if err := os.WriteFile(filepath.Join(mp, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		files[name] = b
	}
	if out, err := exec.Command("sync").CombinedOutput(); err != nil {
		t.Fatalf("sync: %v %s", err, out)
	}
	return files
}

func TestPlatformCLIReplicate(t *testing.T) {
	t.Parallel()
	p := labPool(t)
	src, dst := p+"/src", p+"/dst"
	zfsOut(t, "create", src)
	zfsOut(t, "create", src+"/child")
	writeRandom(t, src, "a", 4)
	writeRandom(t, src+"/child", "a", 4)
	args := []string{"replicate", "--once", "--from", src, "--to", dst, "--progress", "never"}

	// Without --snapshot and with no zrepl-ha snapshot yet: a clear no.
	out, err := runCLI(t, args...)
	if exitCode(err) != exitFailure || !strings.Contains(err.Error(), "no zrepl-ha snapshot to replicate; add --snapshot") {
		t.Fatalf("no snapshot yet: exit code %d, err %v\n%s", exitCode(err), err, out)
	}

	// First run: a snapshot, then full sends of both datasets.
	out, err = runCLI(t, append(args, "--snapshot")...)
	if err != nil {
		t.Fatalf("first run: %v\n%s", err, out)
	}
	t.Logf("first run:\n%s", out)
	for _, want := range []string{"snapshot " + src + "@zrepl-ha_", "full  " + src + " -> " + dst, "full  " + src + "/child -> " + dst + "/child",
		": done, ", "latest consistent snapshot: " + dst + "@zrepl-ha_"} {
		if !strings.Contains(out, want) {
			t.Errorf("first run output lacks %q:\n%s", want, out)
		}
	}
	for _, ds := range []string{dst, dst + "/child"} {
		if ro := zfsOut(t, "get", "-H", "-o", "value", "readonly", ds); ro != "on" {
			t.Errorf("%s readonly=%s, want on", ds, ro)
		}
	}

	// Second run, after new data: incrementals only. runReplicate directly,
	// for the report, and with progress bars (on a buffer).
	more := writeRandom(t, src+"/child", "b", 4)
	var buf, bars bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opts := replicateOptions{Once: true, From: src, To: dst, Snapshot: true, Initial: "newest",
		MaxStreamSize: "4GiB", PeerName: defaultPeerName, Progress: progressAlways}
	rep, err := runReplicate(ctx, &buf, &bars, opts, zfsrepl.NewExec(zfsrepl.Binaries{}, nil))
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, buf.String())
	}
	// One bar per step, each ending full; descriptions are cut to the
	// 80 columns assumed when the output is not a terminal.
	if b := bars.String(); strings.Count(b, "\n") != 2 || strings.Count(b, "100%") != 2 || !strings.Contains(b, "dst/child ") {
		t.Errorf("second run's progress bars: %q", b)
	}
	if rep.FullSends() != 0 || len(rep.Steps) != 2 {
		t.Fatalf("second run: %d steps, %d full, want 2 incrementals:\n%s", len(rep.Steps), rep.FullSends(), buf.String())
	}
	t.Logf("second run:\n%s", buf.String())
	for _, s := range rep.Steps {
		if s.Step.Kind != zfsrepl.StepIncremental || s.Err != nil {
			t.Errorf("second run step %s: err %v", s.Step, s.Err)
		}
	}
	if rep.LatestConsistent == "" || rep.LatestConsistent != rep.LatestSnapshot || rep.Lag < 0 {
		t.Errorf("latest consistent %q, newest %q, lag %v", rep.LatestConsistent, rep.LatestSnapshot, rep.Lag)
	}
	if strings.Contains(buf.String(), "full ") || !strings.Contains(buf.String(), "incremental  "+src+"/child -> "+dst+"/child") {
		t.Errorf("second run output:\n%s", buf.String())
	}

	// Third run, no new snapshot: nothing to do.
	out, err = runCLI(t, args...)
	if err != nil || !strings.Contains(out, "nothing to do: "+dst+" is up to date with "+src+"@"+rep.LatestSnapshot) {
		t.Fatalf("third run: %v\n%s", err, out)
	}
	t.Logf("third run:\n%s", out)

	// What the runs left: the receiver holds the newest snapshot, the source
	// has the cursor bookmark, and the new files arrived.
	if h := zfsOut(t, "holds", "-H", dst+"/child@"+rep.LatestSnapshot); !strings.Contains(h, zfsrepl.HoldTag(defaultPeerName)) {
		t.Errorf("holds on the target: %q", h)
	}
	cursor := src + "/child#" + zfsrepl.CursorName(defaultPeerName, rep.LatestSnapshot)
	if bm := zfsOut(t, "list", "-H", "-t", "bookmark", "-o", "name", "-r", src); !strings.Contains(bm, cursor) {
		t.Errorf("bookmarks on the source lack %s:\n%s", cursor, bm)
	}
	zfsOut(t, "mount", dst+"/child") // canmount=noauto: never mounted by itself
	mp := zfsOut(t, "get", "-H", "-o", "value", "mountpoint", dst+"/child")
	for name, data := range more {
		got, err := os.ReadFile(filepath.Join(mp, name))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s/%s on the target: %v (same: %v)", mp, name, err, bytes.Equal(got, data))
		}
	}
}
