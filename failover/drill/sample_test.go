package drill

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zrepl-ha/zrepl-ha/transport/zfsrpc"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

func mkTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestWalkSpreadsTheSample(t *testing.T) {
	files := map[string]string{}
	for i := 0; i < 1000; i++ {
		files[fmt.Sprintf("d%02d/f%03d", i/50, i)] = "x"
	}
	files[".zfs/snapshot/s/hidden"] = "not counted"
	dir := mkTree(t, files)
	os.Symlink("/etc/passwd", filepath.Join(dir, "link")) // not a regular file
	w, err := walk(context.Background(), dir, 20, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	if w.Count != 1000 || !w.Complete || len(w.Sample) != 20 {
		t.Fatalf("count %d complete %v sample %d", w.Count, w.Complete, len(w.Sample))
	}
	// Spread: the sample reaches from the first directories to the last.
	dirs := map[string]bool{}
	for _, p := range w.Sample {
		dirs[strings.Split(p, "/")[0]] = true
	}
	if len(dirs) < 12 || !dirs["d00"] || !dirs["d19"] {
		t.Fatalf("sample not spread over the tree: %v", w.Sample)
	}
	// The same tree walks the same on the other node.
	again, _ := walk(context.Background(), dir, 20, 1_000_000)
	if fmt.Sprint(again.Sample) != fmt.Sprint(w.Sample) {
		t.Fatal("walk is not deterministic")
	}
	few, _ := walk(context.Background(), dir, 20, 100)
	if few.Count != 100 || few.Complete {
		t.Fatalf("max count: %+v", few)
	}
	none, _ := walk(context.Background(), dir, 0, 1_000_000)
	if none.Count != 1000 || len(none.Sample) != 0 {
		t.Fatalf("count only: %d %d", none.Count, len(none.Sample))
	}
}

func TestHashFilesStaysInside(t *testing.T) {
	outside := mkTree(t, map[string]string{"secret": "s3cret"})
	dir := mkTree(t, map[string]string{"a": strings.Repeat("a", 10000), "sub/b": "b"})
	os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "abs-link"))
	os.Symlink("../"+filepath.Base(outside)+"/secret", filepath.Join(dir, "rel-link"))
	os.Symlink(outside, filepath.Join(dir, "dir-link"))
	got, err := hashFiles(context.Background(), dir, []string{"a", "sub/b", "abs-link", "rel-link", "dir-link/secret", "../secret", "sub", "missing"}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].SHA256 != sha(strings.Repeat("a", 10000), 100) || got[0].Size != 10000 {
		t.Errorf("a: only the first 100 bytes hashed, size whole: %+v", got[0])
	}
	if got[1].SHA256 != sha("b", 100) {
		t.Errorf("sub/b: %+v", got[1])
	}
	for _, f := range got[2:] {
		if f.Error == "" || f.SHA256 != "" {
			t.Errorf("%s read: %+v", f.Path, f)
		}
	}
}

// Responder reads the snapshot through <mountpoint>/.zfs/snapshot/<snap>
// and refuses a snapshot with another guid.
type respZFS struct {
	zfsrepl.ZFS
	mp      string
	mounted string
}

func (r respZFS) Versions(ctx context.Context, ds string) ([]zfsrepl.Version, error) {
	return []zfsrepl.Version{{Name: ds + "@s1", Type: zfsrepl.Snapshot, GUID: 7}}, nil
}

func (r respZFS) GetProperty(ctx context.Context, ds, prop string) (string, error) {
	if prop == "mountpoint" {
		return r.mp, nil
	}
	return r.mounted, nil
}

func TestResponderSample(t *testing.T) {
	mp := mkTree(t, map[string]string{".zfs/snapshot/s1/f": "snap", ".zfs/snapshot/s1/g/h": "h", "f": "live"})
	r := &Responder{Node: "alpha", ZFS: respZFS{mp: mp, mounted: "yes"}}
	ctx := context.Background()
	resp, err := r.DrillSample(ctx, zfsrpc.DrillSampleRequest{Snapshot: "tank/data@s1", GUID: 7, Paths: []string{"f"}, FileBytes: 10, MaxCount: 10})
	if err != nil || resp.Files[0].SHA256 != sha("snap", 10) || resp.Count != 2 || !resp.CountComplete {
		t.Fatalf("%+v %v", resp, err)
	}
	if _, err := r.DrillSample(ctx, zfsrpc.DrillSampleRequest{Snapshot: "tank/data@s1", GUID: 8, FileBytes: 10}); !errorsIs(err, ErrGUIDMismatch) {
		t.Fatalf("guid mismatch: %v", err)
	}
	if _, err := r.DrillSample(ctx, zfsrpc.DrillSampleRequest{Snapshot: "tank/data@s9", FileBytes: 10}); !errorsIs(err, zfsrepl.ErrDatasetNotFound) {
		t.Fatalf("missing snapshot: %v", err)
	}
	if _, err := r.DrillSample(ctx, zfsrpc.DrillSampleRequest{Snapshot: "tank/data@s1", Paths: []string{"../../f"}, FileBytes: 10}); err == nil {
		t.Fatal("traversal accepted by the responder")
	}
	r.ZFS = respZFS{mp: mp, mounted: "no"}
	if _, err := r.DrillSample(ctx, zfsrpc.DrillSampleRequest{Snapshot: "tank/data@s1", FileBytes: 10}); err == nil || !strings.Contains(err.Error(), "zfs mount") {
		t.Fatalf("unmounted: %v", err)
	}
}
