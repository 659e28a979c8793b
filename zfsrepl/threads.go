package zfsrepl

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/procfs"
)

// ThreadRaiser gives the kernel threads OpenZFS starts for a send or a
// receive (send_traverse, send_reader, send_merge, receive_writer, ...)
// the daemon's own priority while a transfer runs. OpenZFS starts them at
// minclsyspri, which on Linux is nice 19: on a CPU that clients keep busy
// (smbd taking a large copy) such a thread gets about 1.5% of it, so the
// active's cycles ship almost nothing while the clients write, and the
// backlog waits for the next handover or is lost in a failover. In the
// lab a cycle's send put out 1.4 KB in 6 s under an SMB copy.
//
// One poller serves every transfer of the process: it runs while at least
// one Hold is outstanding, lists /proc (Every at first, backing off to a
// second) and renices the kernel threads named so whose nice is above
// Nice. Threads of a send started by anything else on the host get the
// same priority while ours run.
type ThreadRaiser struct {
	Proc  string        // the proc file system; "/proc" when empty
	Nice  int           // the nice value to give the threads
	Every time.Duration // first poll period; 50 ms when zero
	Log   *slog.Logger  // nil discards

	// SetNice sets a thread's nice value; setNice (setpriority(2)) when nil.
	SetNice func(pid, nice int) error

	mu    sync.Mutex
	users int
	stop  chan struct{}
	done  chan struct{}
	kick  chan struct{}
	// seen holds the pids already read that are not ours, so a poll reads
	// only new pids and our own threads' stat. A pid gone from /proc
	// leaves it.
	seen   map[int]bool
	raised int
	warned atomic.Bool
}

// threadPrefixes name the kernel threads of sends and receives (the SPL
// names a thread after its function, "_thread" cut off).
var threadPrefixes = []string{"send_", "receive_", "redact_"}

// pfKthread is PF_KTHREAD in /proc/PID/stat's flags.
const pfKthread = 0x00200000

// openProc opens the proc file system at proc, "/proc" when empty, and
// returns the path it used.
func openProc(proc string) (procfs.FS, string, error) {
	if proc == "" {
		proc = "/proc"
	}
	fs, err := procfs.NewFS(proc)
	return fs, proc, err
}

// DaemonNice is this process's own nice value, read from /proc/self/stat
// (getpriority(2) returns it offset, differently per libc and kernel).
func DaemonNice(proc string) (int, error) {
	fs, _, err := openProc(proc)
	if err != nil {
		return 0, err
	}
	self, err := fs.Self()
	if err != nil {
		return 0, err
	}
	st, err := self.Stat()
	if err != nil {
		return 0, err
	}
	return st.Nice, nil
}

// Hold starts the poller if it is not running, or has it poll again at
// once and then quickly, and returns the function that ends this hold;
// the poller stops with the last one. Polls come Every apart at first,
// then twice as far apart each time, up to a second.
func (r *ThreadRaiser) Hold() (release func()) {
	if r == nil {
		return func() {}
	}
	r.mu.Lock()
	r.users++
	if r.users == 1 {
		r.stop, r.done, r.kick = make(chan struct{}), make(chan struct{}), make(chan struct{}, 1)
		go r.run(r.stop, r.done, r.kick)
	} else {
		select { // a new transfer: poll at once and quickly again
		case r.kick <- struct{}{}:
		default:
		}
	}
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			r.users--
			var done chan struct{}
			if r.users == 0 {
				close(r.stop)
				done = r.done
			}
			r.mu.Unlock()
			if done != nil {
				<-done
			}
		})
	}
}

// Raised counts the threads reniced since the raiser was made.
func (r *ThreadRaiser) Raised() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.raised
}

func (r *ThreadRaiser) run(stop, done, kick chan struct{}) {
	defer close(done)
	first := r.Every
	if first <= 0 {
		first = 50 * time.Millisecond
	}
	every := first
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-kick:
			every = first
		case <-t.C:
		}
		if _, err := r.Poll(); err != nil {
			// Warned once per raiser, debug after: a host without /proc
			// or without CAP_SYS_NICE replicates at OpenZFS's priority.
			if r.warned.CompareAndSwap(false, true) {
				r.log().Warn("cannot raise the priority of zfs's send and receive threads; transfers run at OpenZFS's nice 19 (the daemon needs CAP_SYS_NICE)", "err", err)
			} else {
				r.log().Debug("cannot raise the priority of zfs's send and receive threads", "err", err)
			}
		}
		t.Reset(every)
		// A transfer's threads start with it; a -I stream starts new ones
		// per snapshot. Polls back off to maxEvery, since each lists /proc
		// (milliseconds in an emulated guest).
		every = min(2*every, maxEvery)
	}
}

// maxEvery is the slowest poll while a transfer runs.
const maxEvery = time.Second

func (r *ThreadRaiser) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}

// Poll lists the kernel threads once and renices ours whose nice is above
// Nice; it returns how many it reniced. Errors reading one pid (it ended)
// are skipped; a failed renice is returned after the rest were tried.
func (r *ThreadRaiser) Poll() (int, error) {
	fs, proc, err := openProc(r.Proc)
	if err != nil {
		return 0, err
	}
	procs, err := fs.AllProcs()
	if err != nil {
		return 0, fmt.Errorf("listing %s: %w", proc, err)
	}
	set := r.SetNice
	if set == nil {
		set = setNice
	}
	r.mu.Lock()
	if r.seen == nil {
		r.seen = map[int]bool{}
	}
	live := make(map[int]bool, len(procs))
	var ours []procfs.Proc
	for _, p := range procs {
		pid := p.PID
		live[pid] = true
		if known, ok := r.seen[pid]; ok && !known {
			continue
		}
		ours = append(ours, p)
	}
	for pid := range r.seen {
		if !live[pid] {
			delete(r.seen, pid)
		}
	}
	r.mu.Unlock()

	n := 0
	var errs []error
	for _, p := range ours {
		st, err := p.Stat()
		if err != nil {
			continue // it ended between the listing and the read
		}
		mine := st.Flags&pfKthread != 0 && hasThreadPrefix(st.Comm)
		r.mu.Lock()
		r.seen[p.PID] = mine
		r.mu.Unlock()
		if !mine || st.Nice <= r.Nice {
			continue
		}
		if err := set(p.PID, r.Nice); err != nil {
			errs = append(errs, fmt.Errorf("renice %s (pid %d) from %d to %d: %w", st.Comm, p.PID, st.Nice, r.Nice, err))
			continue
		}
		n++
		r.log().Debug("raised a zfs kernel thread's priority", "thread", st.Comm, "pid", p.PID, "from", st.Nice, "to", r.Nice)
	}
	r.mu.Lock()
	r.raised += n
	r.mu.Unlock()
	return n, errors.Join(errs...)
}

func hasThreadPrefix(comm string) bool {
	for _, p := range threadPrefixes {
		if strings.HasPrefix(comm, p) {
			return true
		}
	}
	return false
}
