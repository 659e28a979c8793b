//go:build platform

package zfsrepl

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/procfs"
)

// transferThreads returns the nice value of each kernel thread of a send or
// a receive running now, by name.
func transferThreads(t *testing.T) map[string]int {
	t.Helper()
	fs, err := procfs.NewFS("/proc")
	if err != nil {
		t.Fatal(err)
	}
	procs, err := fs.AllProcs()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, p := range procs {
		st, err := p.Stat()
		if err != nil || st.Flags&pfKthread == 0 || !hasThreadPrefix(st.Comm) {
			continue
		}
		got[st.Comm] = st.Nice
	}
	return got
}

// blockedSend starts z.Send of snap into a pipe nobody reads, so its
// kernel threads stay alive, and waits until they show in /proc. The
// returned function ends the send.
func blockedSend(t *testing.T, z *Exec, snap string, want func(map[string]int) bool) (map[string]int, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(testCtx(t))
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- z.Send(ctx, SendOptions{Snapshot: snap}, pw) }()
	stop := func() {
		cancel()
		pr.Close()
		<-done
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		th := transferThreads(t)
		if want(th) {
			return th, stop
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("send threads within 30 s: %v", th)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sendThreadsAt(nice int) func(map[string]int) bool {
	return func(th map[string]int) bool {
		n := 0
		for name, v := range th {
			if v != nice {
				return false
			}
			if strings.HasPrefix(name, "send_") {
				n++
			}
		}
		return n > 0
	}
}

// OpenZFS starts a send's kernel threads at nice 19; with a ThreadRaiser
// they run at the raiser's nice while the send does.
func TestPlatformSendThreadsRaised(t *testing.T) {
	p := newPool(t)
	a := p.create(t, "a")
	// More than the send's queues hold (zfs_send_queue_length, 16 MiB):
	// with less, its threads read everything and end while the stream
	// still waits in the pipe, and the test finds none.
	p.writeFiles(t, a, "f", 48, 1<<20)
	if err := p.z.Snapshot(testCtx(t), a, "s1", false); err != nil {
		t.Fatal(err)
	}

	th, stop := blockedSend(t, p.z, a+"@s1", sendThreadsAt(19))
	stop()
	t.Logf("without the raiser: %v", th)

	z := NewExec(Binaries{}, nil)
	z.Threads = &ThreadRaiser{Nice: 0, Every: 20 * time.Millisecond}
	th, stop = blockedSend(t, z, a+"@s1", sendThreadsAt(0))
	stop()
	t.Logf("with it: %v (raised %d)", th, z.Threads.Raised())
	if z.Threads.Raised() == 0 {
		t.Fatal("no thread counted as raised")
	}
}

// A receive's writer thread is raised the same way.
func TestPlatformRecvThreadRaised(t *testing.T) {
	src, dst := newPool(t), newPool(t)
	a := src.create(t, "a")
	src.writeFiles(t, a, "f", 8, 1<<20)
	if err := src.z.Snapshot(testCtx(t), a, "s1", false); err != nil {
		t.Fatal(err)
	}
	stream := src.stream(t, SendOptions{Snapshot: a + "@s1"})

	for _, c := range []struct {
		raise bool
		nice  int
	}{{false, 19}, {true, 0}} {
		z := NewExec(Binaries{}, nil)
		if c.raise {
			z.Threads = &ThreadRaiser{Nice: 0, Every: 20 * time.Millisecond}
		}
		ctx, cancel := context.WithCancel(testCtx(t))
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		target := dst.ds("r")
		go func() { done <- z.Recv(ctx, target, RecvOptions{}, pr) }()
		// Half the stream, then hold: the writer thread waits for more.
		go pw.Write(stream[:len(stream)/2])
		deadline := time.Now().Add(30 * time.Second)
		var th map[string]int
		for {
			th = transferThreads(t)
			if v, ok := th["receive_writer"]; ok && v == c.nice {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("raise=%v: want receive_writer at nice %d within 30 s; threads %v", c.raise, c.nice, th)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("raise=%v: %v", c.raise, th)
		cancel()
		pw.CloseWithError(io.ErrUnexpectedEOF)
		<-done
	}
}
