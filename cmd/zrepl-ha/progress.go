package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

// progressSink shows the engine's progress events to a person. There are two:
// a progress bar per step on a terminal, and plain throttled lines for logs
// and pipes. Both are safe for concurrent use: the engine reports from the
// goroutine copying the send stream and, at the end of a step, from its own.
type progressSink interface {
	// Update takes one event. An event for a new step ends the previous
	// step's display; Done ends the step's.
	Update(zfsrepl.Progress)
	// Close ends a step left open (the run stopped in the middle of it).
	Close()
}

// Values of --progress.
const (
	progressAuto   = "auto"
	progressAlways = "always"
	progressNever  = "never"
)

// plainProgressInterval is the most often the plain renderer prints a line
// for a running step.
const plainProgressInterval = 5 * time.Second

// newProgressSink picks the renderer for --progress mode (already
// validated): bars on errOut when it is a terminal (or always), else plain
// lines on out.
func newProgressSink(mode string, out, errOut io.Writer) progressSink {
	if mode == progressAlways || mode == progressAuto && isTerminal(errOut) {
		return newBarProgress(errOut, terminalWidth(errOut))
	}
	return newPlainProgress(out, time.Now, plainProgressInterval)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// terminalWidth is w's width in columns, 80 when it is not a terminal.
func terminalWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			return cols
		}
	}
	return 80
}

// stepLabel names a step for a person, shorter than Step.String():
// "full tank/data@s1 -> backup/data",
// "incremental tank/data@s1..@s3 -> backup/data", "resume -> backup/data".
func stepLabel(st zfsrepl.Step) string {
	switch st.Kind {
	case zfsrepl.StepResume:
		return "resume -> " + st.Target
	case zfsrepl.StepFull:
		return fmt.Sprintf("full %s -> %s", st.Send.Snapshot, st.Target)
	case zfsrepl.StepIncremental:
		return fmt.Sprintf("incremental %s%s..%s -> %s", st.Source, shortVersion(st.Send.From), shortVersion(st.Send.Snapshot), st.Target)
	}
	return st.String()
}

// shortVersion turns "tank/a@s1" into "@s1" and "tank/a#b1" into "#b1".
func shortVersion(name string) string {
	if i := strings.IndexAny(name, "@#"); i >= 0 {
		return name[i:]
	}
	return name
}

// rate is bytes per second over d, 0 when d is not positive.
func rate(bytes int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(bytes) / d.Seconds()
}

func humanRate(r float64) string {
	if r <= 0 {
		return "-"
	}
	return humanBytes(int64(r)) + "/s"
}

// humanDuration rounds for reading: 340ms, 4.2s, 3m12s, 2h5m0s.
func humanDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "-"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// plainProgress prints a line per running step at most every interval, and
// one when a step ends, for logs, pipes and --progress never.
type plainProgress struct {
	w        io.Writer
	now      func() time.Time
	interval time.Duration

	mu      sync.Mutex
	open    bool // a step is running
	step    zfsrepl.Step
	started time.Time
	printed time.Time // the last line, of any step
}

func newPlainProgress(w io.Writer, now func() time.Time, interval time.Duration) *plainProgress {
	return &plainProgress{w: w, now: now, interval: interval}
}

// Update implements progressSink.
func (p *plainProgress) Update(ev zfsrepl.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if !p.open || ev.Step != p.step {
		// A step's first event. The engine always ends a step with Done
		// before the next one starts; a step left open ends silently.
		p.open, p.step, p.started = true, ev.Step, now
		if p.printed.IsZero() {
			p.printed = now
		}
	}
	elapsed := now.Sub(p.started)
	if ev.Done {
		// The time from the step's first event, when long enough to mean
		// something: a small stream's first event is its last. The summary
		// has every step's exact time.
		line := fmt.Sprintf("%s: done, %s", stepLabel(ev.Step), humanBytes(ev.Bytes))
		if elapsed >= time.Second {
			line += fmt.Sprintf(" in %s (%s)", humanDuration(elapsed), humanRate(rate(ev.Bytes, elapsed)))
		}
		fmt.Fprintln(p.w, line)
		p.open, p.printed = false, now
		return
	}
	if now.Sub(p.printed) < p.interval {
		return
	}
	p.printed = now
	r := rate(ev.Bytes, elapsed)
	line := fmt.Sprintf("%s: %s", stepLabel(ev.Step), humanBytes(ev.Bytes))
	if ev.Total > 0 {
		pct := min(100*ev.Bytes/ev.Total, 99) // the total is an estimate
		line += fmt.Sprintf(" of ~%s (%d%%)", humanBytes(ev.Total), pct)
	}
	if r > 0 { // not on a step's first event
		line += ", " + humanRate(r)
	}
	if ev.Total > ev.Bytes && r > 0 {
		eta := time.Duration(float64(ev.Total-ev.Bytes) / r * float64(time.Second))
		line += ", ETA " + eta.Round(time.Second).String()
	}
	fmt.Fprintln(p.w, line)
}

// Close implements progressSink.
func (p *plainProgress) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.open = false
}

// barProgress draws one progressbar per step: bytes, rate and ETA against
// the -nvP estimate, or a spinner with bytes and rate when there is none.
// A finished step's bar stays on screen.
type barProgress struct {
	w     io.Writer
	width int // terminal columns
	now   func() time.Time

	mu   sync.Mutex
	bar  *progressbar.ProgressBar // nil between steps
	step zfsrepl.Step
	// known: the bar has a length (the estimate); else it is a spinner.
	known bool
	// bytes is the newest count, drawn at most every barRedraw (the engine
	// reports every 64 KiB) and always when the bar ends.
	bytes int64
	drawn time.Time
}

// barRedraw is the most often a bar is redrawn.
const barRedraw = 100 * time.Millisecond

func newBarProgress(w io.Writer, width int) *barProgress {
	return &barProgress{w: w, width: width, now: time.Now}
}

// Update implements progressSink.
func (b *barProgress) Update(ev zfsrepl.Progress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar != nil && ev.Step != b.step {
		b.endLocked()
	}
	if b.bar == nil {
		b.startLocked(ev)
	}
	b.bytes = ev.Bytes
	if ev.Done {
		b.finishLocked()
		return
	}
	if now := b.now(); now.Sub(b.drawn) >= barRedraw {
		b.drawLocked()
		b.drawn = now
	}
}

// Close implements progressSink.
func (b *barProgress) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar != nil {
		b.endLocked()
	}
}

func (b *barProgress) startLocked(ev zfsrepl.Progress) {
	b.step, b.bytes, b.drawn = ev.Step, 0, b.now()
	b.known = ev.Total > 0
	length := int64(-1) // a spinner
	if b.known {
		length = ev.Total
	}
	// About 55 columns go to the percentage, the bar, the byte counts, the
	// rate and the times; the description gets the rest.
	desc := ellipsize(stepLabel(ev.Step), max(b.width-55, 24))
	b.bar = progressbar.NewOptions64(length,
		progressbar.OptionSetWriter(b.w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionSetWidth(20),
		progressbar.OptionThrottle(0), // Update throttles
		progressbar.OptionSpinnerType(14),
		// No spinner goroutine: the spinner turns as the bar is drawn,
		// and nothing writes to the terminal after the step ends.
		progressbar.OptionSetSpinnerChangeInterval(0),
		progressbar.OptionSetRenderBlankState(true),
	)
}

// drawLocked moves the bar to b.bytes.
func (b *barProgress) drawLocked() {
	// The estimate can be low: keep the bar just short of full so it does
	// not finish before the step does.
	if b.known && b.bytes >= b.bar.GetMax64() {
		b.bar.ChangeMax64(b.bytes + 1)
	}
	_ = b.bar.Set64(b.bytes)
}

// finishLocked draws the step's final state, with the bytes actually sent,
// and leaves it on its own line.
func (b *barProgress) finishLocked() {
	switch {
	case b.bytes <= 0:
		// Nothing moved (the receive failed at once): keep the blank bar.
	case b.known:
		// A full bar of what was really sent; the count first when the
		// estimate was high, so the bar never shows the new length with
		// an old count.
		if b.bytes < b.bar.GetMax64() {
			_ = b.bar.Set64(b.bytes)
		}
		b.bar.ChangeMax64(b.bytes)
		_ = b.bar.Set64(b.bytes)
	default:
		_ = b.bar.Set64(b.bytes)
		_ = b.bar.Finish()
	}
	b.closeLocked()
}

// endLocked draws an unfinished step's last count and leaves its bar there.
func (b *barProgress) endLocked() {
	b.drawLocked()
	b.closeLocked()
}

func (b *barProgress) closeLocked() {
	_ = b.bar.Exit()
	fmt.Fprintln(b.w)
	b.bar = nil
}

// ellipsize shortens s to at most n bytes by cutting out its middle, so both
// the kind and the target stay readable.
func ellipsize(s string, n int) string {
	if len(s) <= n || n < 5 {
		return s
	}
	head := (n - 3) / 3
	tail := n - 3 - head
	return s[:head] + "..." + s[len(s)-tail:]
}
