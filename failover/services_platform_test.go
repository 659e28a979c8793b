//go:build platform

package failover

// Promotion on real OpenZFS in the lab VM: a replica with a half-done
// receive and a cycle that reached only one dataset is promoted to the
// latest consistent snapshot, with a crash injected after each step and
// the promotion run again each time.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/fixtures/testpool"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

func snapDir(t *testing.T, ds, snap string) string {
	return filepath.Join(testpool.Prop(t, ds, "mountpoint"), ".zfs", "snapshot", snap)
}

func TestPlatformPromotionCrashAtEveryStep(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	p := testpool.New(t, "zpr", 512<<20, "-O", "compression=off").Name
	src, dst := p+"/src", p+"/dst"
	testpool.ZFS(t, "create", src)
	testpool.ZFS(t, "create", src+"/c")
	testpool.WriteRandom(t, src, "f1", 1<<20)
	testpool.WriteRandom(t, src+"/c", "f1", 1<<20)
	z := zfsrepl.NewExec(zfsrepl.Binaries{}, nil)
	const s1, s2 = "zrepl-ha_20261201T120000Z_000001", "zrepl-ha_20261201T120005Z_000002"
	testpool.ZFS(t, "snapshot", "-r", src+"@"+s1)
	eng := &zfsrepl.Engine{ZFS: z, Peer: "beta", Now: time.Now}
	if _, err := eng.Replicate(ctx, zfsrepl.Root{Source: src, Target: dst}, &zfsrepl.LocalReceiver{ZFS: z, Sender: "alpha"}); err != nil {
		t.Fatal(err)
	}
	// The next cycle reaches the child only, and the root's receive is cut
	// halfway: the latest consistent snapshot is still s1.
	testpool.WriteRandom(t, src, "f2", 4<<20)
	testpool.WriteRandom(t, src+"/c", "f2", 1<<20)
	testpool.ZFS(t, "snapshot", "-r", src+"@"+s2)
	sh := func(cmd string) {
		out, _ := exec.Command("/bin/sh", "-c", cmd).CombinedOutput()
		t.Logf("%s: %s", cmd, out)
	}
	sh(fmt.Sprintf("zfs send -i @%s %s/c@%s | zfs recv -s -u %s/c", s1, src, s2, dst))
	sh(fmt.Sprintf("zfs send -i @%s %s@%s | head -c 2000000 | zfs recv -s -u %s", s1, src, s2, dst))
	if tok := testpool.Prop(t, dst, "receive_resume_token"); tok == "-" {
		t.Fatal("no partial receive state to promote over")
	}
	wantChild := testpool.TreeSum(t, snapDir(t, src+"/c", s1))

	svc := &Services{ZFS: z, Roots: []string{dst}}
	plan, err := svc.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rp := plan.Roots[0]
	if !rp.Replica || rp.Snapshot != s1 || len(rp.Aborts) != 1 || rp.Aborts[0].Dataset != dst || rp.Aborts[0].Bytes <= 0 ||
		len(rp.Rollbacks) != 1 || rp.Rollbacks[0].Dataset != dst+"/c" || len(rp.Rollbacks[0].Destroy) != 1 {
		t.Fatalf("plan %+v", rp)
	}
	t.Logf("plan: serve @%s, abort %s (%d bytes), roll back %s destroying %v", rp.Snapshot, rp.Aborts[0].Dataset, rp.Aborts[0].Bytes, rp.Rollbacks[0].Dataset, rp.Rollbacks[0].Destroy)

	// Crash after step 1, run again and crash after step 2, ... until a
	// run goes through: every intermediate state must be recoverable.
	crash := errors.New("injected crash")
	for k := 1; ; k++ {
		n := 0
		svc.afterStep = func(step string) error {
			if n++; n == k {
				return fmt.Errorf("%w after %q", crash, step)
			}
			return nil
		}
		err := svc.Serve(ctx, 7)
		if err == nil {
			t.Logf("promotion went through on run %d", k)
			break
		}
		if !errors.Is(err, crash) {
			t.Fatalf("run %d: %v", k, err)
		}
		if k > 20 {
			t.Fatal("promotion never finishes")
		}
	}
	for _, ds := range []string{dst, dst + "/c"} {
		if ro, mounted, tok := testpool.Prop(t, ds, "readonly"), testpool.Prop(t, ds, "mounted"), testpool.Prop(t, ds, "receive_resume_token"); ro != "off" || mounted != "yes" || tok != "-" {
			t.Errorf("%s: readonly=%s mounted=%s token=%s", ds, ro, mounted, tok)
		}
	}
	for _, c := range []struct{ ds, want string }{{dst + "/c", wantChild}} {
		if got := testpool.TreeSum(t, testpool.Prop(t, c.ds, "mountpoint")); got != c.want {
			t.Errorf("%s: content differs from the source's @%s", c.ds, s1)
		}
	}
	if _, err := os.Stat(filepath.Join(testpool.Prop(t, dst, "mountpoint"), "f2")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("f2 (from the unfinished cycle) is on the promoted root: %v", err)
	}
	f1 := func(ds string) string {
		b, err := os.ReadFile(filepath.Join(ds, "f1"))
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(b)
		return hex.EncodeToString(s[:])
	}
	if f1(testpool.Prop(t, dst, "mountpoint")) != f1(snapDir(t, src, s1)) {
		t.Error("f1 on the promoted root differs from the source's")
	}
	if e := testpool.Prop(t, dst, EpochProperty); e != "7" {
		t.Errorf("epoch property %q", e)
	}
	for _, ds := range []string{dst, dst + "/c"} {
		if err := os.WriteFile(filepath.Join(testpool.Prop(t, ds, "mountpoint"), "after-promotion"), []byte("x"), 0o644); err != nil {
			t.Errorf("%s is not writable after the promotion: %v", ds, err)
		}
	}
	// Running it again changes nothing.
	svc.afterStep = nil
	if err := svc.Serve(ctx, 7); err != nil {
		t.Fatalf("a second promotion: %v", err)
	}
}

// The promotion runs its zfs set (readonly=off) and its zfs mount side by
// side: whichever comes first, the dataset ends mounted, writable, and
// readonly=off.
func TestPlatformWritableWhicheverFinishesFirst(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p := testpool.New(t, "zwr", 256<<20).Name
	for _, order := range []string{"mount-first", "set-first"} {
		ds := p + "/" + order
		testpool.ZFS(t, "create", "-o", "readonly=on", "-o", "canmount=noauto", ds)
		if m := testpool.Prop(t, ds, "mounted"); m != "no" {
			t.Fatalf("%s: mounted=%s before", ds, m)
		}
		set := func() error { return zfsSet(ctx, ds, "readonly=off", "canmount=on") }
		steps := []func() error{func() error { return zfsMountRW(ctx, ds) }, set}
		if order == "set-first" {
			steps[0], steps[1] = steps[1], steps[0]
		}
		for _, f := range steps {
			if err := f(); err != nil {
				t.Fatalf("%s: %v", order, err)
			}
		}
		if ro, m := testpool.Prop(t, ds, "readonly"), testpool.Prop(t, ds, "mounted"); ro != "off" || m != "yes" {
			t.Errorf("%s: readonly=%s mounted=%s", order, ro, m)
		}
		if err := os.WriteFile(filepath.Join(testpool.Prop(t, ds, "mountpoint"), "x"), []byte("x"), 0o644); err != nil {
			t.Errorf("%s: not writable: %v", order, err)
		}
	}
}
