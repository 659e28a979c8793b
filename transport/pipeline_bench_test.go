package transport

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkPipelineComparison streams 1 GiB of mixed content (half
// random, half text-like) over loopback three ways and prints a table:
// zrepl-ha's transport (zstd level 3, also lz4 and none), the syncoid-style
// pipeline `zstd -3 | socat TCP | zstd -d`, and the same with mbuffer on
// both ends. CPU is user+system seconds of every process involved.
// Needs Debian's zstd, socat and mbuffer (make lab-install installs them).
func BenchmarkPipelineComparison(b *testing.B) {
	for _, tool := range []string{"zstd", "socat", "mbuffer"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("%s not installed (run make lab-install): %v", tool, err)
		}
	}
	size := int64(1 << 30)
	file := filepath.Join(b.TempDir(), "mixed.bin")
	f, err := os.Create(file)
	if err != nil {
		b.Fatal(err)
	}
	chunk := mixed(8 << 20)
	for written := int64(0); written < size; written += int64(len(chunk)) {
		// A fresh random half each time, so nothing matches across chunks.
		rand.Read(chunk[:4<<20])
		f.Write(chunk)
	}
	f.Close()
	type result struct {
		name     string
		secs     float64
		cpu      float64
		wire     int64
		complete bool
	}
	var results []result
	b.ResetTimer()
	for _, mode := range []Mode{ModeZstd, ModeLZ4, ModeNone} {
		secs, cpu, wire := runOurs(b, file, mode)
		results = append(results, result{"zrepl-ha transport (" + mode.String() + ")", secs, cpu, wire, true})
	}
	for _, mb := range []bool{false, true} {
		secs, cpu, wire := runPipeline(b, file, mb)
		name := "zstd -3 | socat | zstd -d"
		if mb {
			name = "zstd -3 | mbuffer | socat | mbuffer | zstd -d"
		}
		results = append(results, result{name, secs, cpu, wire, true})
	}
	b.StopTimer()
	fmt.Printf("\n%-50s %10s %8s %10s\n", "1 GiB mixed over loopback", "MB/s", "ratio", "CPU s")
	for _, r := range results {
		fmt.Printf("%-50s %10.0f %8.3f %10.1f\n", r.name, float64(size)/r.secs/1e6, float64(r.wire)/float64(size), r.cpu)
	}
	ours, pipe := results[0], results[3]
	fmt.Printf("zrepl-ha zstd / pipeline throughput: %.2fx (target >= 1.5x at an equal or better ratio)\n\n", pipe.secs/ours.secs)
	b.ReportMetric(pipe.secs/ours.secs, "speedup-vs-pipeline")
}

func rusageSelf() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return tv(ru.Utime) + tv(ru.Stime)
}

func rusageChildren() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	return tv(ru.Utime) + tv(ru.Stime)
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

func runOurs(b *testing.B, file string, mode Mode) (secs, cpu float64, wire int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var beats atomic.Int64
	h := &discardHandler{}
	addr := serveBoth(b, ctx, h, &beats)
	f, err := os.Open(file)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	stats := &StreamStats{}
	cpu0, start := rusageSelf(), time.Now()
	c, err := Dial(ctx, addr, "alpha", "beta", PurposeData, Security{Plaintext: true}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.SendStream(ctx, nil, f, StreamOptions{Mode: mode, Level: 3, Stats: stats}); err != nil {
		b.Fatal(err)
	}
	c.Close()
	return time.Since(start).Seconds(), rusageSelf() - cpu0, stats.BytesOut.Load()
}

func runPipeline(b *testing.B, file string, withMbuffer bool) (secs, cpu float64, wire int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	wireFile := file + ".wire"
	mbuf := ""
	if withMbuffer {
		mbuf = " | mbuffer -q -m 128M"
	}
	recv := exec.Command("/bin/sh", "-c", fmt.Sprintf("socat -u TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr -%s | tee >(wc -c > %s) | zstd -d -q > /dev/null", port, mbuf, wireFile))
	recv = exec.Command("/bin/bash", "-c", recv.Args[2])
	cpu0 := rusageChildren()
	if err := recv.Start(); err != nil {
		b.Fatal(err)
	}
	// Wait (bounded) until the listener is up.
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	recv.Wait() // the probe connection ended the first socat; start it again
	recv = exec.Command("/bin/bash", "-c", fmt.Sprintf("socat -u TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr -%s | tee >(wc -c > %s) | zstd -d -q > /dev/null", port, mbuf, wireFile))
	if err := recv.Start(); err != nil {
		b.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	send := exec.Command("/bin/sh", "-c", fmt.Sprintf("zstd -3 -q -c < %s%s | socat -u - TCP:127.0.0.1:%d", file, mbuf, port))
	if out, err := send.CombinedOutput(); err != nil {
		b.Fatalf("pipeline: %v %s", err, out)
	}
	if err := recv.Wait(); err != nil {
		b.Fatalf("pipeline receiver: %v", err)
	}
	secs = time.Since(start).Seconds()
	cpu = rusageChildren() - cpu0
	var n int64
	if bs, err := os.ReadFile(wireFile); err == nil {
		fmt.Sscan(string(bs), &n)
	}
	return secs, cpu, n
}
