package watchdog

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeDevice is a regular file standing in for /dev/watchdog: it records
// every byte written, and ioctls on it fail with ENOTTY as on any non-device.
func fakeDevice(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "watchdog")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func written(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPetThenCloseWritesPetsThenMagic(t *testing.T) {
	dev := fakeDevice(t)
	w, err := Open(dev, Options{Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if w.Timeout() != 0 {
		t.Errorf("a regular file reported timeout %s", w.Timeout())
	}
	for range 3 {
		if err := w.Pet(); err != nil {
			t.Fatal(err)
		}
	}
	if got := written(t, dev); got != "..." {
		t.Fatalf("after 3 pets the device got %q", got)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := written(t, dev); got != "...V" {
		t.Fatalf("after Close the device got %q, want the pets then one 'V'", got)
	}
}

func TestAfterCloseEverythingFails(t *testing.T) {
	dev := fakeDevice(t)
	w, err := Open(dev, Options{Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Pet(); !errors.Is(err, ErrClosed) {
		t.Errorf("Pet after Close: %v", err)
	}
	if err := w.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	if got := written(t, dev); got != "V" {
		t.Errorf("device got %q", got)
	}
}

// Pets reach the device as they happen (no buffering): a pipe shows each
// byte on its read end right after Pet returns.
func TestPetsAreNotBuffered(t *testing.T) {
	r, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer wr.Close()
	w, err := Open(filepath.Join("/proc/self/fd", strconv.Itoa(int(wr.Fd()))), Options{Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	for i := range 3 {
		if err := w.Pet(); err != nil {
			t.Fatal(err)
		}
		r.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := r.Read(buf)
		if err != nil || string(buf[:n]) != "." {
			t.Fatalf("pet %d: read %q, %v", i, buf[:n], err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	n, err := r.Read(buf)
	if err != nil || string(buf[:n]) != "V" {
		t.Fatalf("magic close: read %q, %v", buf[:n], err)
	}
}

// Run pets only while alive() holds, never writes the magic byte (a
// cancelled Run is not a clean shutdown), and resumes when alive again.
func TestRunPetsOnlyWhileAlive(t *testing.T) {
	dev := fakeDevice(t)
	w, err := Open(dev, Options{Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var isAlive atomic.Bool
	var calls atomic.Int64
	isAlive.Store(true)
	alive := func() bool { calls.Add(1); return isAlive.Load() }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, 2*time.Millisecond, alive) }()
	size := func() int { return len(written(t, dev)) }

	waitFor(t, func() bool { return size() >= 3 })
	isAlive.Store(false)
	// Run is sequential (alive, then pet, per tick): two further alive
	// calls mean the pet of any tick in flight at the switch has landed.
	c := calls.Load()
	waitFor(t, func() bool { return calls.Load() >= c+2 })
	stalledAt := size()
	c = calls.Load()
	waitFor(t, func() bool { return calls.Load() >= c+5 })
	if got := size(); got != stalledAt {
		t.Fatalf("petted while not alive: %d bytes, then %d", stalledAt, got)
	}
	isAlive.Store(true)
	waitFor(t, func() bool { return size() >= stalledAt+2 })

	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if got := written(t, dev); bytes.ContainsRune([]byte(got), 'V') || got != string(bytes.Repeat([]byte{'.'}, len(got))) {
		t.Fatalf("Run wrote %q; it must write only pets", got)
	}
}

func TestRunChecksInterval(t *testing.T) {
	w, err := Open(fakeDevice(t), Options{Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	always := func() bool { return true }
	if err := w.Run(context.Background(), 0, always); err == nil {
		t.Error("interval 0 accepted")
	}
	w.timeout = 2 * time.Second // as a driver would report it
	if err := w.Run(context.Background(), 2*time.Second, always); err == nil {
		t.Error("an interval equal to the device timeout accepted")
	}
}

// Run returns a failed pet instead of carrying on as if the node were safe.
func TestRunReturnsPetError(t *testing.T) {
	w, err := Open(fakeDevice(t), Options{Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	w.f.Close() // the descriptor breaks under the Watchdog
	err = w.Run(context.Background(), time.Millisecond, func() bool { return true })
	if !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("Run returned %v", err)
	}
}

// Setting a timeout on something that is not a watchdog fails, and Open
// magic-closes what it opened so that a real device is not left running
// with nobody petting it.
func TestOpenSetTimeoutFailureMagicCloses(t *testing.T) {
	dev := fakeDevice(t)
	_, err := Open(dev, Options{Timeout: 2 * time.Second, Log: quiet()})
	if !errors.Is(err, unix.ENOTTY) {
		t.Fatalf("want ENOTTY, got %v", err)
	}
	if got := written(t, dev); got != "V" {
		t.Fatalf("device got %q, want a magic close", got)
	}
}

func TestOpenMissingDevice(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "nope"), Options{Log: quiet()})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}
