//go:build platform

package shares

// Runs inside the lab VM:
//   go run ./fixtures/lab/cmd/lab gotest -pkgs ./failover/shares -jsondir .lab/shares -- -test.run TestPlatform -test.v
// Real ZFS, the real kernel NFS server and Samba, and userspace clients
// (libnfs's nfs-cp, smbclient) in a client namespace.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/fixtures/testpool"
	"github.com/zrepl-ha/zrepl-ha/internal/command"
	"github.com/zrepl-ha/zrepl-ha/internal/config"
	"github.com/zrepl-ha/zrepl-ha/internal/syncbuf"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestPlatformSharesExportUnexport(t *testing.T) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()

	pool := testpool.New(t, "zs", 256<<20)
	ds := pool.Name + "/share"
	testpool.Run(t, "zfs", "create", ds)
	z := zfsrepl.NewExec(zfsrepl.Binaries{}, nil)
	mp, err := z.GetProperty(ctx, ds, "mountpoint")
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 3<<20)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(mp, "data.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	want := fileSum(t, filepath.Join(mp, "data.bin"))
	// smbd works as the guest (nobody), which must be able to walk down to
	// the share; t.TempDir makes its directories 0700.
	for d := mp; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}

	// NFS through the production paths (exportfs reads only /etc/exports
	// and /etc/exports.d); the guest's root is a throwaway overlay.
	// Samba through a test smb.conf that includes our file.
	smbDir := filepath.Join(dir, "samba")
	os.MkdirAll(smbDir, 0o755)
	paths := Paths{
		SMBConf:    filepath.Join(smbDir, "smb.conf"),
		SMBInclude: filepath.Join(smbDir, "zrepl-ha.conf"),
	}
	m := &Manager{
		NFS: []config.NFSShare{{Dataset: ds, Clients: "198.18.77.0/24", Options: "ro,no_subtree_check,insecure"}},
		SMB: []config.SMBShare{{Name: "zdata", Dataset: ds, Options: map[string]string{"guest ok": "yes", "read only": "yes"}}},
		ZFS: z, Paths: paths,
		Exec: Runner{R: &command.Runner{Logger: slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))}},
	}
	var logged syncbuf.Buffer
	m.Log = slog.New(slog.NewTextHandler(io.MultiWriter(tlog{t}, &logged), &slog.HandlerOptions{Level: slog.LevelDebug}))
	if changed, err := m.WriteNFSConf(10*time.Second, 10*time.Second); err != nil || !changed {
		t.Fatalf("WriteNFSConf: %v %v", changed, err)
	}
	if err := os.WriteFile(paths.SMBConf, []byte(smbConf(smbDir, paths.SMBInclude)), 0o644); err != nil {
		t.Fatal(err)
	}
	// An empty include before smbd's first start, as Unexport leaves it.
	if err := m.Unexport(ctx); err != nil {
		t.Fatalf("Unexport before the servers run: %v", err)
	}

	t0 := time.Now()
	startNFS(t, dir)
	stopSMB := startSMB(t, smbDir, paths.SMBConf)
	t.Logf("servers up in %s", time.Since(t0).Round(time.Millisecond))
	if g, _ := os.ReadFile("/proc/fs/nfsd/nfsv4gracetime"); strings.TrimSpace(string(g)) != "10" {
		t.Errorf("nfsv4gracetime = %q after rpc.nfsd read our drop-in, want 10", g)
	}
	if g, _ := os.ReadFile("/proc/fs/nfsd/nfsv4leasetime"); strings.TrimSpace(string(g)) != "10" {
		t.Errorf("nfsv4leasetime = %q, want 10", g)
	}
	ns := clientNS(t)
	if err := m.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}

	home := filepath.Join(dir, "home")
	os.MkdirAll(home, 0o755)
	nfsURL := "nfs://" + serverIP + mp + "/data.bin"
	getNFS := func(out string) (string, error) {
		os.Remove(out)
		return inClient(ns, home, "nfs-cp", nfsURL, out)
	}
	getSMB := func(out string) (string, error) {
		os.Remove(out)
		return inClient(ns, home, "smbclient", "//"+serverIP+"/zdata", "-N", "-c", "get data.bin "+out)
	}
	readBoth := func(round string) {
		t.Helper()
		for _, c := range []struct {
			proto string
			get   func(string) (string, error)
		}{{"nfs", getNFS}, {"smb", getSMB}} {
			out := filepath.Join(dir, strings.ReplaceAll(round, " ", "-")+"."+c.proto)
			t1 := time.Now()
			if msg, err := c.get(out); err != nil {
				t.Fatalf("%s: %s read failed: %v\n%s", round, c.proto, err, msg)
			}
			if got := fileSum(t, out); got != want {
				t.Fatalf("%s: %s read sha256 %s, want %s", round, c.proto, got, want)
			}
			t.Logf("%s: %s read 3 MiB, checksum ok (%s)", round, c.proto, time.Since(t1).Round(time.Millisecond))
		}
	}
	refuseBoth := func(round string) {
		t.Helper()
		base := filepath.Join(dir, strings.ReplaceAll(round, " ", "-"))
		if msg, err := getNFS(base + ".nfs"); err == nil {
			t.Errorf("%s: nfs-cp succeeded after Unexport:\n%s", round, msg)
		} else {
			t.Logf("%s: nfs refused: %v: %s", round, err, strings.TrimSpace(msg))
		}
		if msg, err := getSMB(base + ".smb"); err == nil {
			t.Errorf("%s: smbclient succeeded after Unexport:\n%s", round, msg)
		} else if !strings.Contains(msg, "NT_STATUS_BAD_NETWORK_NAME") {
			t.Errorf("%s: smbclient failed, but not because the share is gone: %v\n%s", round, err, msg)
		}
	}

	// Not exported yet: both refuse.
	refuseBoth("before export")

	t1 := time.Now()
	if err := m.Export(ctx); err != nil {
		t.Fatalf("Export: %v", err)
	}
	t.Logf("Export took %s", time.Since(t1).Round(time.Millisecond))
	// The fast path: a SIGHUP to the smbd named by the test smb.conf's pid
	// directory, not an smbcontrol process.
	if !strings.Contains(logged.String(), "smbd reloaded by SIGHUP") {
		t.Errorf("Export did not reload smbd by SIGHUP:\n%s", logged.String())
	}
	if ok, err := m.Exported(ctx); err != nil || !ok {
		t.Fatalf("Exported = %v, %v after Export", ok, err)
	}
	etab, _ := os.ReadFile("/var/lib/nfs/etab")
	if !strings.Contains(string(etab), "fsid="+FSID(ds)) {
		t.Errorf("the kernel's export table lacks fsid=%s:\n%s", FSID(ds), etab)
	}
	readBoth("exported")
	if err := m.Export(ctx); err != nil {
		t.Fatalf("second Export: %v", err)
	}
	readBoth("exported twice")

	t1 = time.Now()
	if err := m.Unexport(ctx); err != nil {
		t.Fatalf("Unexport: %v", err)
	}
	t.Logf("Unexport took %s", time.Since(t1).Round(time.Millisecond))
	if ok, err := m.Exported(ctx); err != nil || ok {
		t.Fatalf("Exported = %v, %v after Unexport", ok, err)
	}
	refuseBoth("unexported")
	if err := m.Unexport(ctx); err != nil {
		t.Fatalf("second Unexport: %v", err)
	}

	if err := m.Export(ctx); err != nil {
		t.Fatalf("Export again: %v", err)
	}
	readBoth("exported again")

	// smbd gone: Export must say so; Unexport has nothing to take away
	// from it and succeeds.
	stopSMB()
	err = m.Export(ctx)
	if !errors.Is(err, ErrSMBDNotRunning) {
		t.Errorf("Export with smbd stopped: %v, want ErrSMBDNotRunning", err)
	} else {
		t.Logf("Export with smbd stopped: %v", err)
	}
	if err := m.Unexport(ctx); err != nil {
		t.Errorf("Unexport with smbd stopped: %v", err)
	}
	if b, _ := os.ReadFile("/etc/exports"); len(b) > 0 && strings.Contains(string(b), mp) {
		t.Errorf("/etc/exports was touched:\n%s", b)
	}
	t.Logf("whole test %s", time.Since(start).Round(time.Millisecond))
}

// tlog sends log lines to the test's log.
type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
