//go:build platform

package main

// Two real daemons (`zrepl-ha run`) on real OpenZFS in the lab VM, each in
// its own network namespace with its own pool: a heartbeat link (a veth
// pair between the namespaces) and a public network (a bridge in the VM's
// root namespace that also holds the tiebreaker address). The test pulls
// cables by setting links down and checks what the pair does, through
// `zrepl-ha status --json` like an admin would.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/failover"
	"github.com/zrepl-ha/zrepl-ha/fixtures/testpool"
)

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

type daemonNode struct {
	name, ns, pool, root string
	cfg, sock, log       string
	pubHost              string // the root-namespace end of its public veth
	cmd                  *exec.Cmd
	done                 chan struct{}
}

type pairLab struct {
	t      *testing.T
	dir    string
	nodes  [2]*daemonNode
	linkIf string // a's end of the heartbeat veth (inside a's namespace)
	bridge string
	mu     sync.Mutex
}

func newPairLab(t *testing.T) *pairLab {
	b := make([]byte, 2)
	rand.Read(b)
	id := hex.EncodeToString(b)
	l := &pairLab{t: t, dir: t.TempDir(), bridge: "zb" + id, linkIf: "zl" + id + "a"}
	mustRun(t, "ip", "link", "add", l.bridge, "type", "bridge")
	t.Cleanup(func() { exec.Command("ip", "link", "del", l.bridge).Run() })
	mustRun(t, "ip", "addr", "add", "198.18.20.254/24", "dev", l.bridge)
	mustRun(t, "ip", "link", "set", l.bridge, "up")
	for i, name := range []string{"a", "b"} {
		n := &daemonNode{name: name, ns: "zn" + id + name, pubHost: "zp" + id + name}
		n.pool = testpool.New(t, "zd"+name, 512<<20, "-O", "compression=off").Name
		n.root = n.pool + "/data"
		mustRun(t, "ip", "netns", "add", n.ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", n.ns).Run() })
		mustRun(t, "ip", "link", "add", n.pubHost, "type", "veth", "peer", "name", "eth0", "netns", n.ns)
		t.Cleanup(func() { exec.Command("ip", "link", "del", n.pubHost).Run() })
		mustRun(t, "ip", "link", "set", n.pubHost, "master", l.bridge, "up")
		l.nsRun(n, "ip", "addr", "add", fmt.Sprintf("198.18.20.%d/24", i+1), "dev", "eth0")
		l.nsRun(n, "ip", "link", "set", "eth0", "up")
		l.nsRun(n, "ip", "link", "set", "lo", "up")
		l.nodes[i] = n
	}
	a, bn := l.nodes[0], l.nodes[1]
	mustRun(t, "ip", "link", "add", l.linkIf, "netns", a.ns, "type", "veth", "peer", "name", "link0", "netns", bn.ns)
	l.nsRun(a, "ip", "link", "set", l.linkIf, "name", "link0")
	l.linkIf = "link0"
	for i, n := range l.nodes {
		l.nsRun(n, "ip", "addr", "add", fmt.Sprintf("198.18.21.%d/24", i+1), "dev", "link0")
		l.nsRun(n, "ip", "link", "set", "link0", "up")
	}
	mustRun(t, "zfs", "create", a.root)
	for i, n := range l.nodes {
		peer := l.nodes[1-i]
		role := map[int]string{0: "active", 1: "passive"}[i]
		n.sock = filepath.Join(l.dir, n.name, "control.sock")
		n.log = filepath.Join(l.dir, n.name+".log")
		n.cfg = filepath.Join(l.dir, n.name+".yaml")
		cfg := fmt.Sprintf(`node:
  name: %[1]s
  state_dir: %[2]s/%[1]s
  control_socket: %[3]s
  listen_link: 198.18.21.%[4]d:7701
  listen_public: 198.18.20.%[4]d:7701
peer:
  name: %[5]s
  link_address: 198.18.21.%[6]d:7701
  public_address: 198.18.20.%[6]d:7701
  initial_role: %[7]s
replication:
  roots:
    - source: %[8]s
      target: %[9]s
snapshots:
  cadence: "@every 2s"
transport:
  stall_timeout: 10s
  tls: {insecure_plaintext: true}
# Longer than the defaults: this test checks behaviour, not timing, and a
# loaded TCG VM stalls for seconds at a time (the scenario lab measures
# timing with the defaults).
heartbeat: {interval: 300ms, loss_threshold: 6s, fence_margin: 3s}
tiebreaker:
  targets: [{address: 198.18.20.254, method: icmp}]
  timeout: 1s
vip:
  address: 198.18.20.100/24
  interface: eth0
log: {level: info}
`, n.name, l.dir, n.sock, i+1, peer.name, 2-i, role, n.root, peer.root)
		if err := os.WriteFile(n.cfg, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// use makes t the test that l's helpers fail, for the length of a subtest.
func (l *pairLab) use(t *testing.T) (restore func()) {
	old := l.t
	l.t = t
	return func() { l.t = old }
}

func (l *pairLab) nsRun(n *daemonNode, args ...string) string {
	l.t.Helper()
	return mustRun(l.t, append([]string{"ip", "netns", "exec", n.ns}, args...)...)
}

// start runs `zrepl-ha run` for n in its namespace (the test binary acts
// as zrepl-ha).
func (l *pairLab) start(n *daemonNode) {
	f, err := os.OpenFile(n.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		l.t.Fatal(err)
	}
	// nsenter enters only the network namespace: `ip netns exec` would also
	// give the daemon its own mount namespace, hiding its mounts from us.
	n.cmd = exec.Command("nsenter", "--net=/run/netns/"+n.ns, os.Args[0], "--config", n.cfg, "run")
	n.cmd.Env = append(os.Environ(), mainEnv+"=1")
	n.cmd.Stdout, n.cmd.Stderr = f, f
	if err := n.cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	n.done = make(chan struct{})
	go func() { n.cmd.Wait(); f.Close(); close(n.done) }()
	l.t.Cleanup(func() { l.stop(n) })
}

func (l *pairLab) stop(n *daemonNode) {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	n.cmd.Process.Signal(os.Interrupt)
	select {
	case <-n.done:
	case <-time.After(15 * time.Second):
		n.cmd.Process.Kill()
		<-n.done
	}
}

func (l *pairLab) status(n *daemonNode) (failover.Status, error) {
	var out bytes.Buffer
	code := run([]string{"zrepl-ha", "status", "--json", "--socket", n.sock}, &out, &out)
	if code != 0 {
		return failover.Status{}, fmt.Errorf("status exit %d: %s", code, out.String())
	}
	var s failover.Status
	err := json.Unmarshal(out.Bytes(), &s)
	return s, err
}

// waitFor polls cond every 200 ms until it holds, or fails with the logs.
// The bounds are generous (a TCG VM on a loaded host stalls for seconds);
// the times that matter are logged, and measured properly by the
// scenarios on the two-VM lab.
func (l *pairLab) waitFor(what string, max time.Duration, cond func() bool) time.Duration {
	l.t.Helper()
	start := time.Now()
	for time.Since(start) < max {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(200 * time.Millisecond)
	}
	l.fail("%s: not within %s", what, max)
	return 0
}

func (l *pairLab) role(n *daemonNode) string {
	s, err := l.status(n)
	if err != nil {
		return "unreachable"
	}
	return s.Role
}

func (l *pairLab) fail(format string, args ...any) {
	l.t.Helper()
	var b strings.Builder
	for _, n := range l.nodes {
		s, err := l.status(n)
		fmt.Fprintf(&b, "--- %s status: %+v %v\n", n.name, s, err)
		log, _ := os.ReadFile(n.log)
		lines := strings.Split(string(log), "\n")
		fmt.Fprintf(&b, "--- %s log (last 60 lines):\n%s\n", n.name, strings.Join(lines[max(0, len(lines)-60):], "\n"))
	}
	l.t.Fatalf(format+"\n%s", append(args, b.String())...)
}

func mountpoint(t *testing.T, ds string) string {
	return mustRun(t, "zfs", "get", "-H", "-o", "value", "mountpoint", ds)
}

func fileSum(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func hasVIP(l *pairLab, n *daemonNode) bool {
	out, err := exec.Command("ip", "netns", "exec", n.ns, "ip", "-4", "addr", "show", "dev", "eth0").CombinedOutput()
	return err == nil && strings.Contains(string(out), "198.18.20.100/24")
}

func TestPlatformDaemonPairFailover(t *testing.T) {
	l := newPairLab(t)
	a, b := l.nodes[0], l.nodes[1]
	payload := make([]byte, 4<<20)
	rand.Read(payload)
	if err := os.WriteFile(filepath.Join(mountpoint(t, a.root), "file1"), payload, 0o644); err != nil {
		t.Fatal(err)
	}
	want := fileSum(t, filepath.Join(mountpoint(t, a.root), "file1"))
	l.start(a)
	l.start(b)
	t.Cleanup(func() {
		// The decisions and step timings, for the record.
		for _, n := range l.nodes {
			log, _ := os.ReadFile(n.log)
			for _, line := range strings.Split(string(log), "\n") {
				if strings.Contains(line, "failover decision") || strings.Contains(line, "promotion step") || strings.Contains(line, "failover action") {
					t.Logf("%s: %s", n.name, line)
				}
			}
		}
	})

	took := l.waitFor("a active, b passive", 180*time.Second, func() bool { return l.role(a) == "active" && l.role(b) == "passive" })
	t.Logf("pair formed in %s after start", took.Round(time.Millisecond))
	l.waitFor("a holds the VIP", 60*time.Second, func() bool { return hasVIP(l, a) })
	l.waitFor("the first snapshot replicated to b", 270*time.Second, func() bool {
		out, err := exec.Command("zfs", "list", "-H", "-t", "snapshot", "-o", "name", b.root).CombinedOutput()
		return err == nil && strings.Contains(string(out), "@zrepl-ha_")
	})
	if ro := mustRun(t, "zfs", "get", "-H", "-o", "value", "readonly", b.root); ro != "on" {
		t.Fatalf("the replica on b is readonly=%s", ro)
	}

	t.Run("heartbeat link pulled: no failover", func(t *testing.T) {
		defer l.use(t)()
		l.nsRun(a, "ip", "link", "set", "link0", "down")
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			if r := l.role(b); r != "passive" {
				l.fail("b became %s with only the link down", r)
			}
			time.Sleep(300 * time.Millisecond)
		}
		s, _ := l.status(a)
		if s.Role != "active" || len(s.Paths) != 2 || s.Paths[0].Up {
			l.fail("a's status with the link down: %+v", s)
		}
		l.nsRun(a, "ip", "link", "set", "link0", "up")
		l.waitFor("link back up in a's status", 60*time.Second, func() bool {
			s, err := l.status(a)
			return err == nil && len(s.Paths) == 2 && s.Paths[0].Up
		})
	})

	t.Run("active isolated: fences, passive promotes with the data", func(t *testing.T) {
		defer l.use(t)()
		// Let one more cycle land so b has everything.
		time.Sleep(5 * time.Second)
		start := time.Now()
		l.nsRun(a, "ip", "link", "set", "link0", "down")
		mustRun(t, "ip", "link", "set", a.pubHost, "down")
		fenced := l.waitFor("a fenced", 60*time.Second, func() bool { return l.role(a) == "fenced" })
		promoted := l.waitFor("b serving", 90*time.Second, func() bool { r := l.role(b); return r == "standalone" || r == "active" })
		l.waitFor("b holds the VIP", 60*time.Second, func() bool { return hasVIP(l, b) })
		served := time.Since(start)
		t.Logf("cable pull -> a fenced %s, b promoted %s, VIP on b %s", fenced.Round(time.Millisecond),
			(fenced + promoted).Round(time.Millisecond), served.Round(time.Millisecond))
		if hasVIP(l, a) {
			l.fail("the VIP is on both nodes")
		}
		if ro := mustRun(t, "zfs", "get", "-H", "-o", "value", "readonly", b.root); ro != "off" {
			l.fail("b's root is readonly=%s after promotion", ro)
		}
		if ep := mustRun(t, "zfs", "get", "-H", "-o", "value", failover.EpochProperty, b.root); ep != "1" {
			l.fail("b's epoch property is %q", ep)
		}
		if got := fileSum(t, filepath.Join(mountpoint(t, b.root), "file1")); got != want {
			l.fail("file1 on b: checksum %s, want %s", got, want)
		}
	})

	t.Run("cables back: the old active rejoins as passive of epoch 1", func(t *testing.T) {
		defer l.use(t)()
		mustRun(t, "ip", "link", "set", a.pubHost, "up")
		l.nsRun(a, "ip", "link", "set", "link0", "up")
		// Passive is decided before the rejoin runs; its rename and clone
		// of a's root must be over before the root is looked at.
		l.waitFor("a passive, its rejoin done", 90*time.Second, func() bool {
			s, err := l.status(a)
			return err == nil && s.Role == "passive" && s.Busy == ""
		})
		l.waitFor("b active", 90*time.Second, func() bool { return l.role(b) == "active" })
		s, _ := l.status(a)
		if s.Epoch != 1 {
			l.fail("a at epoch %d", s.Epoch)
		}
		// b now replicates to a: a new file on b reaches a.
		if err := os.WriteFile(filepath.Join(mountpoint(t, b.root), "file2"), payload[:1<<20], 0o644); err != nil {
			t.Fatal(err)
		}
		l.waitFor("file2 replicated to a", 270*time.Second, func() bool {
			out, err := exec.Command("zfs", "list", "-H", "-t", "snapshot", "-o", "name", "-s", "createtxg", a.root).CombinedOutput()
			if err != nil {
				return false
			}
			snaps := strings.Fields(string(out))
			if len(snaps) == 0 {
				return false
			}
			// The newest snapshot on a must contain file2.
			snapDir := filepath.Join(mountpoint(t, a.root), ".zfs", "snapshot", strings.SplitN(snaps[len(snaps)-1], "@", 2)[1])
			_, err = os.Stat(filepath.Join(snapDir, "file2"))
			return err == nil
		})
	})

	t.Run("switchover back to a", func(t *testing.T) {
		defer l.use(t)()
		var out bytes.Buffer
		start := time.Now()
		if code := run([]string{"zrepl-ha", "switchover", "--socket", b.sock}, &out, &out); code != 0 {
			l.fail("switchover: exit %d: %s", code, out.String())
		}
		l.waitFor("a active", 180*time.Second, func() bool { return l.role(a) == "active" })
		l.waitFor("a holds the VIP", 60*time.Second, func() bool { return hasVIP(l, a) })
		t.Logf("switchover b -> a: %s", time.Since(start).Round(time.Millisecond))
		l.waitFor("b passive", 60*time.Second, func() bool { return l.role(b) == "passive" })
		if hasVIP(l, b) {
			l.fail("the VIP is still on b")
		}
		if got := fileSum(t, filepath.Join(mountpoint(t, a.root), "file2")); got != fileSum(t, filepath.Join(mountpoint(t, b.root), "file2")) {
			l.fail("file2 differs after the switchover")
		}
		s, _ := l.status(a)
		if s.Epoch != 2 {
			l.fail("a at epoch %d after the switchover", s.Epoch)
		}
	})
	_ = context.Background
}
