package main

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeNotifySocket stands in for systemd's notify socket.
func fakeNotifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	dir, err := os.MkdirTemp("", "sd") // short: socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

// received returns the datagrams waiting on c.
func received(t *testing.T, c *net.UnixConn) []string {
	t.Helper()
	var out []string
	buf := make([]byte, 4096)
	for {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := c.Read(buf)
		if err != nil {
			return out
		}
		out = append(out, string(buf[:n]))
	}
}

func TestSystemdNotifyAndWatchdog(t *testing.T) {
	sock := fakeNotifySocket(t)
	t.Setenv("WATCHDOG_USEC", "4000000") // WatchdogSec=4
	t.Setenv("WATCHDOG_PID", "")
	sd := newSystemd(slog.New(slog.DiscardHandler))
	if sd.watchdog != 4*time.Second || sd.pinger() == nil {
		t.Fatalf("watchdog %v, pinger %v", sd.watchdog, sd.pinger())
	}
	now := time.Unix(1000, 0)
	sd.now = func() time.Time { return now }

	sd.notify("READY=1")
	for range 10 { // the loop's pace: many pets, one datagram
		if err := sd.Pet(); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(time.Second) // a quarter of WatchdogSec later: another
	if err := sd.Pet(); err != nil {
		t.Fatal(err)
	}
	sd.notify(sdReloading())
	sd.notify("STOPPING=1")
	got := received(t, sock)
	want := []string{"READY=1", "WATCHDOG=1", "WATCHDOG=1", "RELOADING=1", "STOPPING=1"}
	if len(got) != len(want) {
		t.Fatalf("datagrams %q, want %q", got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("datagram %d = %q, want %q", i, got[i], want[i])
		}
	}
	if !strings.Contains(got[3], "MONOTONIC_USEC=") {
		t.Errorf("RELOADING without MONOTONIC_USEC: %q", got[3])
	}
}

func TestSystemdOffOutsideSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	sd := newSystemd(slog.New(slog.DiscardHandler))
	if sd.pinger() != nil {
		t.Fatal("a watchdog pinger without WatchdogSec")
	}
	sd.notify("READY=1") // no socket: nothing, no error
	if err := sd.Pet(); err != nil {
		t.Fatal(err)
	}
	if watchdogs(nil, sd.pinger()) != nil {
		t.Error("watchdogs of nothing is not nil")
	}
}

// TestSystemdWatchdogOfAnotherProcess: WATCHDOG_PID names the process
// systemd watches; a child started with the variables must not pet.
func TestSystemdWatchdogOfAnotherProcess(t *testing.T) {
	fakeNotifySocket(t)
	t.Setenv("WATCHDOG_USEC", "4000000")
	t.Setenv("WATCHDOG_PID", "1")
	if sd := newSystemd(slog.New(slog.DiscardHandler)); sd.pinger() != nil {
		t.Fatal("petting another process's watchdog")
	}
}

// TestUnitFileExample: the shipped unit keeps what the daemon relies on.
func TestUnitFileExample(t *testing.T) {
	data, err := os.ReadFile("../../docs/examples/zrepl-ha.service")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = v
		}
	}
	for k, want := range map[string]string{
		"Type": "notify", "Restart": "on-failure", "ExecReload": "/bin/kill -HUP $MAINPID",
		"KillMode": "mixed", "NotifyAccess": "main",
	} {
		if keys[k] != want {
			t.Errorf("%s=%q, want %q", k, keys[k], want)
		}
	}
	if _, err := time.ParseDuration(keys["WatchdogSec"]); err != nil {
		t.Errorf("WatchdogSec=%q: %v", keys["WatchdogSec"], err)
	}
	for _, fam := range []string{"AF_NETLINK", "AF_PACKET", "AF_INET"} {
		if !strings.Contains(keys["RestrictAddressFamilies"], fam) {
			t.Errorf("RestrictAddressFamilies lacks %s (VIP, ARP, heartbeats)", fam)
		}
	}
	for _, ns := range []string{"ProtectSystem", "PrivateTmp", "ProtectHome", "PrivateDevices"} {
		if _, ok := keys[ns]; ok {
			t.Errorf("%s creates a mount namespace: zfs mounts would not reach the host", ns)
		}
	}
}
