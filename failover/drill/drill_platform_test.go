//go:build platform

package drill

// The drill on real OpenZFS in the lab VM. One pool holds both sides: the
// "active" root src, served over a loopback zfsrpc connection as the
// active's daemon serves it, and its replica dst, made by the replication
// engine, on which the drill runs. First the drill says yes; then the
// replica loses its newest snapshot (the drill must say it is behind), and
// then gets a same-named snapshot of different content (the drill must
// say it diverged).

import (
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/fixtures/testpool"
	"github.com/zrepl-ha/zrepl-ha/internal/config"
	"github.com/zrepl-ha/zrepl-ha/transport"
	"github.com/zrepl-ha/zrepl-ha/transport/zfsrpc"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

func zfs(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("zfs", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("zfs %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// writeFiles writes n random files of up to 64 KiB into nested
// directories of the dataset's mountpoint.
func writeFiles(t *testing.T, ds, prefix string, n int) {
	t.Helper()
	mp := zfs(t, "get", "-H", "-o", "value", "mountpoint", ds)
	for i := 0; i < n; i++ {
		dir := filepath.Join(mp, prefix, string(rune('a'+i%5)))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1+i*997%(64<<10))
		rand.Read(b)
		if err := os.WriteFile(filepath.Join(dir, prefix+"-"+string(rune('a'+i%26))+string(rune('a'+i/26))), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	exec.Command("sync").Run()
}

func checkByName(rep Report, prefix string) (Check, bool) {
	for _, c := range rep.Checks {
		if strings.HasPrefix(c.Name, prefix) {
			return c, true
		}
	}
	return Check{}, false
}

func logReport(t *testing.T, rep Report) {
	t.Helper()
	for _, c := range rep.Checks {
		t.Logf("%-5v %-40s %s", c.OK, c.Name, c.Reason)
	}
	t.Logf("failover ready: %v (%s)", rep.Ready, rep.Duration)
}

func noClonesLeft(t *testing.T, pool string) {
	t.Helper()
	if out := zfs(t, "list", "-H", "-o", "name", "-r", pool); strings.Contains(out, clonePrefix) {
		t.Fatalf("the drill left a clone behind:\n%s", out)
	}
}

func TestPlatformDrill(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	p := testpool.New(t, "zdr", 512<<20, "-O", "compression=off").Name
	src, dst := p+"/src", p+"/dst"
	zfs(t, "create", src)
	zfs(t, "create", src+"/c")
	z := zfsrepl.NewExec(zfsrepl.Binaries{}, nil)
	eng := &zfsrepl.Engine{ZFS: z, Peer: "beta", Now: time.Now}
	recv := &zfsrepl.LocalReceiver{ZFS: z, Sender: "alpha"}
	const s1, s2 = "zrepl-ha_20261201T120000Z_000001", "zrepl-ha_20261201T120005Z_000002"
	// A symlink out of the dataset: the drill must never follow it.
	mp := zfs(t, "get", "-H", "-o", "value", "mountpoint", src)
	if err := os.Symlink("/etc/passwd", filepath.Join(mp, "escape")); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{s1, s2} {
		writeFiles(t, src, s[len(s)-2:], 60)
		writeFiles(t, src+"/c", s[len(s)-2:], 7)
		zfs(t, "snapshot", "-r", src+"@"+s)
		if _, err := eng.Replicate(ctx, zfsrepl.Root{Source: src, Target: dst}, recv); err != nil {
			t.Fatal(err)
		}
	}

	// The active: its daemon's zfsrpc server over loopback.
	sec := transport.Security{Plaintext: true}
	ln, err := transport.Listen("127.0.0.1:0", "alpha", "beta", sec, nil)
	if err != nil {
		t.Fatal(err)
	}
	active := &Responder{Node: "alpha", ZFS: z, Roots: []string{src}, System: Host{}, Shares: "s1", VIP: "v1"}
	go zfsrpc.ServeListener(ctx, ln, &zfsrpc.Server{Receiver: recv, Roots: []string{src}, Drill: active}, 5*time.Second, nil)
	peer := &zfsrpc.Client{Addr: ln.Addr().String(), Local: "beta", Peer: "alpha", Sec: sec}

	opts := Options{
		Roots:    []config.Root{{Source: dst, Target: src}},
		ZFS:      z,
		Peer:     peer,
		Local:    &Responder{Node: "beta", ZFS: z, Roots: []string{dst}, System: Host{}, Shares: "s1", VIP: "v1"},
		MountDir: t.TempDir(),
		Sample:   SampleOptions{Files: 20, FileBytes: 16 << 10},
		// Every snapshot here is seconds old: any the replica lacks counts.
		MaxLag:     time.Nanosecond,
		Tiebreaker: TiebreakerCheck([]config.TiebreakTarget{{Address: "127.0.0.1", Method: config.TiebreakICMP}}, 2*time.Second),
	}
	run := func(name string) Report {
		t.Helper()
		rep, err := Run(ctx, opts)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("== %s", name)
		logReport(t, rep)
		noClonesLeft(t, p)
		return rep
	}

	t.Run("ready", func(t *testing.T) {
		rep := run("ready")
		if !rep.Ready {
			t.Fatalf("want failover ready: yes, failed: %+v", rep.Failed())
		}
		for ds, files := range map[string]string{dst: "120 files", dst + "/c": "14 files"} {
			c, ok := checkByName(rep, "content "+ds+"@"+s2)
			if !ok || !c.OK || !strings.HasPrefix(c.Reason, files+" as on the active") {
				t.Errorf("content of %s: %+v (want %s compared)", ds, c, files)
			}
		}
		for _, name := range []string{"zfs version", "pool features " + p, "space " + dst, "share config", "vip config", "tiebreaker"} {
			if c, ok := checkByName(rep, name); !ok || !c.OK {
				t.Errorf("check %q: %+v", name, c)
			}
		}
	})

	// Deliberately damaged replicas: each must make the drill say no, for
	// the right reason.
	t.Run("newest snapshot missing on the passive", func(t *testing.T) {
		// The replica's holds (the receiver's confirmation) go first.
		out, err := exec.Command("zfs", "release", "-r", zfsrepl.HoldTag("alpha"), dst+"@"+s2).CombinedOutput()
		t.Logf("zfs release: %v %s", err, out)
		zfs(t, "destroy", "-r", dst+"@"+s2)
		rep := run("missing")
		c, _ := checkByName(rep, "snapshot "+dst)
		if rep.Ready || c.OK || !strings.Contains(c.Reason, "is behind") || !strings.Contains(c.Reason, s2) {
			t.Fatalf("want no with the replica behind %s: ready=%v %+v", s2, rep.Ready, c)
		}
	})

	t.Run("passive snapshot is not the active's", func(t *testing.T) {
		// The replica takes writes of its own and a snapshot named like the
		// active's newest: the name matches, the content does not.
		zfs(t, "set", "readonly=off", dst)
		zfs(t, "mount", dst)
		writeFiles(t, dst, "xx", 3)
		zfs(t, "snapshot", "-r", dst+"@"+s2)
		rep := run("diverged")
		c, _ := checkByName(rep, "snapshot "+dst)
		if rep.Ready || c.OK || !strings.Contains(c.Reason, "diverged") || !strings.Contains(c.Reason, "guid") {
			t.Fatalf("want no with a diverged replica: ready=%v %+v", rep.Ready, c)
		}
	})

	t.Run("active refuses reads outside its roots and snapshot", func(t *testing.T) {
		guid := func(snap string) uint64 {
			g, err := snapshotGUID(ctx, z, snap)
			if err != nil {
				t.Fatal(err)
			}
			return g
		}
		resp, err := peer.DrillSample(ctx, zfsrpc.DrillSampleRequest{Snapshot: src + "@" + s2, GUID: guid(src + "@" + s2), Paths: []string{"escape"}, FileBytes: 1024})
		if err != nil || resp.Files[0].SHA256 != "" || resp.Files[0].Error == "" {
			t.Errorf("symlink out of the snapshot: %+v %v", resp, err)
		}
		if _, err := peer.DrillSample(ctx, zfsrpc.DrillSampleRequest{Snapshot: dst + "@" + s2, Paths: []string{"xx"}, FileBytes: 1024}); err == nil || !strings.Contains(err.Error(), "not under a replicated root") {
			t.Errorf("a snapshot outside the active's roots: %v", err)
		}
	})
}
