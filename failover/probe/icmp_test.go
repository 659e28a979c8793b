package probe

import (
	"context"
	"errors"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ICMP needs a ping socket or a raw socket. The tests run as root (make test
// and CI do), so the raw fallback always works there; on a machine where
// neither works they fail and say why instead of skipping.
func requireICMP(t *testing.T, v6 bool) {
	t.Helper()
	c, raw, err := listenICMP(v6)
	if err != nil {
		t.Fatalf("ICMP tests need an ICMP socket (run as root, or allow ping sockets with sysctl net.ipv4.ping_group_range): %v", err)
	}
	c.Close()
	t.Logf("ICMP socket kind: raw=%v", raw)
}

func TestICMPLoopback(t *testing.T) {
	for _, c := range []struct {
		name, addr string
		v6         bool
	}{{"ipv4", "127.0.0.1", false}, {"ipv6", "::1", true}} {
		t.Run(c.name, func(t *testing.T) {
			requireICMP(t, c.v6)
			p := &Prober{Targets: []Target{icmpT(c.addr)}, Timeout: 5 * time.Second, Log: quiet()}
			res := p.ProbeOnce(context.Background())
			if !res.Reachable {
				t.Fatalf("no echo reply from %s: %v", c.addr, res.Targets[0].Err)
			}
			if res.Targets[0].RTT <= 0 || res.Targets[0].RTT > time.Second {
				t.Errorf("rtt %s", res.Targets[0].RTT)
			}
		})
	}
}

// Many concurrent pings on raw sockets each see every reply on the host; each
// must pick out its own and all must succeed.
func TestICMPConcurrentProbesMatchTheirOwnReplies(t *testing.T) {
	requireICMP(t, false)
	targets := make([]Target, 16)
	for i := range targets {
		targets[i] = icmpT("127.0.0.1")
	}
	p := &Prober{Targets: targets, Timeout: 5 * time.Second, Log: quiet()}
	for i, tr := range p.ProbeOnce(context.Background()).Targets {
		if !tr.OK {
			t.Errorf("probe %d: %v", i, tr.Err)
		}
	}
}

// A target that never answers: in a network namespace the test creates, with
// lo up and echo requests ignored, so nothing leaves the machine. The probe
// must end at its timeout with a deadline error.
func TestICMPNoReplyTimesOut(t *testing.T) {
	requireICMP(t, false)
	const timeout = 400 * time.Millisecond
	var res Result
	var d time.Duration
	inScratchNetns(t, func() {
		// Sockets belong to the namespace of the thread that creates them,
		// and this goroutine is locked to the namespaced thread.
		p := &Prober{Targets: []Target{icmpT("127.0.0.1")}, Timeout: timeout, Log: quiet()}
		start := time.Now()
		res = p.probeOnLockedThread(context.Background())
		d = time.Since(start)
	})
	if res.Reachable {
		t.Fatalf("an ignored echo counted as reachable: %+v", res)
	}
	if err := res.Targets[0].Err; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("want a deadline error, got %v", err)
	}
	if d < timeout || d > timeout+time.Second {
		t.Errorf("the probe took %s with timeout %s", d, timeout)
	}
}

// probeOnLockedThread is ProbeOnce without the per-target goroutines, so the
// sockets are created on the caller's (namespaced) thread.
func (p *Prober) probeOnLockedThread(ctx context.Context) Result {
	tr := p.probe(ctx, p.Targets[0])
	return Result{Reachable: tr.OK, Targets: []TargetResult{tr}}
}

// inScratchNetns runs f on a thread in a new, empty network namespace with lo
// up and ICMP echo ignored. The thread is never unlocked, so Go discards it
// when the goroutine ends instead of reusing it in the wrong namespace.
func inScratchNetns(t *testing.T, f func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		if err := loUp(); err != nil {
			errc <- err
			return
		}
		// /proc/sys/net is resolved against the opening thread's namespace.
		if err := os.WriteFile("/proc/sys/net/ipv4/icmp_echo_ignore_all", []byte("1"), 0); err != nil {
			errc <- err
			return
		}
		f()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatalf("scratch network namespace (needs root): %v", err)
	}
}

func loUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
