//go:build platform

package zfsrepl

import (
	"bytes"
	"context"
	"errors"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestPlatformCreateAndList(t *testing.T) {
	t.Parallel()
	p := newPool(t)
	for _, rel := range []string{"data", "data/a", "data/a/x", "data/b"} {
		p.create(t, rel)
	}
	got, err := p.z.List(testCtx(t), p.ds("data"), true)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range got {
		names = append(names, strings.TrimPrefix(d.Name, p.Name+"/"))
		if d.Type != Filesystem {
			t.Errorf("%s: type %q", d.Name, d.Type)
		}
	}
	if want := []string{"data", "data/a", "data/a/x", "data/b"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("got %v want %v", names, want)
	}
	one, err := p.z.List(testCtx(t), p.ds("data/a"), false)
	if err != nil || len(one) != 1 || one[0].Name != p.ds("data/a") {
		t.Fatalf("non-recursive list: %v %v", one, err)
	}
}

func TestPlatformListMissingIsTyped(t *testing.T) {
	t.Parallel()
	p := newPool(t)
	_, err := p.z.List(testCtx(t), p.ds("nope"), true)
	if !errors.Is(err, ErrDatasetNotFound) {
		t.Fatalf("want ErrDatasetNotFound, got %v", err)
	}
	if !strings.Contains(err.Error(), "zfs") || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("error lacks the command or zfs's message: %v", err)
	}
	var ze *Error
	if !errors.As(err, &ze) || ze.ExitCode() != 4 {
		t.Fatalf("want *Error with exit code 4: %#v", err)
	}
}

func TestPlatformCreateExistsIsTyped(t *testing.T) {
	t.Parallel()
	p := newPool(t)
	p.create(t, "a")
	if err := p.z.Create(testCtx(t), p.ds("a"), nil); !errors.Is(err, ErrExists) {
		t.Fatalf("want ErrExists, got %v", err)
	}
}

func TestPlatformRecursiveSnapshotIsOneCut(t *testing.T) {
	t.Parallel()
	p := newPool(t)
	for _, rel := range []string{"r", "r/a", "r/b", "r/b/c"} {
		p.create(t, rel)
	}
	if err := p.z.Snapshot(testCtx(t), p.ds("r"), "cut1", true); err != nil {
		t.Fatal(err)
	}
	txgs := map[uint64]bool{}
	for _, rel := range []string{"r", "r/a", "r/b", "r/b/c"} {
		vs, err := p.z.Versions(testCtx(t), p.ds(rel))
		if err != nil || len(vs) != 1 || vs[0].Short() != "cut1" {
			t.Fatalf("%s: %v %v", rel, vs, err)
		}
		txgs[vs[0].CreateTXG] = true
	}
	if len(txgs) != 1 {
		t.Fatalf("snapshots in %d different txgs, want one atomic cut", len(txgs))
	}
}

func TestPlatformSnapshotAtomicMultiName(t *testing.T) {
	t.Parallel()
	p := newPool(t)
	a, b := p.create(t, "a"), p.create(t, "b")
	if err := p.z.SnapshotAtomic(testCtx(t), []string{a + "@m", b + "@m"}); err != nil {
		t.Fatal(err)
	}
	va, _ := p.z.Versions(testCtx(t), a)
	vb, _ := p.z.Versions(testCtx(t), b)
	if len(va) != 1 || len(vb) != 1 || va[0].CreateTXG != vb[0].CreateTXG {
		t.Fatalf("not one txg: %v %v", va, vb)
	}
}

func TestPlatformVersionsBookmarkSharesGUID(t *testing.T) {
	t.Parallel()
	p := newPool(t)
	a := p.create(t, "a")
	p.z.Snapshot(testCtx(t), a, "s1", false)
	p.z.Snapshot(testCtx(t), a, "s2", false)
	if err := p.z.Bookmark(testCtx(t), a+"@s1", "#b1"); err != nil {
		t.Fatal(err)
	}
	vs, err := p.z.Versions(testCtx(t), a)
	if err != nil || len(vs) != 3 {
		t.Fatalf("%v %v", vs, err)
	}
	if vs[0].Name != a+"@s1" || vs[1].Name != a+"#b1" || vs[2].Name != a+"@s2" {
		t.Fatalf("order: %v", vs)
	}
	if vs[0].GUID != vs[1].GUID || vs[0].GUID == vs[2].GUID || vs[1].Type != Bookmark {
		t.Fatalf("guids: %+v", vs)
	}
}

func TestPlatformRollback(t *testing.T) {
	t.Parallel()
	p := newPool(t)
	a := p.create(t, "a")
	p.z.Snapshot(testCtx(t), a, "s1", false)
	p.writeFiles(t, a, "after", 2, 4096)
	p.z.Snapshot(testCtx(t), a, "s2", false)
	if err := p.z.Rollback(testCtx(t), a+"@s1", false); err == nil || !strings.Contains(err.Error(), "zfs rollback") {
		t.Fatalf("rollback past a newer snapshot without -r must fail naming the command, got %v", err)
	}
	if err := p.z.Rollback(testCtx(t), a+"@s1", true); err != nil {
		t.Fatal(err)
	}
	if files := checksums(t, p.mountpoint(t, a)); len(files) != 0 {
		t.Fatalf("files survived rollback: %v", files)
	}
	if got := p.shorts(t, a); !reflect.DeepEqual(got, []string{"@s1"}) {
		t.Fatalf("snapshots after rollback -r: %v", got)
	}
}

func TestPlatformDestroy(t *testing.T) {
	t.Parallel()
	p := newPool(t)
	a := p.create(t, "a")
	p.create(t, "a/child")
	p.z.Snapshot(testCtx(t), a, "s1", false)
	p.z.Bookmark(testCtx(t), a+"@s1", "#b1")
	for _, n := range []string{a + "#b1", a + "@s1"} {
		if err := p.z.Destroy(testCtx(t), n, DestroyFlags{}); err != nil {
			t.Fatalf("destroy %s: %v", n, err)
		}
	}
	if got := p.shorts(t, a); len(got) != 0 {
		t.Fatalf("left: %v", got)
	}
	if err := p.z.Destroy(testCtx(t), a, DestroyFlags{}); err == nil {
		t.Fatal("destroy of a parent with children must fail without Recursive")
	}
	if err := p.z.Destroy(testCtx(t), a, DestroyFlags{Recursive: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.z.List(testCtx(t), a, false); !errors.Is(err, ErrDatasetNotFound) {
		t.Fatalf("still there: %v", err)
	}
}

// DestroySnapshots destroys several snapshots in one command; one held
// snapshot fails the command and leaves every snapshot of it in place (the
// kernel checks all before destroying any), which Prune's fallback relies on.
func TestPlatformDestroySnapshotsBatch(t *testing.T) {
	t.Parallel()
	p := newPool(t)
	ctx := testCtx(t)
	a := p.create(t, "a")
	for _, s := range []string{"s1", "s2", "s3", "s4"} {
		if err := p.z.Snapshot(ctx, a, s, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.z.Hold(ctx, "admin", a+"@s3"); err != nil {
		t.Fatal(err)
	}
	if err := p.z.DestroySnapshots(ctx, a, []string{"s1", "s3"}); !errors.Is(err, ErrHeld) && !errors.Is(err, ErrBusy) {
		t.Fatalf("batch with a held snapshot: %v, want ErrHeld or ErrBusy", err)
	}
	if got := p.shorts(t, a); !reflect.DeepEqual(got, []string{"@s1", "@s2", "@s3", "@s4"}) {
		t.Fatalf("after the failed batch: %v, want all four", got)
	}
	if err := p.z.DestroySnapshots(ctx, a, []string{"s1", "s2"}); err != nil {
		t.Fatal(err)
	}
	if got := p.shorts(t, a); !reflect.DeepEqual(got, []string{"@s3", "@s4"}) {
		t.Fatalf("after the batch: %v", got)
	}
	// A comma would smuggle another snapshot into the list.
	if err := p.z.DestroySnapshots(ctx, a, []string{"s4,s3"}); err == nil {
		t.Fatal("a bad snapshot name reached zfs")
	}
	if got := p.shorts(t, a); !reflect.DeepEqual(got, []string{"@s3", "@s4"}) {
		t.Fatalf("after the refused batch: %v", got)
	}
}

func TestPlatformProperties(t *testing.T) {
	t.Parallel()
	p := newPool(t)
	a := p.create(t, "a")
	ctx := testCtx(t)
	if v, err := p.z.GetProperty(ctx, a, "zrepl-ha:epoch"); err != nil || v != "-" {
		t.Fatalf("unset user property: %q %v", v, err)
	}
	if err := p.z.SetProperty(ctx, a, "zrepl-ha:epoch", "7"); err != nil {
		t.Fatal(err)
	}
	if v, _ := p.z.GetProperty(ctx, a, "zrepl-ha:epoch"); v != "7" {
		t.Fatalf("got %q", v)
	}
	if err := p.z.SetProperty(ctx, a, "readonly", "on"); err != nil {
		t.Fatal(err)
	}
	if v, _ := p.z.GetProperty(ctx, a, "readonly"); v != "on" {
		t.Fatalf("readonly=%q", v)
	}
	if err := p.z.SetProperty(ctx, a, "nosuchprop", "1"); err == nil || !strings.Contains(err.Error(), "zfs set") {
		t.Fatalf("bad property must fail naming the command: %v", err)
	}
}

func TestPlatformFullThenIncremental(t *testing.T) {
	t.Parallel()
	src, dst := newPool(t), newPool(t)
	a := src.create(t, "a")
	src.writeFiles(t, a, "one", 4, 64<<10)
	src.z.Snapshot(testCtx(t), a, "s1", false)
	dst.recv(t, dst.ds("a"), RecvOptions{}, src.stream(t, SendOptions{Snapshot: a + "@s1"}))
	src.writeFiles(t, a, "two", 4, 64<<10)
	src.z.Snapshot(testCtx(t), a, "s2", false)
	dst.recv(t, dst.ds("a"), RecvOptions{}, src.stream(t, SendOptions{Snapshot: a + "@s2", From: "@s1"}))
	sameChecksums(t, checksums(t, src.mountpoint(t, a)), checksums(t, dst.mountpoint(t, dst.ds("a"))))
	sv, _ := src.z.Versions(testCtx(t), a)
	dv, _ := dst.z.Versions(testCtx(t), dst.ds("a"))
	if len(dv) != 2 || dv[1].GUID != sv[1].GUID {
		t.Fatalf("receiver versions %v vs %v", dv, sv)
	}
}

func TestPlatformIntermediatesCoalesced(t *testing.T) {
	t.Parallel()
	src, dst := newPool(t), newPool(t)
	a := src.create(t, "a")
	src.z.Snapshot(testCtx(t), a, "s0", false)
	dst.recv(t, dst.ds("a"), RecvOptions{}, src.stream(t, SendOptions{Snapshot: a + "@s0"}))
	for _, s := range []string{"s1", "s2", "s3", "s4"} {
		src.writeFiles(t, a, s, 1, 8192)
		src.z.Snapshot(testCtx(t), a, s, false)
	}
	dst.recv(t, dst.ds("a"), RecvOptions{}, src.stream(t, SendOptions{Snapshot: a + "@s4", From: a + "@s0", Intermediates: true}))
	if got, want := dst.shorts(t, dst.ds("a")), []string{"@s0", "@s1", "@s2", "@s3", "@s4"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("one -I stream must bring every intermediate snapshot: %v", got)
	}
}

func TestPlatformIncrementalFromBookmarkAfterSnapshotDestroyed(t *testing.T) {
	t.Parallel()
	src, dst := newPool(t), newPool(t)
	a := src.create(t, "a")
	src.writeFiles(t, a, "base", 2, 32<<10)
	src.z.Snapshot(testCtx(t), a, "s1", false)
	dst.recv(t, dst.ds("a"), RecvOptions{}, src.stream(t, SendOptions{Snapshot: a + "@s1"}))
	if err := src.z.Bookmark(testCtx(t), a+"@s1", "#cursor"); err != nil {
		t.Fatal(err)
	}
	if err := src.z.Destroy(testCtx(t), a+"@s1", DestroyFlags{}); err != nil {
		t.Fatal(err)
	}
	src.writeFiles(t, a, "more", 2, 32<<10)
	src.z.Snapshot(testCtx(t), a, "s2", false)
	dst.recv(t, dst.ds("a"), RecvOptions{}, src.stream(t, SendOptions{Snapshot: a + "@s2", From: "#cursor"}))
	sameChecksums(t, checksums(t, src.mountpoint(t, a)), checksums(t, dst.mountpoint(t, dst.ds("a"))))
}

func TestPlatformSendSizeEstimate(t *testing.T) {
	t.Parallel()
	p := newPool(t)
	a := p.create(t, "a")
	p.writeFiles(t, a, "f", 8, 128<<10)
	p.z.Snapshot(testCtx(t), a, "s1", false)
	est, err := p.z.SendSize(testCtx(t), SendOptions{Snapshot: a + "@s1"})
	if err != nil {
		t.Fatal(err)
	}
	actual := int64(len(p.stream(t, SendOptions{Snapshot: a + "@s1"})))
	if est < actual*8/10 || est > actual*12/10 {
		t.Fatalf("estimate %d is not within 20%% of the actual %d", est, actual)
	}
}

func TestPlatformResumeAfterCutAtRandomOffset(t *testing.T) {
	t.Parallel()
	src, dst := newPool(t), newPool(t)
	a := src.create(t, "a")
	src.writeFiles(t, a, "f", 16, 128<<10)
	src.z.Snapshot(testCtx(t), a, "s1", false)
	full := src.stream(t, SendOptions{Snapshot: a + "@s1"})
	cut := len(full)/10 + mrand.IntN(len(full)*8/10)
	t.Logf("stream %d bytes, cut at %d", len(full), cut)
	target := dst.ds("a")
	err := dst.z.Recv(testCtx(t), target, RecvOptions{Resumable: true}, bytes.NewReader(full[:cut]))
	var re *ResumableError
	if !errors.As(err, &re) || re.Token == "" {
		t.Fatalf("want *ResumableError with a token, got %v", err)
	}
	rest := src.stream(t, SendOptions{ResumeToken: re.Token})
	if len(rest) >= len(full) {
		t.Fatalf("resume stream (%d) is not shorter than the full stream (%d)", len(rest), len(full))
	}
	dst.recv(t, target, RecvOptions{Resumable: true}, rest)
	if tok, _ := dst.z.ResumeToken(testCtx(t), target); tok != "" {
		t.Fatalf("token left after completion: %s", tok)
	}
	sameChecksums(t, checksums(t, src.mountpoint(t, a)), checksums(t, dst.mountpoint(t, target)))
}

func TestPlatformResumeIncrementalAfterCut(t *testing.T) {
	t.Parallel()
	src, dst := newPool(t), newPool(t)
	a := src.create(t, "a")
	src.z.Snapshot(testCtx(t), a, "s1", false)
	target := dst.ds("a")
	dst.recv(t, target, RecvOptions{Resumable: true}, src.stream(t, SendOptions{Snapshot: a + "@s1"}))
	src.writeFiles(t, a, "inc", 8, 128<<10)
	src.z.Snapshot(testCtx(t), a, "s2", false)
	inc := src.stream(t, SendOptions{Snapshot: a + "@s2", From: "@s1"})
	err := dst.z.Recv(testCtx(t), target, RecvOptions{Resumable: true}, bytes.NewReader(inc[:len(inc)/2]))
	var re *ResumableError
	if !errors.As(err, &re) {
		t.Fatalf("want *ResumableError, got %v", err)
	}
	dst.recv(t, target, RecvOptions{Resumable: true}, src.stream(t, SendOptions{ResumeToken: re.Token}))
	sameChecksums(t, checksums(t, src.mountpoint(t, a)), checksums(t, dst.mountpoint(t, target)))
}

func TestPlatformAbortResumable(t *testing.T) {
	t.Parallel()
	src, dst := newPool(t), newPool(t)
	a := src.create(t, "a")
	src.writeFiles(t, a, "f", 4, 128<<10)
	src.z.Snapshot(testCtx(t), a, "s1", false)
	full := src.stream(t, SendOptions{Snapshot: a + "@s1"})
	target := dst.ds("a")
	if err := dst.z.Recv(testCtx(t), target, RecvOptions{Resumable: true}, bytes.NewReader(full[:len(full)/2])); err == nil {
		t.Fatal("cut stream received without error")
	}
	if err := dst.z.AbortResumable(testCtx(t), target); err != nil {
		t.Fatal(err)
	}
	if tok, _ := dst.z.ResumeToken(testCtx(t), target); tok != "" {
		t.Fatalf("token after abort: %s", tok)
	}
	// With the partial state gone, a fresh full receive works.
	dst.recv(t, target, RecvOptions{Resumable: true}, full)
}

func TestPlatformRecvCancelledContextIsResumable(t *testing.T) {
	t.Parallel()
	src, dst := newPool(t), newPool(t)
	a := src.create(t, "a")
	src.writeFiles(t, a, "f", 8, 128<<10)
	src.z.Snapshot(testCtx(t), a, "s1", false)
	full := src.stream(t, SendOptions{Snapshot: a + "@s1"})
	ctx, cancel := context.WithCancel(testCtx(t))
	pr, pw := io.Pipe()
	go func() {
		pw.Write(full[:len(full)/2])
		// The link dies mid-stream once the receive has begun (its dataset
		// exists); the writer never finishes. Bounded wait.
		for i := 0; i < 300; i++ {
			if _, err := dst.z.List(context.Background(), dst.ds("a"), false); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		cancel()
		pw.Close()
	}()
	err := dst.z.Recv(ctx, dst.ds("a"), RecvOptions{Resumable: true}, pr)
	var re *ResumableError
	if !errors.As(err, &re) {
		t.Fatalf("want a resumable error after cancellation, got %v", err)
	}
}

func TestPlatformHoldBlocksDestroy(t *testing.T) {
	t.Parallel()
	p := newPool(t)
	a := p.create(t, "a")
	p.z.Snapshot(testCtx(t), a, "s1", false)
	snap := a + "@s1"
	if err := p.z.Hold(testCtx(t), "zrepl-ha:beta", snap); err != nil {
		t.Fatal(err)
	}
	hs, err := p.z.Holds(testCtx(t), snap)
	if err != nil || len(hs) != 1 || hs[0].Tag != "zrepl-ha:beta" || hs[0].Snapshot != snap {
		t.Fatalf("holds: %v %v", hs, err)
	}
	err = p.z.Destroy(testCtx(t), snap, DestroyFlags{})
	if !errors.Is(err, ErrHeld) {
		t.Fatalf("destroy of a held snapshot: want ErrHeld, got %v", err)
	}
	if got := p.shorts(t, a); len(got) != 1 {
		t.Fatal("held snapshot destroyed")
	}
	if err := p.z.Release(testCtx(t), "zrepl-ha:beta", snap); err != nil {
		t.Fatal(err)
	}
	if err := p.z.Destroy(testCtx(t), snap, DestroyFlags{}); err != nil {
		t.Fatalf("destroy after release: %v", err)
	}
}

func TestPlatformRawSendOfEncryptedDataset(t *testing.T) {
	t.Parallel()
	src, dst := newPool(t), newPool(t)
	keyfile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(keyfile, []byte("correct horse battery staple\n"), 0o600)
	enc := src.ds("secret")
	if err := src.z.Create(testCtx(t), enc, map[string]string{
		"encryption": "on", "keyformat": "passphrase", "keylocation": "file://" + keyfile,
	}); err != nil {
		t.Fatal(err)
	}
	src.writeFiles(t, enc, "f", 4, 64<<10)
	src.z.Snapshot(testCtx(t), enc, "s1", false)
	raw := src.stream(t, SendOptions{Snapshot: enc + "@s1", Raw: true})
	if bytes.Contains(raw, []byte("zrepl-ha lab data zrepl-ha lab data")) {
		t.Fatal("raw stream contains plaintext")
	}
	target := dst.ds("secret")
	dst.recv(t, target, RecvOptions{NoMount: true}, raw)
	if ks, _ := dst.z.GetProperty(testCtx(t), target, "keystatus"); ks != "unavailable" {
		t.Fatalf("received raw dataset keystatus=%q, want unavailable (no key on the receiver)", ks)
	}
	run(t, "zfs", "load-key", "-L", "file://"+keyfile, target)
	run(t, "zfs", "mount", target)
	sameChecksums(t, checksums(t, src.mountpoint(t, enc)), checksums(t, dst.mountpoint(t, target)))
}

func TestPlatformRecvIntoModifiedDestination(t *testing.T) {
	t.Parallel()
	src, dst := newPool(t), newPool(t)
	a := src.create(t, "a")
	src.z.Snapshot(testCtx(t), a, "s1", false)
	target := dst.ds("a")
	dst.recv(t, target, RecvOptions{}, src.stream(t, SendOptions{Snapshot: a + "@s1"}))
	dst.writeFiles(t, target, "local", 1, 4096) // someone wrote on the passive
	src.writeFiles(t, a, "f", 1, 4096)
	src.z.Snapshot(testCtx(t), a, "s2", false)
	err := dst.z.Recv(testCtx(t), target, RecvOptions{}, bytes.NewReader(src.stream(t, SendOptions{Snapshot: a + "@s2", From: "@s1"})))
	if !errors.Is(err, ErrDestinationModified) {
		t.Fatalf("want ErrDestinationModified, got %v", err)
	}
	if !strings.Contains(err.Error(), "zfs receive") {
		t.Fatalf("error does not name the command: %v", err)
	}
	if files := checksums(t, dst.mountpoint(t, target)); len(files) != 1 {
		t.Fatalf("local write lost: %v", files)
	}
}

func TestPlatformDivergedDestinationNeedsExplicitForce(t *testing.T) {
	t.Parallel()
	src, dst := newPool(t), newPool(t)
	a := src.create(t, "a")
	src.z.Snapshot(testCtx(t), a, "s1", false)
	target := dst.ds("a")
	dst.recv(t, target, RecvOptions{}, src.stream(t, SendOptions{Snapshot: a + "@s1"}))
	// Diverged: data written on the passive and a snapshot the sender lacks.
	// (A snapshot alone, with no writes since @s1, is not divergence to ZFS.)
	dst.writeFiles(t, target, "local", 1, 4096)
	dst.z.Snapshot(testCtx(t), target, "local", false)
	src.z.Snapshot(testCtx(t), a, "s2", false)
	inc := src.stream(t, SendOptions{Snapshot: a + "@s2", From: "@s1"})
	err := dst.z.Recv(testCtx(t), target, RecvOptions{}, bytes.NewReader(inc))
	if !errors.Is(err, ErrNoCommonBase) && !errors.Is(err, ErrDestinationModified) {
		t.Fatalf("incremental onto a diverged destination without -F: want a typed divergence error, got %v", err)
	}
	if got := dst.shorts(t, target); !reflect.DeepEqual(got, []string{"@local", "@s1"}) {
		t.Fatalf("the failed receive changed the destination: %v", got)
	}
	dst.recv(t, target, RecvOptions{Force: true}, inc)
	if got := dst.shorts(t, target); !reflect.DeepEqual(got, []string{"@s1", "@s2"}) {
		t.Fatalf("explicit -F: %v", got)
	}
}

func TestPlatformCompressedAndLargeBlockSend(t *testing.T) {
	t.Parallel()
	src, dst := newPool(t), newPool(t)
	a := src.ds("c")
	if err := src.z.Create(testCtx(t), a, map[string]string{"compression": "lz4", "recordsize": "1M"}); err != nil {
		t.Fatal(err)
	}
	src.writeFiles(t, a, "f", 4, 1<<20)
	src.z.Snapshot(testCtx(t), a, "s1", false)
	plain := src.stream(t, SendOptions{Snapshot: a + "@s1"})
	comp := src.stream(t, SendOptions{Snapshot: a + "@s1", Compressed: true, LargeBlocks: true, Embedded: true})
	if len(comp) >= len(plain) {
		t.Fatalf("-c stream (%d) not smaller than plain (%d) for half-compressible data", len(comp), len(plain))
	}
	dst.recv(t, dst.ds("c"), RecvOptions{}, comp)
	sameChecksums(t, checksums(t, src.mountpoint(t, a)), checksums(t, dst.mountpoint(t, dst.ds("c"))))
}

func TestPlatformRecvSetAndExcludeProperties(t *testing.T) {
	t.Parallel()
	src, dst := newPool(t), newPool(t)
	a := src.create(t, "a")
	src.z.SetProperty(testCtx(t), a, "zrepl-ha:note", "hello")
	src.z.SetProperty(testCtx(t), a, "atime", "off")
	src.z.Snapshot(testCtx(t), a, "s1", false)
	target := dst.ds("a")
	dst.recv(t, target, RecvOptions{NoMount: true, Set: map[string]string{"readonly": "on", "canmount": "noauto"}, Exclude: []string{"atime"}},
		src.stream(t, SendOptions{Snapshot: a + "@s1", Props: true}))
	ctx := testCtx(t)
	for prop, want := range map[string]string{"readonly": "on", "canmount": "noauto", "zrepl-ha:note": "hello", "atime": "on", "mounted": "no"} {
		if v, err := dst.z.GetProperty(ctx, target, prop); err != nil || v != want {
			t.Errorf("%s=%q (%v), want %q", prop, v, err, want)
		}
	}
}

func TestPlatformCloneAndPromote(t *testing.T) {
	t.Parallel()
	p := newPool(t)
	a := p.create(t, "a")
	p.writeFiles(t, a, "f", 1, 4096)
	p.z.Snapshot(testCtx(t), a, "s1", false)
	clone := p.ds("clone")
	if err := p.z.Clone(testCtx(t), a+"@s1", clone, nil); err != nil {
		t.Fatal(err)
	}
	if o, _ := p.z.GetProperty(testCtx(t), clone, "origin"); o != a+"@s1" {
		t.Fatalf("origin=%q", o)
	}
	if err := p.z.Promote(testCtx(t), clone); err != nil {
		t.Fatal(err)
	}
	if o, _ := p.z.GetProperty(testCtx(t), a, "origin"); o != clone+"@s1" {
		t.Fatalf("after promote, origin of the old parent=%q", o)
	}
	if err := p.z.Promote(testCtx(t), p.ds("missing")); !errors.Is(err, ErrDatasetNotFound) {
		t.Fatalf("promote missing: %v", err)
	}
}

func TestPlatformHoldsOnMissingSnapshot(t *testing.T) {
	t.Parallel()
	p := newPool(t)
	a := p.create(t, "a")
	_, err := p.z.Holds(testCtx(t), a+"@nope")
	if !errors.Is(err, ErrDatasetNotFound) {
		t.Fatalf("want ErrDatasetNotFound, got %v", err)
	}
}

// TestPlatformBadNamesNeverReachExec puts a recording fake zfs first on PATH
// and in Binaries: if any bad name got past validation, the fake would run.
func TestPlatformBadNamesNeverReachExec(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	fake := filepath.Join(dir, "zfs")
	os.WriteFile(fake, []byte("#!/bin/sh\necho \"$@\" >>"+marker+"\nexit 1\n"), 0o755)
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	z := NewExec(Binaries{ZFS: fake}, nil)
	ctx := testCtx(t)
	bad := []struct {
		name string
		call func() error
	}{
		{"list -x", func() error { _, err := z.List(ctx, "-x", true); return err }},
		{"create ..", func() error { return z.Create(ctx, "tank/../x", nil) }},
		{"snapshot -r", func() error { return z.Snapshot(ctx, "tank/a", "-r", true) }},
		{"atomic empty", func() error { return z.SnapshotAtomic(ctx, []string{"tank/a@ok", "tank//b@x"}) }},
		{"rollback", func() error { return z.Rollback(ctx, "tank/a", true) }},
		{"destroy", func() error { return z.Destroy(ctx, "-R", DestroyFlags{}) }},
		{"get", func() error { _, err := z.GetProperty(ctx, "tank/a;x", "used"); return err }},
		{"set", func() error { return z.SetProperty(ctx, "tank/a", "-o", "x") }},
		{"send", func() error { return z.Send(ctx, SendOptions{Snapshot: "tank/a@-x"}, io.Discard) }},
		{"send from", func() error { return z.Send(ctx, SendOptions{Snapshot: "tank/a@s", From: "@s/../x"}, io.Discard) }},
		{"size", func() error { _, err := z.SendSize(ctx, SendOptions{Snapshot: "tank@"}); return err }},
		{"recv", func() error { return z.Recv(ctx, "-F", RecvOptions{}, bytes.NewReader(nil)) }},
		{"abort", func() error { return z.AbortResumable(ctx, "") }},
		{"bookmark", func() error { return z.Bookmark(ctx, "tank/a@s", "#-x") }},
		{"hold", func() error { return z.Hold(ctx, "-r", "tank/a@s") }},
		{"release", func() error { return z.Release(ctx, "t", "tank/a@s@t") }},
		{"holds", func() error { _, err := z.Holds(ctx, "tank/a"); return err }},
		{"clone", func() error { return z.Clone(ctx, "tank/a@s", "tank/%x", nil) }},
		{"promote", func() error { return z.Promote(ctx, "tank a/../b") }},
	}
	for _, c := range bad {
		err := c.call()
		if !errors.Is(err, ErrInvalidName) {
			t.Errorf("%s: want ErrInvalidName, got %v", c.name, err)
		}
	}
	if b, err := os.ReadFile(marker); err == nil {
		t.Fatalf("zfs was executed with bad names: %s", b)
	}
}

func TestPlatformDestroyBusyIsTyped(t *testing.T) {
	t.Parallel()
	p := newPool(t)
	a := p.create(t, "a")
	p.writeFiles(t, a, "f", 1, 4096)
	// An open file keeps the filesystem from unmounting: destroy is refused.
	f, err := os.Open(filepath.Join(p.mountpoint(t, a), "f-000"))
	if err != nil {
		t.Fatal(err)
	}
	err = p.z.Destroy(testCtx(t), a, DestroyFlags{})
	f.Close()
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("want ErrBusy, got %v", err)
	}
	if _, err := p.z.List(testCtx(t), a, false); err != nil {
		t.Fatalf("busy dataset destroyed: %v", err)
	}
}
