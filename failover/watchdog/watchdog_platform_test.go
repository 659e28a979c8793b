//go:build platform

package watchdog

// Runs inside the lab VM (go run ./fixtures/lab/cmd/lab gotest -pkgs
// ./failover/watchdog ...), against the kernel's softdog. If petting did not
// work, or the magic close did not stop the timer, softdog would reset the
// VM and the run would end without this test's PASS line. That the reset
// itself happens when petting stops is shown from the host, where the VM's
// end can be observed: fixtures/lab TestPlatformLabWatchdog*.

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// softdog loads the softdog module with the given margin and returns the
// device and its sysfs directory.
func softdog(t *testing.T, margin int) (dev, sysfs string) {
	t.Helper()
	out, err := exec.Command("modprobe", "softdog", "soft_margin="+strconv.Itoa(margin)).CombinedOutput()
	if err != nil {
		t.Fatalf("modprobe softdog: %v: %s", err, out)
	}
	dirs, _ := filepath.Glob("/sys/class/watchdog/watchdog*")
	for _, d := range dirs {
		if id, _ := os.ReadFile(filepath.Join(d, "identity")); strings.TrimSpace(string(id)) == "Software Watchdog" {
			return "/dev/" + filepath.Base(d), d
		}
	}
	t.Fatalf("softdog loaded but no watchdog in /sys/class/watchdog has identity \"Software Watchdog\" (found %v)", dirs)
	return "", ""
}

func sysfsValue(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestPlatformWatchdogPetKeepsNodeUpAndMagicCloseStops(t *testing.T) {
	dev, sysfs := softdog(t, 2)
	if s := sysfsValue(t, sysfs, "state"); s != "inactive" {
		t.Fatalf("softdog state before Open: %s", s)
	}
	// 3 s rather than the module's 2 s shows SETTIMEOUT took effect.
	w, err := Open(dev, Options{Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if w.Timeout() != 3*time.Second || sysfsValue(t, sysfs, "timeout") != "3" {
		t.Fatalf("timeout: Open reports %s, sysfs %s; want 3s", w.Timeout(), sysfsValue(t, sysfs, "timeout"))
	}
	if s := sysfsValue(t, sysfs, "state"); s != "active" {
		t.Fatalf("state after Open: %s", s)
	}

	// Pet for more than twice the timeout: without working pets the VM
	// resets in the middle of this.
	ctx, cancel := context.WithTimeout(context.Background(), 7*time.Second)
	defer cancel()
	start := time.Now()
	if err := w.Run(ctx, 500*time.Millisecond, func() bool { return true }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("petted for %s with a 3s timeout; still up", time.Since(start).Round(time.Millisecond))

	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if s := sysfsValue(t, sysfs, "state"); s != "inactive" {
		t.Fatalf("state after the magic close: %s", s)
	}
	// Waiting is the point here: longer than the timeout with nobody
	// petting, and the VM must still be up.
	time.Sleep(5 * time.Second)
	if s := sysfsValue(t, sysfs, "state"); s != "inactive" {
		t.Fatalf("state 5s after the magic close: %s", s)
	}
	t.Log("5s after the magic close, still up and inactive")
}
