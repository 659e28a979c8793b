//go:build platform

package zfsrepl

// Benchmarks against real ZFS in the lab VM (make bench). Absolute numbers
// under TCG mean little, so each reports a ratio against a baseline measured
// in the same run on the same pools: zrepl-ha's engine against bare
// `zfs send | zfs recv` pipelines run by /bin/sh.

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/fixtures/testpool"
)

func sh(b testing.TB, script string) time.Duration {
	b.Helper()
	start := time.Now()
	out, err := exec.Command("/bin/sh", "-ec", script).CombinedOutput()
	if err != nil {
		b.Fatalf("%s: %v\n%s", script, err, out)
	}
	return time.Since(start)
}

func benchPool(b *testing.B, size int64) *pool {
	b.Helper()
	tp := testpool.New(b, "zb", size, "-o", "autotrim=on", "-O", "compression=off")
	return &pool{Name: tp.Name, Root: tp.Root, z: NewExec(Binaries{}, nil)}
}

// fill writes n MiB into dir: half random, half text-like, as 8 MiB files.
func fill(b *testing.B, dir string, mib int) {
	b.Helper()
	sh(b, fmt.Sprintf(`i=0; while [ $i -lt %d ]; do
	  head -c 4194304 /dev/urandom > %s/r$i
	  yes 'zrepl-ha benchmark text line, somewhat compressible 0123456789' | head -c 4194304 > %s/t$i
	  i=$((i+1)); done; sync`, mib/8, dir, dir))
}

func BenchmarkPlatformThroughput512MiB(b *testing.B) {
	src, dst := benchPool(b, 1<<30), benchPool(b, 3<<30)
	ctx := context.Background()
	root := src.Name + "/data"
	sh(b, "zfs create "+root)
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	s0, err := TakeSnapshot(ctx, src.z, root, now)
	if err != nil {
		b.Fatal(err)
	}
	fill(b, src.Root+"/"+root, 512)
	s1, err := TakeSnapshot(ctx, src.z, root, now.Add(time.Second))
	if err != nil {
		b.Fatal(err)
	}
	bare := func(target string) time.Duration {
		return sh(b, fmt.Sprintf("zfs send -L -e -p %s@%s | zfs recv -s -u %s && zfs send -L -e -p -I %s@%s %s@%s | zfs recv -s -u %s",
			root, s0, target, root, s0, root, s1, target))
	}
	eng := func(target string) (time.Duration, int64) {
		e := &Engine{ZFS: src.z, Peer: "bench", Plan: PlanOptions{InitialAll: true}}
		start := time.Now()
		rep, err := e.Replicate(ctx, Root{Source: root, Target: target}, &LocalReceiver{ZFS: dst.z, Sender: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		return time.Since(start), rep.BytesSent
	}
	drop := func(target string) {
		sh(b, fmt.Sprintf("for s in $(zfs list -H -o name -t snapshot -r %s); do zfs release %s $s 2>/dev/null || true; done; zfs destroy -r %s; zpool trim -w %s",
			target, HoldTag("bench"), target, dst.Name))
	}
	b.ResetTimer()
	var tBare, tEng time.Duration
	var bytes int64
	// Two rounds in opposite order, so neither side profits from a warm ARC.
	for round := 0; round < 2; round++ {
		for _, first := range []bool{round == 0, round == 1} {
			if first {
				tBare += bare(dst.Name + "/bare")
				drop(dst.Name + "/bare")
			} else {
				d, n := eng(dst.Name + "/eng")
				tEng += d
				bytes = n
				drop(dst.Name + "/eng")
			}
		}
	}
	b.StopTimer()
	mb := float64(bytes) / 1e6
	b.ReportMetric(mb/(tEng.Seconds()/2), "engine-MB/s")
	b.ReportMetric(mb/(tBare.Seconds()/2), "bare-MB/s")
	b.ReportMetric(tBare.Seconds()/tEng.Seconds(), "throughput-ratio")
	b.Logf("512 MiB change, %d stream bytes: engine %.1f MB/s, bare zfs send|zfs recv %.1f MB/s, ratio %.2f (target >= 0.9)",
		bytes, mb/(tEng.Seconds()/2), mb/(tBare.Seconds()/2), tBare.Seconds()/tEng.Seconds())
}

func BenchmarkPlatformTinyCycle10Datasets(b *testing.B) {
	src, dst := benchPool(b, 512<<20), benchPool(b, 512<<20)
	ctx := context.Background()
	root := src.Name + "/data"
	var children []string
	sh(b, "zfs create "+root)
	for i := 0; i < 9; i++ {
		children = append(children, fmt.Sprintf("c%d", i))
		sh(b, fmt.Sprintf("zfs create %s/c%d", root, i))
	}
	all := append([]string{""}, children...)
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	snap := func() string {
		now = now.Add(time.Second)
		for _, c := range all {
			sh(b, fmt.Sprintf("head -c 4096 /dev/urandom > %s/%s/%s/f%d", src.Root, root, c, now.Unix()))
		}
		s, err := TakeSnapshot(ctx, src.z, root, now)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	e := &Engine{ZFS: src.z, Peer: "bench"}
	rcv := &LocalReceiver{ZFS: dst.z, Sender: "bench"}
	engRoot := Root{Source: root, Target: dst.Name + "/eng"}
	prev := snap()
	if _, err := e.Replicate(ctx, engRoot, rcv); err != nil {
		b.Fatal(err)
	}
	var script strings.Builder
	for _, c := range all {
		ds := strings.TrimSuffix(root+"/"+c, "/")
		fmt.Fprintf(&script, "zfs send %s@%s | zfs recv -u %s\n", ds, prev, strings.TrimSuffix(dst.Name+"/bare/"+c, "/"))
	}
	sh(b, script.String())
	const cycles = 10
	var tBare, tEng time.Duration
	b.ResetTimer()
	for i := 0; i < cycles; i++ {
		cur := snap()
		script.Reset()
		for _, c := range all {
			ds := strings.TrimSuffix(root+"/"+c, "/")
			fmt.Fprintf(&script, "zfs send -i @%s %s@%s | zfs recv -u %s\n", prev, ds, cur, strings.TrimSuffix(dst.Name+"/bare/"+c, "/"))
		}
		// Alternate the order so neither profits from running second.
		if i%2 == 0 {
			tBare += sh(b, script.String())
		}
		start := time.Now()
		rep, err := e.Replicate(ctx, engRoot, rcv)
		if err != nil || len(rep.Steps) != len(all) {
			b.Fatalf("cycle %d: %v, %d steps", i, err, len(rep.Steps))
		}
		tEng += time.Since(start)
		if i%2 == 1 {
			tBare += sh(b, script.String())
		}
		prev = cur
	}
	b.StopTimer()
	b.ReportMetric(tEng.Seconds()/cycles, "engine-s/cycle")
	b.ReportMetric(tBare.Seconds()/cycles, "bare-s/cycle")
	b.ReportMetric(tEng.Seconds()/tBare.Seconds(), "overhead-ratio")
	b.Logf("tiny incremental on 10 datasets: engine %.2f s/cycle, bare send|recv loop %.2f s/cycle, engine/bare %.2f (TCG; goal < 1 s/cycle on real hardware)",
		tEng.Seconds()/cycles, tBare.Seconds()/cycles, tEng.Seconds()/tBare.Seconds())
}

// countWriter counts what passes through it.
type countWriter struct{ n atomic.Int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n.Add(int64(len(p))); return len(p), nil }

// BenchmarkPlatformSendUnderCPULoad is a zfs send while one busy loop per
// CPU (nice 0, as smbd taking a copy) keeps every CPU busy: with OpenZFS's
// own priority for its send threads (nice 19) against a ThreadRaiser
// giving them this process's (nice 0). Each send gets at most 20 s; the
// report is stream bytes per second and the raised/plain ratio, the two
// sends alternating twice in the same run.
func BenchmarkPlatformSendUnderCPULoad(b *testing.B) {
	src := benchPool(b, 512<<20)
	ctx := context.Background()
	root := src.Name + "/data"
	sh(b, "zfs create "+root)
	fill(b, src.Root+"/"+root, 64)
	if err := src.z.Snapshot(ctx, root, "s1", false); err != nil {
		b.Fatal(err)
	}
	// Warm the ARC, so both variants read the same cached blocks.
	if err := src.z.Send(ctx, SendOptions{Snapshot: root + "@s1"}, io.Discard); err != nil {
		b.Fatal(err)
	}
	hogs := runtime.NumCPU()
	var cmds []*exec.Cmd
	for i := 0; i < hogs; i++ {
		c := exec.Command("/bin/sh", "-c", "while :; do :; done")
		if err := c.Start(); err != nil {
			b.Fatal(err)
		}
		cmds = append(cmds, c)
	}
	defer func() {
		for _, c := range cmds {
			c.Process.Kill()
			c.Wait()
		}
	}()
	send := func(z *Exec) float64 {
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		w := &countWriter{}
		start := time.Now()
		err := z.Send(sctx, SendOptions{Snapshot: root + "@s1"}, w)
		if err != nil && sctx.Err() == nil {
			b.Fatal(err)
		}
		return float64(w.n.Load()) / time.Since(start).Seconds()
	}
	plain := NewExec(Binaries{}, nil)
	raised := NewExec(Binaries{}, nil)
	nice, err := DaemonNice("")
	if err != nil {
		b.Fatal(err)
	}
	raised.Threads = &ThreadRaiser{Nice: nice}
	b.ResetTimer()
	var p, r float64
	for round := 0; round < 2; round++ {
		if round == 0 {
			p += send(plain)
			r += send(raised)
		} else {
			r += send(raised)
			p += send(plain)
		}
	}
	b.StopTimer()
	p, r = p/2, r/2
	b.ReportMetric(p/1e6, "plain-MB/s")
	b.ReportMetric(r/1e6, "raised-MB/s")
	b.ReportMetric(r/p, "raised/plain")
	b.Logf("64 MiB send under %d busy loops: OpenZFS's nice 19 %.2f MB/s, raised to nice %d %.2f MB/s, ratio %.1f (%d threads raised)",
		hogs, p/1e6, nice, r/1e6, r/p, raised.Threads.Raised())
}
