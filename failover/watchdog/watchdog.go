package watchdog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned by Pet and Close after Close.
var ErrClosed = errors.New("watchdog already closed")

// The bytes written to the device. Any write pets it; a 'V' anywhere in a
// write arms the magic close, so a pet must never contain one: a stray 'V'
// followed by a crash would stop the watchdog instead of resetting the node.
var (
	petByte   = []byte{'.'}
	magicByte = []byte{'V'}
)

// Options for Open.
type Options struct {
	// Timeout, when positive, is set on the device (WDIOC_SETTIMEOUT, whole
	// seconds, rounded up). Zero keeps the driver's current timeout.
	Timeout time.Duration
	Log     *slog.Logger // slog.Default() when nil
}

// Watchdog is an open watchdog device. Its methods are safe for concurrent
// use.
type Watchdog struct {
	path    string
	timeout time.Duration // as the driver reports it; 0 when unknown
	log     *slog.Logger

	mu sync.Mutex
	f  *os.File // nil after Close
}

// Open opens the device, which starts its timer: the caller must pet it
// within the timeout from here on. If setting the timeout fails, Open
// magic-closes the device again, since nobody will pet it.
func Open(path string, opts Options) (*Watchdog, error) {
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	// os.OpenFile sets O_CLOEXEC: a child process (zfs, exportfs) must not
	// inherit the descriptor, or the device would stay open, and /dev/watchdog
	// busy, after the daemon is gone.
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("open watchdog: %w", err)
	}
	w := &Watchdog{path: path, log: log, f: f}
	if opts.Timeout > 0 {
		secs := int((opts.Timeout + time.Second - 1) / time.Second)
		// SETTIMEOUT takes a pointer to an int and writes back the
		// timeout the driver actually chose.
		if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.WDIOC_SETTIMEOUT, secs); err != nil {
			cerr := w.Close()
			return nil, errors.Join(fmt.Errorf("set watchdog timeout of %s to %ds: %w", path, secs, err), cerr)
		}
	}
	// Drivers without GETTIMEOUT (and the fake devices of the tests) leave
	// the timeout unknown; Run then cannot check its interval against it.
	if secs, err := unix.IoctlGetInt(int(f.Fd()), unix.WDIOC_GETTIMEOUT); err == nil && secs > 0 {
		w.timeout = time.Duration(secs) * time.Second
	}
	log.Info("watchdog open", "device", path, "timeout", w.timeout)
	return w, nil
}

// Timeout is the device's timeout as the driver reports it, 0 if unknown.
func (w *Watchdog) Timeout() time.Duration { return w.timeout }

// Pet restarts the device's timer.
func (w *Watchdog) Pet() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return ErrClosed
	}
	if _, err := w.f.Write(petByte); err != nil {
		return fmt.Errorf("pet watchdog %s: %w", w.path, err)
	}
	return nil
}

// Run pets the device every interval for as long as alive() returns true,
// until ctx ends; then it returns ctx's error without closing the device. A
// tick where alive() is false is skipped: if the daemon's loop stays stuck
// for longer than the timeout, the node resets. alive is the daemon's own
// liveness check, typically "the decision loop completed an iteration within
// the last few intervals". Run returns early if a pet fails.
func (w *Watchdog) Run(ctx context.Context, interval time.Duration, alive func() bool) error {
	if interval <= 0 {
		return fmt.Errorf("watchdog interval must be positive, got %s", interval)
	}
	if w.timeout > 0 && interval >= w.timeout {
		return fmt.Errorf("watchdog interval %s must be shorter than the device timeout %s", interval, w.timeout)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	stalled := false
	for {
		if alive() {
			if stalled {
				w.log.Info("watchdog: the decision loop is alive again; petting")
				stalled = false
			}
			if err := w.Pet(); err != nil {
				return err
			}
		} else if !stalled {
			w.log.Error("watchdog: the decision loop is not alive; not petting (the node resets unless it recovers)", "timeout", w.timeout)
			stalled = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Close stops the watchdog with the magic close and closes the device. Call
// it on a clean shutdown only (see the package comment). If the magic write
// fails the timer keeps running and the node resets; the error says so.
func (w *Watchdog) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return ErrClosed
	}
	_, werr := w.f.Write(magicByte)
	cerr := w.f.Close()
	w.f = nil
	if werr != nil {
		return fmt.Errorf("magic close of watchdog %s failed, the node will reset: %w", w.path, werr)
	}
	if cerr != nil {
		return fmt.Errorf("close watchdog %s: %w", w.path, cerr)
	}
	w.log.Info("watchdog stopped (magic close)", "device", w.path)
	return nil
}
