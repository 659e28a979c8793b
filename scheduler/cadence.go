package scheduler

import (
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"
)

// DefaultCadence is how often a root is snapshotted and replicated when the
// config does not say.
const DefaultCadence = "@every 5s"

// cadenceParser accepts an optional seconds field (so "*/1 * * * * *" is
// every second) and descriptors (@every 5s, @hourly).
var cadenceParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseCadence parses a cron spec, refusing anything more often than once a
// second.
func ParseCadence(spec string) (cron.Schedule, error) {
	if spec == "" {
		spec = DefaultCadence
	}
	// cron rounds "@every 500ms" up to 1s silently; say so instead.
	if d, ok := strings.CutPrefix(spec, "@every "); ok {
		if dur, err := time.ParseDuration(strings.TrimSpace(d)); err == nil && dur < time.Second {
			return nil, fmt.Errorf("snapshots.cadence %q: at most once a second", spec)
		}
	}
	s, err := cadenceParser.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("snapshots.cadence %q: %w (examples: \"@every 5s\", \"*/10 * * * * *\", \"0 */5 * * * *\")", spec, err)
	}
	if ce, ok := s.(cron.ConstantDelaySchedule); ok && ce.Delay < time.Second {
		return nil, fmt.Errorf("snapshots.cadence %q: at most once a second", spec)
	}
	return s, nil
}

// coalescer runs at most one cycle at a time. A tick that arrives while a
// cycle runs is remembered, and one more cycle runs as soon as the current
// one ends: the backlog is coalesced into that one cycle, never queued into
// a storm. (cron's SkipIfStillRunning would drop the tick instead, so the
// next cycle would wait a whole cadence; it also never releases its slot
// after a panic. Here the slot is released by a defer, and cron.Recover sits
// inside, around the job.)
type coalescer struct {
	run     func()
	running atomic.Bool
	pending atomic.Bool
}

func (c *coalescer) Run() {
	c.pending.Store(true)
	for {
		if !c.running.CompareAndSwap(false, true) {
			return // the running loop will see pending
		}
		func() {
			defer c.running.Store(false)
			for c.pending.Swap(false) {
				c.run()
			}
		}()
		// A tick that came between the last Swap and the release found the
		// slot taken and left: take it back for that tick.
		if !c.pending.Load() {
			return
		}
	}
}

// Schedule runs job on spec until stop is called: coalescing overruns,
// recovering panics (logged), one cycle at a time.
func Schedule(spec string, job func(), log *slog.Logger) (stop func(), err error) {
	sched, err := ParseCadence(spec)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	logger := cron.VerbosePrintfLogger(slogPrintf{log})
	co := &coalescer{run: func() {
		cron.NewChain(cron.Recover(logger)).Then(cron.FuncJob(job)).Run()
	}}
	c := cron.New(cron.WithParser(cadenceParser), cron.WithLogger(cron.DiscardLogger))
	c.Schedule(sched, co)
	c.Start()
	return func() { <-c.Stop().Done() }, nil
}

type slogPrintf struct{ log *slog.Logger }

func (s slogPrintf) Printf(format string, args ...any) {
	s.log.Error("scheduler: " + fmt.Sprintf(format, args...))
}
