package main

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

var (
	fullStep = zfsrepl.Step{Kind: zfsrepl.StepFull, Source: "tank/data", Target: "backup/data", To: "s1",
		Send: zfsrepl.SendOptions{Snapshot: "tank/data@s1"}}
	incrStep = zfsrepl.Step{Kind: zfsrepl.StepIncremental, Source: "tank/data/child", Target: "backup/data/child", To: "s3",
		Send: zfsrepl.SendOptions{From: "tank/data/child@s1", Snapshot: "tank/data/child@s3", Intermediates: true}}
	resumeStep = zfsrepl.Step{Kind: zfsrepl.StepResume, Source: "tank/data", Target: "backup/data",
		Send: zfsrepl.SendOptions{ResumeToken: "1-abc"}}
)

// fakeClock is a settable clock for the plain renderer's throttle.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func (c *fakeClock) at(sec int) {
	c.t = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC).Add(time.Duration(sec) * time.Second)
}

func lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestStepLabel(t *testing.T) {
	for _, tc := range []struct {
		st   zfsrepl.Step
		want string
	}{
		{fullStep, "full tank/data@s1 -> backup/data"},
		{incrStep, "incremental tank/data/child@s1..@s3 -> backup/data/child"},
		{resumeStep, "resume -> backup/data"},
	} {
		if got := stepLabel(tc.st); got != tc.want {
			t.Errorf("stepLabel = %q, want %q", got, tc.want)
		}
	}
	bm := incrStep
	bm.Send.From, bm.Send.Intermediates = "tank/data/child#zrepl-ha_cursor_local_x", false
	if got := stepLabel(bm); !strings.Contains(got, "child#zrepl-ha_cursor_local_x..@s3") {
		t.Errorf("bookmark base: %q", got)
	}
}

// TestPlainProgressThrottle: a running step prints at most every 5 s (of
// the injected clock), and every step ends with one line.
func TestPlainProgressThrottle(t *testing.T) {
	var buf bytes.Buffer
	clk := &fakeClock{}
	p := newPlainProgress(&buf, clk.now, 5*time.Second)
	const mib = 1 << 20
	ev := func(sec int, st zfsrepl.Step, n, total int64, done bool) {
		clk.at(sec)
		p.Update(zfsrepl.Progress{Step: st, Bytes: n, Total: total, Done: done})
	}
	ev(0, fullStep, 1*mib, 100*mib, false)
	ev(2, fullStep, 2*mib, 100*mib, false)
	ev(4, fullStep, 4*mib, 100*mib, false)
	if buf.Len() != 0 {
		t.Fatalf("printed before 5s: %q", buf.String())
	}
	ev(5, fullStep, 10*mib, 100*mib, false) // 10 MiB in 5 s: 2 MiB/s, 90 MiB left: 45 s
	ev(6, fullStep, 12*mib, 100*mib, false)
	ev(9, fullStep, 18*mib, 100*mib, false)
	ev(10, fullStep, 20*mib, 100*mib, false)
	ev(11, fullStep, 110*mib, 100*mib, false) // past the estimate: no ETA, not 100%
	ev(16, fullStep, 120*mib, 100*mib, false)
	ev(17, fullStep, 125*mib, 100*mib, true)
	// The next step: its first line comes 5 s after the last line printed.
	ev(18, incrStep, 1*mib, 0, false)
	ev(21, incrStep, 2*mib, 0, false)
	ev(22, incrStep, 3*mib, 0, false) // 3 MiB in 4 s
	ev(23, incrStep, 4*mib, 0, true)
	ev(23, resumeStep, 0, 0, true) // a step that ends at once
	// A step whose first event comes long after the last line (the -nvP
	// estimate was slow): a line, but no rate yet.
	ev(40, fullStep, 1*mib, 4*mib, false)
	ev(41, fullStep, 4*mib, 4*mib, true)

	got := lines(buf.String())
	want := []string{
		"full tank/data@s1 -> backup/data: 10.0MiB of ~100.0MiB (10%), 2.0MiB/s, ETA 45s",
		"full tank/data@s1 -> backup/data: 20.0MiB of ~100.0MiB (20%), 2.0MiB/s, ETA 40s",
		"full tank/data@s1 -> backup/data: 120.0MiB of ~100.0MiB (99%), 7.5MiB/s",
		"full tank/data@s1 -> backup/data: done, 125.0MiB in 17s (7.4MiB/s)",
		"incremental tank/data/child@s1..@s3 -> backup/data/child: 3.0MiB, 768.0KiB/s",
		"incremental tank/data/child@s1..@s3 -> backup/data/child: done, 4.0MiB in 5s (819.2KiB/s)",
		"resume -> backup/data: done, 0B", // no time: its first event was its last
		"full tank/data@s1 -> backup/data: 1.0MiB of ~4.0MiB (25%)",
		"full tank/data@s1 -> backup/data: done, 4.0MiB in 1s (4.0MiB/s)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestPlainProgressFastSteps: steps shorter than the interval print their
// final line only, however many events they send.
func TestPlainProgressFastSteps(t *testing.T) {
	var buf bytes.Buffer
	clk := &fakeClock{}
	p := newPlainProgress(&buf, clk.now, 5*time.Second)
	for i, st := range []zfsrepl.Step{fullStep, incrStep} {
		for n := int64(1); n <= 100; n++ {
			clk.at(i)
			p.Update(zfsrepl.Progress{Step: st, Bytes: n << 16, Total: 100 << 16})
		}
		p.Update(zfsrepl.Progress{Step: st, Bytes: 100 << 16, Total: 100 << 16, Done: true})
	}
	p.Close()
	got := lines(buf.String())
	if len(got) != 2 || !strings.HasSuffix(got[0], "done, 6.2MiB") || !strings.HasPrefix(got[1], "incremental ") {
		t.Fatalf("got %q", got)
	}
}

func TestBarProgress(t *testing.T) {
	var buf bytes.Buffer
	b := newBarProgress(&buf, 120)
	clk := &fakeClock{}
	b.now = clk.now
	// Known size, and more bytes than the estimate: the bar does not
	// finish before Done, and ends full with what was really sent.
	clk.at(0)
	b.Update(zfsrepl.Progress{Step: fullStep, Bytes: 0, Total: 1 << 20})
	clk.at(1)
	b.Update(zfsrepl.Progress{Step: fullStep, Bytes: 2 << 20, Total: 1 << 20})
	if out := buf.String(); strings.Contains(out, "100%") || !strings.Contains(out, "99%") {
		t.Fatalf("bar full before the step is done: %q", out)
	}
	b.Update(zfsrepl.Progress{Step: fullStep, Bytes: 3 << 20, Total: 1 << 20, Done: true})
	first := buf.String()
	if !strings.Contains(first, "full tank/data@s1 -> backup/data") || !strings.Contains(first, "100%") ||
		!strings.Contains(first, "3.0/3.0 MiB") || !strings.HasSuffix(first, "\n") {
		t.Fatalf("finished bar: %q", first)
	}
	// No estimate: a spinner with the bytes moved.
	b.Update(zfsrepl.Progress{Step: incrStep, Bytes: 100 << 10})
	b.Update(zfsrepl.Progress{Step: incrStep, Bytes: 300 << 10, Done: true})
	second := strings.TrimPrefix(buf.String(), first)
	if !strings.Contains(second, "incremental tank/data/child@s1..@s3 -> backup/data/child") ||
		!strings.Contains(second, "300 KiB") || !strings.HasSuffix(second, "\n") {
		t.Fatalf("spinner: %q", second)
	}
	// A step cut in the middle: Close draws its last count, even one the
	// redraw throttle held back, and ends the line.
	b.Update(zfsrepl.Progress{Step: fullStep, Bytes: 0, Total: 1 << 20})
	b.Update(zfsrepl.Progress{Step: fullStep, Bytes: 256 << 10, Total: 1 << 20})
	b.Update(zfsrepl.Progress{Step: fullStep, Bytes: 512 << 10, Total: 1 << 20})
	if third := strings.TrimPrefix(buf.String(), first+second); strings.Contains(third, "25%") || strings.Contains(third, "50%") {
		t.Fatalf("redrawn within %v: %q", barRedraw, third)
	}
	b.Close()
	third := strings.TrimPrefix(buf.String(), first+second)
	if !strings.Contains(third, "50%") || strings.Contains(third, "100%") || !strings.HasSuffix(third, "\n") {
		t.Fatalf("interrupted bar: %q", third)
	}
	// A step that moved nothing, then a Close with no bar open.
	b.Update(zfsrepl.Progress{Step: resumeStep, Done: true})
	b.Close()
	if n := strings.Count(buf.String(), "\n"); n != 4 {
		t.Fatalf("%d lines, want 4: %q", n, buf.String())
	}
}

func TestNewProgressSink(t *testing.T) {
	var buf bytes.Buffer
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	for _, tc := range []struct {
		mode   string
		errOut io.Writer
		bar    bool
	}{
		{progressAuto, &buf, false},
		{progressAuto, devnull, false}, // a file, but not a terminal
		{progressAlways, &buf, true},
		{progressNever, &buf, false},
	} {
		s := newProgressSink(tc.mode, &buf, tc.errOut)
		if _, isBar := s.(*barProgress); isBar != tc.bar {
			t.Errorf("mode %s, errOut %T: got %T", tc.mode, tc.errOut, s)
		}
	}
	if isTerminal(&buf) || isTerminal(devnull) {
		t.Error("a buffer or /dev/null is not a terminal")
	}
}

func TestEllipsize(t *testing.T) {
	s := "incremental tank/data/child@zrepl-ha_20261126T120000Z_000001..@zrepl-ha_20261126T120005Z_000002 -> backup/data/child"
	got := ellipsize(s, 60)
	if len(got) != 60 || !strings.HasPrefix(got, "incremental") || !strings.HasSuffix(got, "-> backup/data/child") || !strings.Contains(got, "...") {
		t.Fatalf("ellipsize = %q (%d)", got, len(got))
	}
	if ellipsize("short", 60) != "short" {
		t.Fatal("a short string changed")
	}
}
