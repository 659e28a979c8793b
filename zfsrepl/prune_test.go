package zfsrepl

import (
	"context"
	"testing"
)

type destroyRecorder struct {
	ZFS
	destroyed []string
}

func (d *destroyRecorder) Destroy(ctx context.Context, name string, f DestroyFlags) error {
	d.destroyed = append(d.destroyed, name)
	return nil
}

func TestPruneGuards(t *testing.T) {
	ds := "tank/data"
	vs := snaps(ds, "s1", "s2", "s3", "b3", "s4", "x5", "s6")
	vs[1].UserRefs = 1 // s2 held by an admin
	names := func(ns ...int) []string {
		var out []string
		for _, n := range ns {
			out = append(out, ds+"@"+short(n))
		}
		return out
	}
	z := &destroyRecorder{}
	res, err := Prune(context.Background(), z, SenderSide, vs, append(names(1, 2, 3, 4, 6), ds+"@manual5", ds+"@nope"), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(z.destroyed) != 1 || z.destroyed[0] != ds+"@"+short(1) || len(res.Unreplicated) != 0 {
		t.Fatalf("destroyed %v (unreplicated %v), want only s1; refused %v", z.destroyed, res.Unreplicated, res.Refused)
	}
	for n, why := range map[string]string{
		ds + "@" + short(2): "held", ds + "@" + short(3): "cursor", ds + "@" + short(4): "not yet replicated",
		ds + "@" + short(6): "not yet replicated", ds + "@manual5": "not created by zrepl-ha", ds + "@nope": "no such",
	} {
		if r := res.Refused[n]; r == "" || !contains(r, why) {
			t.Errorf("%s: refused %q, want %q", n, r, why)
		}
	}
	// Explicitly allowed (pool nearly full): unreplicated may go, the cursor's never.
	z = &destroyRecorder{}
	res, _ = Prune(context.Background(), z, SenderSide, vs, names(1, 3, 4), true)
	if len(z.destroyed) != 2 || z.destroyed[1] != ds+"@"+short(4) || res.Refused[ds+"@"+short(3)] == "" ||
		len(res.Unreplicated) != 1 || res.Unreplicated[0] != ds+"@"+short(4) {
		t.Fatalf("allowUnreplicated: destroyed %v (unreplicated %v) refused %v", z.destroyed, res.Unreplicated, res.Refused)
	}
	// No cursor at all: nothing has been replicated, nothing may go.
	z = &destroyRecorder{}
	Prune(context.Background(), z, SenderSide, snaps(ds, "s1", "s2"), names(1), false)
	if len(z.destroyed) != 0 {
		t.Fatalf("destroyed %v before any replication", z.destroyed)
	}
	// Receiver: the newest (the base) and held ones stay.
	rvs := snaps(ds, "s1", "s2", "s3")
	rvs[1].UserRefs = 1
	z = &destroyRecorder{}
	res, _ = Prune(context.Background(), z, ReceiverSide, rvs, names(1, 2, 3), false)
	if len(z.destroyed) != 1 || z.destroyed[0] != ds+"@"+short(1) {
		t.Fatalf("receiver: destroyed %v refused %v", z.destroyed, res.Refused)
	}
}

type cloneOrigin struct {
	destroyRecorder
	origin string
}

func (c *cloneOrigin) Destroy(ctx context.Context, name string, f DestroyFlags) error {
	if name == c.origin {
		return &Error{Cmd: "zfs destroy " + name, Stderr: "cannot destroy '" + name + "': snapshot has dependent clones", Kind: classify("snapshot has dependent clones")}
	}
	return c.destroyRecorder.Destroy(ctx, name, f)
}

// A snapshot a rescue or a drill clone depends on is refused quietly, and
// the rest of the plan goes on.
func TestPruneSkipsClonedSnapshot(t *testing.T) {
	ds := "tank/data"
	rvs := snaps(ds, "s1", "s2", "s3")
	z := &cloneOrigin{origin: ds + "@" + short(1)}
	res, err := Prune(context.Background(), z, ReceiverSide, rvs, []string{ds + "@" + short(1), ds + "@" + short(2)}, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(z.destroyed) != 1 || z.destroyed[0] != ds+"@"+short(2) || !contains(res.Refused[ds+"@"+short(1)], "clone") {
		t.Fatalf("destroyed %v refused %v", z.destroyed, res.Refused)
	}
}

// batchDestroyer is a cloneOrigin that can also destroy in batches; a
// batch that holds the origin fails whole, as the kernel's does.
type batchDestroyer struct {
	cloneOrigin
	batches [][]string
}

func (b *batchDestroyer) DestroySnapshots(ctx context.Context, dataset string, shorts []string) error {
	b.batches = append(b.batches, shorts)
	for _, s := range shorts {
		if dataset+"@"+s == b.origin {
			return &Error{Cmd: "zfs destroy", Stderr: "snapshot has dependent clones", Kind: classify("snapshot has dependent clones")}
		}
	}
	for _, s := range shorts {
		b.destroyed = append(b.destroyed, dataset+"@"+s)
	}
	return nil
}

// With a batch destroyer, what passes the guard goes in one command; a
// failed batch falls back to one at a time, refusing only the clone origin.
func TestPruneBatches(t *testing.T) {
	ds := "tank/data"
	ctx := context.Background()
	rvs := snaps(ds, "s1", "s2", "s3", "s4")
	all := []string{ds + "@" + short(1), ds + "@" + short(2), ds + "@" + short(3), ds + "@" + short(4)}

	z := &batchDestroyer{}
	res, err := Prune(ctx, z, ReceiverSide, rvs, all, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(z.batches) != 1 || len(z.batches[0]) != 3 || len(res.Destroyed) != 3 || !contains(res.Refused[all[3]], "newest") {
		t.Fatalf("batches %v, destroyed %v, refused %v: want s1-s3 in one batch, s4 kept as the newest", z.batches, res.Destroyed, res.Refused)
	}

	z = &batchDestroyer{cloneOrigin: cloneOrigin{origin: all[1]}}
	res, err = Prune(ctx, z, ReceiverSide, rvs, all, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(z.batches) != 1 || len(res.Destroyed) != 2 || !contains(res.Refused[all[1]], "clone") {
		t.Fatalf("batches %v, destroyed %v, refused %v: want the batch tried, then s1 and s3 one by one", z.batches, res.Destroyed, res.Refused)
	}
}
