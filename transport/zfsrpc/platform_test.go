//go:build platform

package zfsrpc

// Replication between two network namespaces in the lab VM, each side a
// separate process: the receiver runs this test binary again inside its
// namespace (TestMain's helper mode). The link between them is a veth pair
// the test pulls like a cable.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/fixtures/testpool"
	"github.com/zrepl-ha/zrepl-ha/transport"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

const (
	helperEnv = "ZREPLHA_ZFSRPC_HELPER" // listen-address,target-root,cert-dir
	silentEnv = "ZREPLHA_ZFSRPC_SILENT" // listen-address
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		f := strings.Split(spec, ",")
		os.Exit(serveHelper(f[0], f[1], f[2]))
	}
	if addr := os.Getenv(silentEnv); addr != "" {
		os.Exit(silentHelper(addr))
	}
	os.Exit(m.Run())
}

// silentHelper accepts connections and reads their requests but never
// answers: a peer busy with a long listing. Its kernel still acknowledges
// everything, so only a dead path may fail the caller early.
func silentHelper(addr string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ln, err := transport.Listen(addr, "beta", "alpha", transport.Security{Plaintext: true}, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for {
		c, err := ln.Accept(context.Background())
		if err != nil {
			return 1
		}
		go func() {
			for {
				if _, err := c.Recv(); err != nil {
					return
				}
			}
		}()
	}
}

func serveHelper(addr, root, certDir string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	files, err := transport.LoadTLS(certDir+"/beta.crt", certDir+"/beta.key", certDir+"/alpha.crt")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := transport.Listen(addr, "beta", "alpha", transport.Security{TLS: files.ServerConfig()}, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := &Server{Receiver: &zfsrepl.LocalReceiver{ZFS: zfsrepl.NewExec(zfsrepl.Binaries{}, nil), Sender: "alpha"}, Roots: []string{root}, Log: log}
	ServeListener(context.Background(), ln, srv, 6*time.Second, log)
	return 0
}

func sh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
	return string(out)
}

type link struct {
	ns, hostIf, peerIf string
	addr               string // receiver's transport address
}

// newLink makes namespace ns with a veth pair to the VM's root namespace,
// addressed inside 198.18.0.0/15 (the lab's own range, no route out).
func newLink(t *testing.T, n int) *link {
	b := make([]byte, 3)
	rand.Read(b)
	peerIf := "vp" + hex.EncodeToString(b)
	l := &link{ns: "zr" + hex.EncodeToString(b), hostIf: "vh" + hex.EncodeToString(b), peerIf: peerIf}
	hostIP, nsIP := fmt.Sprintf("198.18.%d.1", n), fmt.Sprintf("198.18.%d.2", n)
	sh(t, "ip", "netns", "add", l.ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", l.ns).Run() })
	sh(t, "ip", "link", "add", l.hostIf, "type", "veth", "peer", "name", peerIf)
	t.Cleanup(func() { exec.Command("ip", "link", "del", l.hostIf).Run() })
	sh(t, "ip", "link", "set", peerIf, "netns", l.ns)
	sh(t, "ip", "addr", "add", hostIP+"/30", "dev", l.hostIf)
	sh(t, "ip", "link", "set", l.hostIf, "up")
	sh(t, "ip", "netns", "exec", l.ns, "ip", "addr", "add", nsIP+"/30", "dev", peerIf)
	sh(t, "ip", "netns", "exec", l.ns, "ip", "link", "set", peerIf, "up")
	sh(t, "ip", "netns", "exec", l.ns, "ip", "link", "set", "lo", "up")
	l.addr = nsIP + ":7701"
	return l
}

// startPeer runs this test binary inside the namespace in the helper mode
// env selects, and waits (bounded) until it listens on l.addr.
func (l *link) startPeer(t *testing.T, env string) {
	t.Helper()
	helper := exec.Command("ip", "netns", "exec", l.ns, os.Args[0])
	helper.Env = append(os.Environ(), env)
	helper.Stdout, helper.Stderr = os.Stderr, os.Stderr
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { helper.Process.Kill(); helper.Wait() })
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", l.addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if i == 50 {
			t.Fatalf("the peer in %s never listened: %v", l.ns, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pullFar takes the namespace's end down: this side keeps its address and
// route and only loses the carrier, as with a cable pulled at the peer.
func (l *link) pullFar(t *testing.T) {
	sh(t, "ip", "netns", "exec", l.ns, "ip", "link", "set", l.peerIf, "down")
}

func (l *link) pull(t *testing.T, up bool) {
	state := "down"
	if up {
		state = "up"
	}
	sh(t, "ip", "link", "set", l.hostIf, state)
}

func pool(t *testing.T) string {
	return testpool.New(t, "zr", 512<<20, "-O", "compression=off").Name
}

func sums(t *testing.T, dir string) string {
	h := sha256.New()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%s %x\n", e.Name(), sha256.Sum256(b))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func write(t *testing.T, dir, prefix string, n, size int) {
	for i := 0; i < n; i++ {
		b := make([]byte, size)
		rand.Read(b[:size/2])
		copy(b[size/2:], bytes.Repeat([]byte("text "), size/10))
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s%03d", prefix, i)), b, 0o644)
	}
	sh(t, "sync")
}

func TestPlatformReplicationAcrossNamespacesWithCablePull(t *testing.T) {
	src, dst := pool(t), pool(t)
	l := newLink(t, 9)
	srcRoot, dstRoot := src+"/data", dst+"/data"
	// Real mutual TLS with pinned certificates, as in production.
	certDir := t.TempDir()
	for _, node := range []string{"alpha", "beta"} {
		crt, key, err := transport.GenerateCert(node, 24*time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(certDir, node+".crt"), crt, 0o644)
		os.WriteFile(filepath.Join(certDir, node+".key"), key, 0o600)
	}
	files, err := transport.LoadTLS(certDir+"/alpha.crt", certDir+"/alpha.key", certDir+"/beta.crt")
	if err != nil {
		t.Fatal(err)
	}
	l.startPeer(t, helperEnv+"="+l.addr+","+dstRoot+","+certDir)
	sh(t, "zfs", "create", srcRoot)
	mp := strings.TrimSpace(sh(t, "zfs", "get", "-H", "-o", "value", "mountpoint", srcRoot))
	write(t, mp, "a", 4, 256<<10)
	z := zfsrepl.NewExec(zfsrepl.Binaries{}, nil)
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	snap := func() {
		now = now.Add(time.Second)
		if _, err := zfsrepl.TakeSnapshot(context.Background(), z, srcRoot, now); err != nil {
			t.Fatal(err)
		}
	}
	client := &Client{Addr: l.addr, Local: "alpha", Peer: "beta", Sec: transport.Security{TLS: files.ClientConfig()},
		Stream: transport.StreamOptions{Mode: transport.ModeZstd, Level: 3, Stall: 6 * time.Second, Stats: &transport.StreamStats{}}}
	eng := &zfsrepl.Engine{ZFS: z, Peer: "beta"}
	root := zfsrepl.Root{Source: srcRoot, Target: dstRoot}
	replicate := func() (*zfsrepl.Report, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		return eng.Replicate(ctx, root, client)
	}
	snap()
	rep, err := replicate()
	if err != nil || rep.FullSends() != 1 {
		t.Fatalf("initial over the link: %v", err)
	}
	// A large incremental; the cable is pulled while it flows.
	write(t, mp, "b", 48, 1<<20)
	snap()
	done := make(chan error, 1)
	go func() { _, err := replicate(); done <- err }()
	// Pull once 8 MiB have crossed the link (bounded wait).
	for i := 0; i < 1200 && client.Stream.Stats.BytesIn.Load() < 8<<20; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	l.pull(t, false)
	err = <-done
	if err == nil {
		t.Fatal("a transfer with the cable pulled succeeded")
	}
	t.Logf("with the cable pulled: %v", err)
	if !errors.Is(err, transport.ErrStalled) && !strings.Contains(err.Error(), "stall") && !strings.Contains(err.Error(), "resum") {
		t.Logf("note: error is not a stall: %v", err)
	}
	l.pull(t, true)
	// The next cycle resumes from the receiver's token: no full send.
	for i := 0; i < 5; i++ {
		if rep, err = replicate(); err == nil {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil {
		t.Fatalf("after the cable is back: %v", err)
	}
	resumed := false
	for _, s := range rep.Steps {
		if s.Step.Kind == zfsrepl.StepFull {
			t.Fatalf("full resend after a cable pull: %s", s.Step)
		}
		resumed = resumed || s.Step.Kind == zfsrepl.StepResume
	}
	if !resumed {
		t.Fatal("no resume step after the cable pull")
	}
	sh(t, "zfs", "mount", dstRoot)
	dmp := strings.TrimSpace(sh(t, "zfs", "get", "-H", "-o", "value", "mountpoint", dstRoot))
	if sums(t, mp) != sums(t, dmp) {
		t.Fatal("files differ after replication over the link")
	}
	_ = io.Discard
}

// TestPlatformCallFailsSoonAfterTheCableGoes: a call waiting for a peer
// that is alive but slow keeps waiting; once the cable is pulled at the
// peer's end it fails within seconds (keepalive and user timeout), not
// after the call's two-minute timeout. Before, a cycle whose tree listing
// was in flight when the heartbeat cable went hung for those two minutes
// before it tried the public path.
func TestPlatformCallFailsSoonAfterTheCableGoes(t *testing.T) {
	l := newLink(t, 11)
	l.startPeer(t, silentEnv+"="+l.addr)
	client := &Client{Addr: l.addr, Local: "alpha", Peer: "beta", Sec: transport.Security{Plaintext: true}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { _, err := client.Tree(ctx, "tank/data"); done <- err }()
	// Idle but alive for longer than the keepalive needs to fail a dead
	// path: the call must still be waiting.
	select {
	case err := <-done:
		t.Fatalf("the call to a slow but live peer ended after %s: %v", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(15 * time.Second):
	}
	l.pullFar(t)
	pulled := time.Now()
	select {
	case err := <-done:
		took := time.Since(pulled)
		t.Logf("measured: the call failed %s after the cable was pulled: %v", took.Round(time.Millisecond), err)
		if err == nil {
			t.Fatal("the call succeeded with no answer")
		}
		if took > 25*time.Second {
			t.Errorf("the call failed %s after the pull; the dead path should be found in about %s", took, 10*time.Second)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("the call still waits 40 s after the cable was pulled")
	}
}
