package scheduler

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/zrepl-ha/zrepl-ha/internal/config"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

// Grid is a retention keep-grid: age windows, youngest first. Rule i covers
// the snapshots whose age is in [Rules[i-1].Span, Rules[i].Span) (0 for the
// first rule). An "all" rule keeps every snapshot of its window; an interval
// rule keeps one snapshot per interval bucket. Snapshots at least as old as
// the last span are destroyed.
//
// Buckets are aligned to UTC multiples of the interval since the Unix epoch
// (leap seconds do not exist in Unix time, so a day is always 86400 s and
// daylight saving time never moves a bucket), and the one kept per bucket is
// the oldest in it, so the keeper does not change when newer snapshots
// arrive or when the pruner runs at another moment. Consecutive rules with
// the same interval share their buckets, so a bucket that straddles their
// common boundary keeps one snapshot, not two.
//
// A snapshot's age is now minus the UTC time in its zrepl-ha name
// (zfsrepl.ParseSnapshotName), not its creation property: the name is what
// replicates, so both nodes see the same age. A snapshot whose time is after
// now (the clock was stepped back) is kept.
//
// The grid alone decides nothing irreversible: zfsrepl.Prune refuses to
// destroy the last common base, held snapshots, snapshots the peer does not
// have yet and anything that is not zrepl-ha's own, whatever Plan asks for.
//
// Build a Grid with NewGrid. A zero Grid (no rules) keeps everything.
type Grid struct{ Rules []config.KeepRule }

var _ Planner = Grid{}

// NewGrid validates rules and returns the grid. The rules must be non-empty,
// each span positive, each interval positive or 0 ("all"), spans and
// intervals whole seconds (snapshot names have one-second resolution), spans
// strictly increasing, no interval longer than its span, and intervals never
// decreasing from rule to rule (so an "all" rule may only follow "all"
// rules). Every problem is reported, one per line. The rules are copied.
func NewGrid(rules []config.KeepRule) (Grid, error) {
	if len(rules) == 0 {
		return Grid{}, errors.New(`retention grid: must have at least one rule, e.g. ["1h:all", "24h:1h", "30d:1d"]`)
	}
	var errs []error
	bad := func(i int, r config.KeepRule, format string, args ...any) {
		errs = append(errs, fmt.Errorf("retention grid: rule %d (%s): %s", i+1, r, fmt.Sprintf(format, args...)))
	}
	for i, r := range rules {
		switch {
		case r.Span <= 0:
			bad(i, r, "span must be positive, got %s", config.Duration(r.Span))
		case r.Interval < 0:
			bad(i, r, "interval must be positive (or \"all\"), got %s", config.Duration(r.Interval))
		case r.Span%time.Second != 0 || r.Interval%time.Second != 0:
			bad(i, r, "span and interval must be whole seconds (snapshot names have one-second resolution)")
		case r.Interval > r.Span:
			bad(i, r, "interval %s is longer than the span %s", config.Duration(r.Interval), config.Duration(r.Span))
		case i > 0 && r.Span <= rules[i-1].Span:
			bad(i, r, "spans must increase from rule to rule: %s does not reach past the previous rule's %s", config.Duration(r.Span), config.Duration(rules[i-1].Span))
		case i > 0 && r.Interval < rules[i-1].Interval:
			bad(i, r, "must not keep more often than the previous rule (%s): older snapshots are thinned, not kept more densely", rules[i-1])
		}
	}
	if len(errs) > 0 {
		return Grid{}, errors.Join(errs...)
	}
	return Grid{Rules: slices.Clone(rules)}, nil
}

// planned is one parsed zrepl-ha snapshot name.
type planned struct {
	name string
	t    time.Time
	sec  int64 // t.Unix(), the bucket arithmetic's input
	seq  uint64
}

// Plan splits names (snapshot short names) into those the grid keeps and
// those it destroys at now. Names that are not zrepl-ha snapshots (see
// zfsrepl.ParseSnapshotName) are in neither list; a name given twice is
// listed once. Both lists are sorted oldest first (by the time in the name,
// then sequence, then name), and the result depends only on now's instant
// and the set of names, not on their order or on now's location.
//
// Plan only applies the grid; zfsrepl.Prune enforces the safety rules (never
// the last common base, never held, never unreplicated, never foreign).
//
// Plan assumes a grid from NewGrid. A grid without rules keeps everything.
func (g Grid) Plan(now time.Time, names []string) (keep, destroy []string) {
	snaps := make([]planned, 0, len(names))
	for _, n := range names {
		t, seq, ok := zfsrepl.ParseSnapshotName(n)
		if !ok {
			continue
		}
		snaps = append(snaps, planned{name: n, t: t, sec: t.Unix(), seq: seq})
	}
	slices.SortFunc(snaps, func(a, b planned) int {
		return cmp.Or(a.t.Compare(b.t), cmp.Compare(a.seq, b.seq), cmp.Compare(a.name, b.name))
	})
	snaps = slices.CompactFunc(snaps, func(a, b planned) bool { return a.name == b.name })

	// Walking oldest first, ages only decrease, so the rule index only
	// decreases, and rules with equal intervals are adjacent (intervals never
	// decrease). The first snapshot seen in an (interval, bucket) is
	// therefore the oldest in it, and a key never comes back once left:
	// remembering the last key is enough, no map needed.
	var (
		lastIv     time.Duration = -1
		lastBucket int64
	)
	for _, s := range snaps {
		age := now.Sub(s.t)
		if age < 0 || len(g.Rules) == 0 {
			keep = append(keep, s.name) // in the future, or no grid at all
			continue
		}
		r, ok := g.rule(age)
		switch {
		case !ok:
			destroy = append(destroy, s.name) // older than the last span
		case r.All():
			keep = append(keep, s.name)
		default:
			// NewGrid allows whole seconds only; max guards a hand-built grid.
			b := floorDiv(s.sec, max(int64(r.Interval/time.Second), 1))
			if r.Interval == lastIv && b == lastBucket {
				destroy = append(destroy, s.name) // an older one keeps this bucket
				continue
			}
			lastIv, lastBucket = r.Interval, b
			keep = append(keep, s.name)
		}
	}
	return keep, destroy
}

// rule returns the rule whose window holds age (age >= 0).
func (g Grid) rule(age time.Duration) (config.KeepRule, bool) {
	for _, r := range g.Rules {
		if age < r.Span {
			return r, true
		}
	}
	return config.KeepRule{}, false
}

// MaxKept is an upper bound on how many snapshots Plan keeps when snapshots
// are taken at least cadence apart (and none is in the future): the sum over
// the rules of window/cadence+1 for an "all" rule and ceil(window/interval)+1
// for an interval rule, window being the rule's span minus the previous
// rule's. The +1 is the bucket (or snapshot) cut by the window's edge; ceil
// covers spans that are no multiple of their interval. The bound is the same
// at every now (now is taken for symmetry with Plan). A cadence <= 0 leaves
// "all" rules unbounded: the result is then math.MaxInt. The tests and the
// lab check that the snapshot count stays within it.
func (g Grid) MaxKept(now time.Time, cadence time.Duration) int {
	_ = now
	total := 0
	prev := time.Duration(0)
	for _, r := range g.Rules {
		window := r.Span - prev
		prev = r.Span
		var n int64
		switch {
		case window <= 0:
			continue // invalid grid; this rule's window is empty
		case r.All() && cadence <= 0:
			return math.MaxInt
		case r.All():
			n = int64(window/cadence) + 1
		default:
			n = int64(window / r.Interval)
			if window%r.Interval != 0 {
				n++
			}
			n++
		}
		if n > int64(math.MaxInt-total) {
			return math.MaxInt
		}
		total += int(n)
	}
	return total
}

// floorDiv is a/b rounded towards minus infinity (b > 0), so buckets before
// 1970 are as wide as the others.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
