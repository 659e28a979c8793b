package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

func TestReplicateFlagErrors(t *testing.T) {
	base := []string{"replicate", "--once", "--from", "tank/data", "--to", "backup/data"}
	with := func(extra ...string) []string { return append(append([]string{}, base...), extra...) }
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no --once", []string{"replicate", "--from", "tank/data", "--to", "backup/data"}, "needs --once: it replicates once and exits. Continuous replication to the peer is the daemon's job (zrepl-ha run)"},
		{"no --from", []string{"replicate", "--once", "--to", "backup/data"}, "needs both --from SOURCE_ROOT and --to TARGET_ROOT"},
		{"no --to", []string{"replicate", "--once", "--from", "tank/data"}, "needs both --from SOURCE_ROOT and --to TARGET_ROOT"},
		{"bad size", with("--max-stream-size", "4XB"), `--max-stream-size must be a size like`},
		{"tiny size", with("--max-stream-size", "64K"), "at least 1MiB"},
		{"bad initial", with("--initial", "oldest"), `--initial must be newest or all, got "oldest"`},
		{"bad progress", with("--progress", "sometimes"), "--progress must be auto, always or never"},
		{"bad peer name", with("--peer-name", "Backup_1"), "--peer-name must be 1 to 63 characters"},
		{"empty peer name", with("--peer-name", ""), "--peer-name must be"},
		{"same roots", []string{"replicate", "--once", "--from", "tank/data", "--to", "tank/data"}, "are the same dataset"},
		{"target inside source", []string{"replicate", "--once", "--from", "tank", "--to", "tank/backup"}, "would be replicated into itself"},
		{"source inside target", []string{"replicate", "--once", "--from", "tank/a/b", "--to", "tank/a"}, "is inside --to"},
		{"snapshot as source", []string{"replicate", "--once", "--from", "tank/data@s1", "--to", "backup/data"}, "invalid dataset name"},
		{"mountpoint as target", []string{"replicate", "--once", "--from", "tank/data", "--to", "/backup"}, "not a mountpoint"},
		{"positional argument", with("extra"), "takes no arguments"},
		{"unknown flag", with("--continuous"), "invalid usage"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runMain(t, tc.args...)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d", code, exitUsage)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, errOut)
			}
			if out != "" {
				t.Errorf("stdout not empty: %q", out)
			}
		})
	}
}

// TestReplicateOptionsCheck: valid flags parse into the engine's settings.
func TestReplicateOptionsCheck(t *testing.T) {
	s, err := replicateOptions{Once: true, From: "tank/data", To: "backup/data", Initial: "all",
		MaxStreamSize: "500M", PeerName: "backup-1", Progress: "never"}.check()
	if err != nil {
		t.Fatal(err)
	}
	if s.root != (zfsrepl.Root{Source: "tank/data", Target: "backup/data"}) || !s.plan.InitialAll ||
		s.maxStream != 500<<20 || s.peer != "backup-1" || s.progress != progressNever {
		t.Fatalf("settings %+v", s)
	}
	// The flag defaults are valid.
	cmd := newReplicateCommand()
	def := func(name string) string {
		for _, f := range cmd.Flags {
			if f.Names()[0] == name {
				return fmt.Sprint(f.Get())
			}
		}
		t.Fatalf("no flag %s", name)
		return ""
	}
	s, err = replicateOptions{Once: true, From: "tank/data", To: "backup/data", Initial: def("initial"),
		MaxStreamSize: def("max-stream-size"), PeerName: def("peer-name"), Progress: def("progress")}.check()
	if err != nil || s.maxStream != 4<<30 || s.plan.InitialAll || s.peer != "local" || s.progress != progressAuto {
		t.Fatalf("defaults: %+v, %v", s, err)
	}
}

// replFakeZFS is just enough ZFS for the engine to replicate one dataset with no
// children: it "sends" a few hundred KiB and "receives" by creating the
// target with the sent snapshot's guid. Anything else panics (nil
// embedded interface): the command must not call it.
type replFakeZFS struct {
	zfsrepl.ZFS
	mu      sync.Mutex
	src     zfsrepl.TreeDataset
	dst     *zfsrepl.TreeDataset
	sent    *zfsrepl.Version
	recvErr error
}

var errFakeNotFound = &zfsrepl.Error{Cmd: "zfs list", Stderr: "dataset does not exist", Kind: zfsrepl.ErrDatasetNotFound}

func newReplFakeZFS(src string, snaps ...string) *replFakeZFS {
	f := &replFakeZFS{src: zfsrepl.TreeDataset{Name: src, Type: zfsrepl.Filesystem}}
	for _, s := range snaps {
		f.addSnapshot(s)
	}
	return f
}

func (f *replFakeZFS) addSnapshot(short string) {
	n := uint64(len(f.src.Versions) + 1)
	f.src.Versions = append(f.src.Versions, zfsrepl.Version{Name: f.src.Name + "@" + short, Type: zfsrepl.Snapshot, GUID: 1000 + n, CreateTXG: 10 * n})
}

func (f *replFakeZFS) Versions(_ context.Context, ds string) ([]zfsrepl.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ds != f.src.Name {
		return nil, errFakeNotFound
	}
	return append([]zfsrepl.Version(nil), f.src.Versions...), nil
}

func (f *replFakeZFS) Tree(_ context.Context, root string) ([]zfsrepl.TreeDataset, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case root == f.src.Name:
		return []zfsrepl.TreeDataset{f.src}, nil
	case f.dst != nil && root == f.dst.Name:
		return []zfsrepl.TreeDataset{*f.dst}, nil
	}
	return nil, errFakeNotFound
}

func (f *replFakeZFS) SendSize(context.Context, zfsrepl.SendOptions) (int64, error) {
	return 256 << 10, nil
}

func (f *replFakeZFS) Send(_ context.Context, o zfsrepl.SendOptions, w io.Writer) error {
	f.mu.Lock()
	for _, v := range f.src.Versions {
		if v.Name == o.Snapshot {
			f.sent = &v
		}
	}
	f.mu.Unlock()
	chunk := make([]byte, 64<<10)
	for range 4 {
		if _, err := w.Write(chunk); err != nil {
			return err
		}
	}
	return nil
}

func (f *replFakeZFS) Recv(_ context.Context, target string, _ zfsrepl.RecvOptions, r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	if f.recvErr != nil {
		return f.recvErr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dst == nil {
		f.dst = &zfsrepl.TreeDataset{Name: target, Type: zfsrepl.Filesystem}
	}
	v := *f.sent
	_, _, short, _ := zfsrepl.SplitVersion(v.Name)
	v.Name = target + "@" + short
	f.dst.Versions = append(f.dst.Versions, v)
	return nil
}

func (f *replFakeZFS) Snapshot(_ context.Context, root, short string, recursive bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if root != f.src.Name || !recursive {
		return fmt.Errorf("unexpected snapshot %s@%s (recursive %v)", root, short, recursive)
	}
	f.addSnapshot(short)
	return nil
}

func (f *replFakeZFS) Hold(context.Context, string, ...string) error    { return nil }
func (f *replFakeZFS) Release(context.Context, string, ...string) error { return nil }
func (f *replFakeZFS) Bookmark(context.Context, string, string) error   { return nil }

func replicateOpts(extra func(*replicateOptions)) replicateOptions {
	o := replicateOptions{Once: true, From: "tank/data", To: "backup/data", Initial: "newest",
		MaxStreamSize: "4GiB", PeerName: "local", Progress: progressNever}
	if extra != nil {
		extra(&o)
	}
	return o
}

// TestRunReplicateFake drives runReplicate end to end on a fake ZFS: a
// snapshot, a full send, then nothing to do.
func TestRunReplicateFake(t *testing.T) {
	z := newReplFakeZFS("tank/data")
	ctx := context.Background()
	var out, errOut bytes.Buffer
	rep, err := runReplicate(ctx, &out, &errOut, replicateOpts(func(o *replicateOptions) { o.Snapshot = true }), z)
	if err != nil {
		t.Fatalf("first run: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{
		"snapshot tank/data@zrepl-ha_", // taken
		"full tank/data@zrepl-ha_",     // the plain progress line of the step
		": done, 256.0KiB\n",
		"replicated tank/data -> backup/data: 256.0KiB in 1 step",
		"full  tank/data -> backup/data  @zrepl-ha_",
		"latest consistent snapshot: backup/data@zrepl-ha_",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if rep.FullSends() != 1 || errOut.Len() != 0 {
		t.Errorf("full sends %d, stderr %q", rep.FullSends(), errOut.String())
	}

	out.Reset()
	rep, err = runReplicate(ctx, &out, &errOut, replicateOpts(nil), z)
	if err != nil || len(rep.Steps) != 0 || !strings.HasPrefix(out.String(), "nothing to do: backup/data is up to date with tank/data@zrepl-ha_") {
		t.Fatalf("second run: %v, %d steps:\n%s", err, len(rep.Steps), out.String())
	}
}

func TestRunReplicateNoSnapshot(t *testing.T) {
	z := newReplFakeZFS("tank/data", "manual") // not a zrepl-ha snapshot
	var out bytes.Buffer
	_, err := runReplicate(context.Background(), &out, &out, replicateOpts(nil), z)
	if err == nil || !strings.Contains(err.Error(), "tank/data has no zrepl-ha snapshot to replicate; add --snapshot") {
		t.Fatalf("err = %v", err)
	}
	if code := exitCode(err); code != exitFailure {
		t.Fatalf("exit code %d, want %d", code, exitFailure)
	}
	// A missing source is "not found".
	_, err = runReplicate(context.Background(), &out, &out, replicateOpts(func(o *replicateOptions) { o.From = "tank/missing" }), z)
	if code := exitCode(err); code != exitNotFound {
		t.Fatalf("missing source: exit code %d (%v)", code, err)
	}
}

func TestRunReplicateInterrupted(t *testing.T) {
	z := newReplFakeZFS("tank/data", "zrepl-ha_20261126T120000Z_000001")
	z.recvErr = &zfsrepl.ResumableError{Dataset: "backup/data", Token: "1-abcdef", Err: errors.New("signal: killed")}
	var out bytes.Buffer
	_, err := runReplicate(context.Background(), &out, &out, replicateOpts(nil), z)
	var re *zfsrepl.ResumableError
	if !errors.As(err, &re) || exitCode(err) != exitZFS {
		t.Fatalf("err = %v (exit code %d), want a *ResumableError with exit code %d", err, exitCode(err), exitZFS)
	}
	text := out.String()
	for _, want := range []string{"interrupted", "full  tank/data -> backup/data", "run the same command again to resume it"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
}

func TestReplicateSummary(t *testing.T) {
	root := zfsrepl.Root{Source: "tank/data", Target: "backup/data"}
	full := zfsrepl.Step{Kind: zfsrepl.StepFull, Source: "tank/data", Target: "backup/data", To: "zrepl-ha_20261126T120000Z_000001",
		Send: zfsrepl.SendOptions{Snapshot: "tank/data@zrepl-ha_20261126T120000Z_000001"}}
	incr := zfsrepl.Step{Kind: zfsrepl.StepIncremental, Source: "tank/data/b", Target: "backup/data/b", To: "zrepl-ha_20261126T120000Z_000001",
		Send: zfsrepl.SendOptions{From: "tank/data/b#zrepl-ha_cursor_local_20261126T110000Z_000000", Snapshot: "tank/data/b@zrepl-ha_20261126T120000Z_000001"}}
	conflict := &zfsrepl.ConflictError{Dataset: "backup/data/c", Reason: "modified on the receiver since its most recent snapshot"}
	rep := &zfsrepl.Report{
		Root: root,
		Steps: []zfsrepl.StepResult{
			{Step: full, Bytes: 3 << 30, Duration: 12 * time.Second},
			{Step: incr, Bytes: 10 << 20, Duration: 1500 * time.Millisecond},
			{Step: zfsrepl.Step{Kind: zfsrepl.StepIncremental, Source: "tank/data/c", Target: "backup/data/c",
				Send: zfsrepl.SendOptions{From: "tank/data/c@a", Snapshot: "tank/data/c@b", Intermediates: true}}, Bytes: 4096, Duration: 20 * time.Millisecond, Err: conflict},
		},
		Conflicts:        []*zfsrepl.ConflictError{conflict, {Dataset: "backup/data/d", Reason: "the receiver diverged"}},
		OnlyOnReceiver:   []string{"backup/data/old"},
		Waiting:          []string{"tank/data/new"},
		LatestSnapshot:   "zrepl-ha_20261126T120000Z_000001",
		LatestConsistent: "zrepl-ha_20261126T110000Z_000000",
		Lag:              time.Hour + 2*time.Second + 300*time.Millisecond,
		BytesSent:        3<<30 + 10<<20 + 4096,
	}
	var out bytes.Buffer
	err := writeReplicateSummary(&out, rep)
	want := `replicated tank/data -> backup/data: 3.0GiB in 3 steps
  KIND         DATASET                       SNAPSHOT                                                                           BYTES    TIME  RATE        RESULT
  full         tank/data -> backup/data      @zrepl-ha_20261126T120000Z_000001                                                  3.0GiB   12s   256.0MiB/s  ok
  incremental  tank/data/b -> backup/data/b  #zrepl-ha_cursor_local_20261126T110000Z_000000..@zrepl-ha_20261126T120000Z_000001  10.0MiB  1.5s  6.7MiB/s    ok
  incremental  tank/data/c -> backup/data/c  @a..@b                                                                             4.0KiB   20ms  200.0KiB/s  conflict
2 conflicts (nothing was destroyed; the other datasets were replicated):
  backup/data/c: modified on the receiver since its most recent snapshot
  backup/data/d: the receiver diverged
only on the target (gone from the source; kept, never destroyed):
  backup/data/old
waiting for their first zrepl-ha snapshot (--snapshot takes one):
  tank/data/new
latest consistent snapshot: backup/data@zrepl-ha_20261126T110000Z_000000 (lag 1h0m2s)
newest source snapshot: tank/data@zrepl-ha_20261126T120000Z_000001
`
	if got := out.String(); got != want {
		t.Errorf("summary:\n%s\nwant:\n%s", got, want)
	}
	var ce *conflictsError
	if !errors.As(err, &ce) || ce.N != 2 || !errors.Is(err, zfsrepl.ErrConflict) {
		t.Fatalf("err = %#v, want a *conflictsError for 2 conflicts", err)
	}
	if err.Error() != "2 replication conflicts under backup/data (listed above); nothing was destroyed" {
		t.Errorf("message %q", err)
	}
	var ue *usageError
	if code := exitCode(err); code != exitFailure || code == exitUsage || errors.As(err, &ue) {
		t.Errorf("conflicts: exit code %d, want %d (not a usage error)", code, exitFailure)
	}

	// One conflict and nothing else: no table, the singular message.
	out.Reset()
	err = writeReplicateSummary(&out, &zfsrepl.Report{Root: root, Conflicts: rep.Conflicts[:1], Lag: -1})
	if err == nil || err.Error() != "a replication conflict under backup/data (listed above); nothing was destroyed" ||
		strings.Contains(out.String(), "KIND") || strings.Contains(out.String(), "nothing to do") ||
		!strings.Contains(out.String(), "latest consistent snapshot: none") {
		t.Errorf("one conflict: %v\n%s", err, out.String())
	}
}

func TestReplicateSummaryNothingToDo(t *testing.T) {
	var out bytes.Buffer
	err := writeReplicateSummary(&out, &zfsrepl.Report{
		Root:           zfsrepl.Root{Source: "tank/data", Target: "backup/data"},
		LatestSnapshot: "zrepl-ha_20261126T120000Z_000001", LatestConsistent: "zrepl-ha_20261126T120000Z_000001", Lag: 90 * time.Second,
	})
	want := "nothing to do: backup/data is up to date with tank/data@zrepl-ha_20261126T120000Z_000001\n" +
		"latest consistent snapshot: backup/data@zrepl-ha_20261126T120000Z_000001 (lag 1m30s)\n"
	if err != nil || out.String() != want {
		t.Fatalf("%v\n%q\nwant\n%q", err, out.String(), want)
	}
}
