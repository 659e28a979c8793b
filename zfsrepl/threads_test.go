package zfsrepl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fakeProc is a /proc tree holding only the stat files ThreadRaiser reads.
type fakeProc struct {
	t    *testing.T
	root string
}

func newFakeProc(t *testing.T) *fakeProc {
	return &fakeProc{t: t, root: t.TempDir()}
}

// put writes pid's stat line: kthread sets PF_KTHREAD in the flags.
func (f *fakeProc) put(pid int, comm string, kthread bool, nice int) {
	f.t.Helper()
	flags := 0x400040
	if kthread {
		flags |= pfKthread
	}
	line := fmt.Sprintf("%d (%s) S 2 0 0 0 -1 %d 0 0 0 0 0 0 0 0 %d %d 1 0 100 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
		pid, comm, flags, 20+nice, nice)
	dir := filepath.Join(f.root, strconv.Itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(line), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeProc) remove(pid int) {
	if err := os.RemoveAll(filepath.Join(f.root, strconv.Itoa(pid))); err != nil {
		f.t.Fatal(err)
	}
}

// reniced records SetNice calls and applies them to the fake tree.
type reniced struct {
	mu   sync.Mutex
	f    *fakeProc
	comm map[int]string
	got  []string
	fail map[int]error
}

func (r *reniced) set(pid, nice int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.fail[pid]; err != nil {
		return err
	}
	r.got = append(r.got, fmt.Sprintf("%d:%d", pid, nice))
	r.f.put(pid, r.comm[pid], true, nice)
	return nil
}

func (r *reniced) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func TestThreadRaiserRenicesOnlyZFSKernelThreads(t *testing.T) {
	f := newFakeProc(t)
	f.put(10, "send_traverse", true, 19)
	f.put(11, "kworker/0:1", true, 0)
	f.put(12, "send_mail", false, 19) // a user process with a send_ name
	f.put(13, "receive_writer", true, -5)
	f.put(14, "spa_async", true, 19) // OpenZFS's, but not a transfer's
	f.put(15, "send_reader (x)", true, 19)
	rn := &reniced{f: f, comm: map[int]string{10: "send_traverse", 15: "send_reader (x)", 16: "receive_writer"}}
	r := &ThreadRaiser{Proc: f.root, Nice: 0, SetNice: rn.set}

	n, err := r.Poll()
	if err != nil || n != 2 {
		t.Fatalf("Poll = %d, %v; want 2 threads reniced", n, err)
	}
	if got := rn.calls(); len(got) != 2 || got[0] != "10:0" || got[1] != "15:0" {
		t.Fatalf("reniced %v; want pid 10 and 15 to nice 0 only", got)
	}

	// A new transfer's thread appears; the ones done stay at 0.
	f.put(16, "receive_writer", true, 19)
	n, err = r.Poll()
	if err != nil || n != 1 {
		t.Fatalf("second Poll = %d, %v; want the new thread only", n, err)
	}
	// Our threads are read again each poll: OpenZFS sets nice 19 as the
	// thread starts, after it shows in /proc, so one seen at 0 early is
	// set again once it has dropped.
	f.put(16, "receive_writer", true, 19)
	if n, _ := r.Poll(); n != 1 {
		t.Fatalf("Poll after the thread's own renice = %d; want it raised again", n)
	}
	if r.Raised() != 4 {
		t.Fatalf("Raised = %d, want 4", r.Raised())
	}
}

func TestThreadRaiserForgetsEndedPids(t *testing.T) {
	f := newFakeProc(t)
	f.put(20, "kworker/u2:0", true, 0)
	rn := &reniced{f: f, comm: map[int]string{20: "send_merge"}}
	r := &ThreadRaiser{Proc: f.root, SetNice: rn.set}
	if n, _ := r.Poll(); n != 0 {
		t.Fatal("raised a kworker")
	}
	// The pid ends and comes back as a send thread: not hidden by the
	// kworker's entry.
	f.remove(20)
	if _, err := r.Poll(); err != nil {
		t.Fatal(err)
	}
	f.put(20, "send_merge", true, 19)
	if n, _ := r.Poll(); n != 1 {
		t.Fatalf("a reused pid was not read again: raised %d", n)
	}
}

func TestThreadRaiserReportsFailedRenices(t *testing.T) {
	f := newFakeProc(t)
	f.put(30, "send_traverse", true, 19)
	f.put(31, "send_reader", true, 19)
	rn := &reniced{f: f, comm: map[int]string{31: "send_reader"}, fail: map[int]error{30: errors.New("operation not permitted")}}
	r := &ThreadRaiser{Proc: f.root, Nice: -5, SetNice: rn.set}
	n, err := r.Poll()
	if n != 1 || err == nil {
		t.Fatalf("Poll = %d, %v; want pid 31 raised and pid 30's error", n, err)
	}
	want := "renice send_traverse (pid 30) from 19 to -5: operation not permitted"
	if err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
}

func TestThreadRaiserNoProc(t *testing.T) {
	r := &ThreadRaiser{Proc: filepath.Join(t.TempDir(), "missing")}
	if _, err := r.Poll(); err == nil {
		t.Fatal("Poll of a missing /proc succeeded")
	}
	// A hold on a raiser that cannot poll still ends.
	r.Hold()()
	var nilRaiser *ThreadRaiser
	nilRaiser.Hold()()
}

func TestThreadRaiserPollsWhileHeld(t *testing.T) {
	f := newFakeProc(t)
	rn := &reniced{f: f, comm: map[int]string{40: "send_traverse", 41: "send_reader"}}
	r := &ThreadRaiser{Proc: f.root, SetNice: rn.set, Every: 5 * time.Millisecond}
	release1 := r.Hold()
	release2 := r.Hold()
	f.put(40, "send_traverse", true, 19)
	waitRaised(t, r, 1)
	release1()
	// One hold is left: the poller still runs.
	f.put(41, "send_reader", true, 19)
	waitRaised(t, r, 2)
	release2()
	release2() // a second call is a no-op
	// No poller now: a new thread stays as it is.
	f.put(40, "send_traverse", true, 19)
	time.Sleep(50 * time.Millisecond)
	if r.Raised() != 2 {
		t.Fatalf("raised %d after the last release; want 2", r.Raised())
	}
	// A new hold starts the poller again.
	defer r.Hold()()
	waitRaised(t, r, 3)
}

func waitRaised(t *testing.T, r *ThreadRaiser, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for r.Raised() < n {
		if time.Now().After(deadline) {
			t.Fatalf("raised %d threads within 5 s; want %d", r.Raised(), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestDaemonNice(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	n, err := DaemonNice("")
	if err != nil {
		t.Fatal(err)
	}
	if n < -20 || n > 19 {
		t.Fatalf("DaemonNice = %d", n)
	}
}

// Polls back off while a long transfer runs; a transfer that starts
// beside it has the poller look at once.
func TestThreadRaiserNewHoldPollsAtOnce(t *testing.T) {
	f := newFakeProc(t)
	rn := &reniced{f: f, comm: map[int]string{50: "receive_writer"}}
	r := &ThreadRaiser{Proc: f.root, SetNice: rn.set, Every: 10 * time.Millisecond}
	defer r.Hold()()
	// Let the period grow to its cap: 10+20+...+640 ms, then 1 s.
	time.Sleep(1500 * time.Millisecond)
	f.put(50, "receive_writer", true, 19)
	start := time.Now()
	defer r.Hold()()
	waitRaised(t, r, 1)
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("the new transfer's thread was raised %s after its hold; want at once", d)
	}
}
