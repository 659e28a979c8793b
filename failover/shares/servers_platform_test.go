//go:build platform

package shares

// Helpers for the lab test: the minimal manual start of the kernel NFS
// server and of smbd in a VM without systemd, and a client namespace.
// Everything runs inside the lab VM (fixtures/lab); the servers live in the
// VM's own network namespace, the client in a namespace the test creates,
// joined by a veth pair with addresses in 198.18.0.0/15 and no route out.
// Every wait is bounded.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	serverIP = "198.18.77.1"
	clientIP = "198.18.77.2"
)

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(c, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// daemon starts a foreground server as the test's child, its output in
// log, and stops it (SIGTERM, then SIGKILL after 10 s) at cleanup. The
// returned stop does the same earlier.
func daemon(t *testing.T, log string, name string, args ...string) (stop func()) {
	t.Helper()
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group (smbd then runs with --no-process-group: its
	// own setsid would fail in a group leader): a daemon that signals its
	// group on shutdown must not reach the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(done) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond every 100 ms until it returns nil or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s: %v", what, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startNFS is the minimal start of the kernel NFS server without systemd:
// the nfsd module and its control filesystem, rpcbind and rpc.mountd in
// the foreground, then rpc.nfsd, which reads nfs.conf (and our drop-in)
// and starts the kernel threads. Cleanup stops the threads and daemons.
func startNFS(t *testing.T, dir string) {
	t.Helper()
	run(t, "modprobe", "nfsd")
	if _, err := os.Stat("/proc/fs/nfsd/threads"); err != nil {
		run(t, "mount", "-t", "nfsd", "nfsd", "/proc/fs/nfsd")
	}
	os.MkdirAll("/run/rpcbind", 0o755)
	os.MkdirAll("/var/lib/nfs/v4recovery", 0o755)
	daemon(t, filepath.Join(dir, "rpcbind.log"), "rpcbind", "-f")
	waitFor(t, 10*time.Second, "rpcbind answers", func() error {
		_, err := exec.Command("rpcinfo", "-p", "127.0.0.1").CombinedOutput()
		return err
	})
	daemon(t, filepath.Join(dir, "mountd.log"), "rpc.mountd", "-F")
	waitFor(t, 10*time.Second, "rpc.mountd registered", func() error {
		out, err := exec.Command("rpcinfo", "-p", "127.0.0.1").CombinedOutput()
		if err == nil && !bytes.Contains(out, []byte("mountd")) {
			err = fmt.Errorf("not in rpcinfo -p:\n%s", out)
		}
		return err
	})
	run(t, "rpc.nfsd", "4")
	t.Cleanup(func() {
		exec.Command("rpc.nfsd", "0").Run()
		exec.Command("exportfs", "-au").Run()
	})
}

// smbConf is a standalone Samba for the test: its state under dir, guests
// mapped to nobody, and as the last line of [global] the include of
// zrepl-ha's file, as docs/shares.md tells admins to write it.
func smbConf(dir, include string) string {
	var b strings.Builder
	b.WriteString("[global]\n")
	for _, kv := range [][2]string{
		{"server role", "standalone server"},
		{"map to guest", "bad user"},
		{"guest account", "nobody"},
		{"disable netbios", "yes"},
		{"smb ports", "445"},
		{"load printers", "no"},
		{"printcap name", "/dev/null"},
		{"disable spoolss", "yes"},
		{"passdb backend", "tdbsam:" + filepath.Join(dir, "passdb.tdb")},
		{"lock directory", filepath.Join(dir, "lock")},
		{"state directory", filepath.Join(dir, "state")},
		{"cache directory", filepath.Join(dir, "cache")},
		{"pid directory", filepath.Join(dir, "pid")},
		{"private dir", filepath.Join(dir, "private")},
		{"ncalrpc dir", filepath.Join(dir, "ncalrpc")},
		{"log file", filepath.Join(dir, "log.%m")},
		{"usershare path", ""},
		{"include", include},
	} {
		fmt.Fprintf(&b, "\t%s = %s\n", kv[0], kv[1])
	}
	return b.String()
}

// startSMB runs smbd in the foreground with conf and waits until
// smbcontrol reaches it.
func startSMB(t *testing.T, dir, conf string) (stop func()) {
	t.Helper()
	for _, d := range []string{"lock", "state", "cache", "pid", "private", "ncalrpc"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	stop = daemon(t, filepath.Join(dir, "smbd.out"), "smbd", "--foreground", "--no-process-group", "--debug-stdout", "-s", conf)
	waitFor(t, 30*time.Second, "smbd answers smbcontrol ping", func() error {
		out, err := exec.Command("smbcontrol", "-s", conf, "smbd", "ping").CombinedOutput()
		if err != nil {
			log, _ := os.ReadFile(filepath.Join(dir, "smbd.out"))
			return fmt.Errorf("%v: %s\nsmbd output:\n%s", err, out, log)
		}
		return nil
	})
	return stop
}

// clientNS creates a namespace joined to the VM's namespace by a veth
// pair: serverIP on this side, clientIP in the namespace.
func clientNS(t *testing.T) string {
	t.Helper()
	b := make([]byte, 3)
	rand.Read(b)
	id := hex.EncodeToString(b)
	ns, host := "zsc"+id, "zsv"+id
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run(t, "ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
	t.Cleanup(func() { exec.Command("ip", "link", "del", host).Run() })
	run(t, "ip", "addr", "add", serverIP+"/24", "dev", host)
	run(t, "ip", "link", "set", host, "up")
	run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	run(t, "ip", "-n", ns, "addr", "add", clientIP+"/24", "dev", "eth0")
	run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	waitFor(t, 10*time.Second, "client reaches the server", func() error {
		out, err := exec.Command("ip", "netns", "exec", ns, "ping", "-c1", "-W1", serverIP).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	return ns
}

// inClient runs a client program in the namespace with a 30 s bound and
// returns its combined output.
func inClient(ns, home string, name string, args ...string) (string, error) {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(c, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+home)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
