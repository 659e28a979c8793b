package scheduler

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Berlin even where the system has no zoneinfo

	"github.com/zrepl-ha/zrepl-ha/internal/config"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

const day = 24 * time.Hour

// defaultRules is the default grid of both sides (docs/config.md).
var defaultRules = []string{"1h:all", "24h:1h", "30d:1d"}

func mustGrid(t testing.TB, rules ...string) Grid {
	t.Helper()
	rs := make([]config.KeepRule, len(rules))
	for i, s := range rules {
		r, err := config.ParseKeepRule(s)
		if err != nil {
			t.Fatalf("rule %q: %v", s, err)
		}
		rs[i] = r
	}
	g, err := NewGrid(rs)
	if err != nil {
		t.Fatalf("NewGrid(%q): %v", rules, err)
	}
	return g
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// at names a snapshot taken at t (sequence 1; distinct times make distinct
// names).
func at(t time.Time) string { return zfsrepl.SnapshotName(t, 1) }

// parsedName is what the reference model and the simulations know about a
// name, so they do not depend on Plan's own parsing and sorting.
type parsedName struct {
	name string
	t    time.Time
	seq  uint64
}

func parseName(n string) (parsedName, bool) {
	t, seq, ok := zfsrepl.ParseSnapshotName(n)
	return parsedName{n, t, seq}, ok
}

func olderFirst(a, b parsedName) int {
	return cmp.Or(a.t.Compare(b.t), cmp.Compare(a.seq, b.seq), strings.Compare(a.name, b.name))
}

// sortOldestFirst sorts zrepl-ha names by (time, sequence, name).
func sortOldestFirst(names []string) []string {
	ps := make([]parsedName, len(names))
	for i, n := range names {
		p, ok := parseName(n)
		if !ok {
			panic("not a zrepl-ha name: " + n)
		}
		ps[i] = p
	}
	slices.SortFunc(ps, olderFirst)
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.name
	}
	return out
}

// class is where the reference model puts a snapshot at some now: in the
// future, past the last span, in an "all" window (iv 0) or in the interval
// bucket (iv, bucket). Rules with equal intervals share buckets.
type class struct {
	future, out bool
	iv          time.Duration
	bucket      int64
}

func classify(g Grid, now, t time.Time) class {
	age := now.Sub(t)
	if age < 0 {
		return class{future: true}
	}
	for _, r := range g.Rules {
		if age < r.Span {
			if r.All() {
				return class{}
			}
			// Independent of Plan's integer floor division on purpose.
			return class{iv: r.Interval, bucket: int64(math.Floor(float64(t.Unix()) / r.Interval.Seconds()))}
		}
	}
	return class{out: true}
}

// refPlan is a straightforward model of the grid: a map from bucket to its
// oldest snapshot. lookup parses a name (the simulations pass a cache).
func refPlan(g Grid, now time.Time, names []string, lookup func(string) (parsedName, bool)) (keep, destroy []string) {
	var ps []parsedName
	seen := map[string]bool{}
	for _, n := range names {
		if p, ok := lookup(n); ok && !seen[n] {
			seen[n] = true
			ps = append(ps, p)
		}
	}
	slices.SortFunc(ps, olderFirst)
	oldest := map[class]parsedName{}
	for _, p := range ps {
		c := classify(g, now, p.t)
		if k, ok := oldest[c]; !ok || olderFirst(p, k) < 0 {
			oldest[c] = p
		}
	}
	for _, p := range ps {
		c := classify(g, now, p.t)
		switch {
		case len(g.Rules) == 0, c.future, !c.out && c.iv == 0:
			keep = append(keep, p.name)
		case c.out:
			destroy = append(destroy, p.name)
		case oldest[c].name == p.name:
			keep = append(keep, p.name)
		default:
			destroy = append(destroy, p.name)
		}
	}
	return keep, destroy
}

func shuffled(r *rand.Rand, names []string) []string {
	out := slices.Clone(names)
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func TestNewGridAccepts(t *testing.T) {
	for _, rules := range [][]string{
		defaultRules,
		{"1h:all", "24h:1h", "30d:1d", "52w:1w"},
		{"1s:all"},
		{"30d:1d"},
		{"1h:1h"},                   // interval == span
		{"1h:all", "2h:all"},        // "all" after "all"
		{"1d:1h", "2d:1h", "3d:1d"}, // equal intervals
		{"90m:1h", "1d:7h"},         // spans that are no multiple of the interval
	} {
		g := mustGrid(t, rules...)
		if len(g.Rules) != len(rules) {
			t.Errorf("%q: %d rules", rules, len(g.Rules))
		}
	}
}

func TestNewGridCopiesRules(t *testing.T) {
	rules := []config.KeepRule{{Span: time.Hour}, {Span: day, Interval: time.Hour}}
	g, err := NewGrid(rules)
	if err != nil {
		t.Fatal(err)
	}
	rules[1].Interval = time.Minute
	if g.Rules[1].Interval != time.Hour {
		t.Fatal("the grid shares the caller's slice")
	}
}

func TestNewGridRejects(t *testing.T) {
	h := time.Hour
	cases := []struct {
		name  string
		rules []config.KeepRule
		want  []string // substrings of the message, in order
	}{
		{"empty", nil, []string{"at least one rule"}},
		{"zero span", []config.KeepRule{{Span: 0}}, []string{"rule 1", "span must be positive"}},
		{"negative span", []config.KeepRule{{Span: -h}}, []string{"rule 1", "span must be positive"}},
		{"negative interval", []config.KeepRule{{Span: h, Interval: -time.Minute}}, []string{"rule 1", "interval must be positive"}},
		{"sub-second span", []config.KeepRule{{Span: 1500 * time.Millisecond}}, []string{"rule 1", "whole seconds"}},
		{"sub-second interval", []config.KeepRule{{Span: h, Interval: time.Millisecond}}, []string{"rule 1", "whole seconds"}},
		{"interval longer than span", []config.KeepRule{{Span: h, Interval: 2 * h}}, []string{"rule 1 (1h:2h)", "interval 2h is longer than the span 1h"}},
		{"interval longer than span, in days", []config.KeepRule{{Span: h}, {Span: day, Interval: 2 * day}},
			[]string{"retention grid: rule 2 (1d:2d): interval 48h is longer than the span 24h"}}, // as in docs/scheduler.md
		{"equal spans", []config.KeepRule{{Span: h}, {Span: h, Interval: h}}, []string{"rule 2 (1h:1h)", "spans must increase"}},
		{"decreasing spans", []config.KeepRule{{Span: day}, {Span: h, Interval: h}}, []string{"rule 2", "spans must increase"}},
		{"decreasing intervals", []config.KeepRule{{Span: day, Interval: h}, {Span: 30 * day, Interval: time.Minute}}, []string{"rule 2 (30d:1m)", "must not keep more often than the previous rule (1d:1h)"}},
		{"all after interval", []config.KeepRule{{Span: day, Interval: h}, {Span: 2 * day}}, []string{"rule 2 (2d:all)", "must not keep more often"}},
		{"every problem reported", []config.KeepRule{{Span: h, Interval: 2 * h}, {Span: h}, {Span: day, Interval: -1}},
			[]string{"rule 1", "longer than the span", "\n", "rule 2", "spans must increase", "\n", "rule 3", "interval must be positive"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g, err := NewGrid(c.rules)
			if err == nil {
				t.Fatalf("accepted: %+v", g)
			}
			msg := err.Error()
			rest := msg
			for _, w := range c.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("message %q lacks %q (in order %q)", msg, w, c.want)
				}
				rest = rest[i+len(w):]
			}
			if !strings.HasPrefix(msg, "retention grid: ") {
				t.Errorf("message %q does not say what it is about", msg)
			}
			if g.Rules != nil {
				t.Errorf("an invalid grid came back with rules: %+v", g)
			}
		})
	}
}

func TestPlanBoundaries(t *testing.T) {
	g := mustGrid(t, defaultRules...)
	now := utc("2026-11-26T16:15:00Z")
	ago := func(d time.Duration) string { return at(now.Add(-d)) }
	on := func(s string) string { return at(utc(s)) }
	same := utc("2026-11-26T11:30:00Z")
	cases := []struct {
		name          string
		keep, destroy []string
	}{
		{"age 0 and the all window",
			[]string{ago(0), ago(time.Second), ago(30 * time.Minute), ago(30*time.Minute + time.Second), ago(time.Hour - time.Second)}, nil},
		{"exactly 1h old is in the hourly window",
			// 15:14:59 and 15:15:00 share the 15:00 bucket; 15:15:01 is still in "all".
			[]string{ago(time.Hour + time.Second), ago(time.Hour - time.Second)}, []string{ago(time.Hour)}},
		{"exactly 24h old is in the daily window",
			// 25th 16:14:59 keeps the 25th's day bucket; 16:15:00 is its second snapshot;
			// 16:15:01 is the hourly window's oldest in its 16:00 bucket.
			[]string{ago(day + time.Second), ago(day - time.Second)}, []string{ago(day)}},
		{"exactly 30d old is destroyed",
			[]string{ago(30*day - time.Second)}, []string{ago(30 * day)}},
		{"older than the last span",
			nil, []string{ago(30*day + time.Second), ago(365 * day), on("1999-12-31T23:59:59Z")}},
		{"hour bucket boundary",
			[]string{on("2026-11-26T10:59:59Z"), on("2026-11-26T11:00:00Z")}, nil},
		{"the oldest in an hour bucket is kept",
			[]string{on("2026-11-26T11:00:00Z")},
			[]string{on("2026-11-26T11:00:01Z"), on("2026-11-26T11:30:00Z"), on("2026-11-26T11:59:59Z")}},
		{"buckets with no snapshot keep nothing",
			// Buckets 08, 09 (empty), 10: two kept.
			[]string{on("2026-11-26T08:10:00Z"), on("2026-11-26T10:20:00Z")}, []string{on("2026-11-26T10:40:00Z")}},
		{"day bucket boundary",
			[]string{on("2026-11-20T23:59:59Z"), on("2026-11-21T00:00:00Z")}, nil},
		{"the oldest in a day bucket is kept",
			[]string{on("2026-11-21T00:00:00Z")}, []string{on("2026-11-21T12:00:00Z"), on("2026-11-21T23:59:59Z")}},
		{"a bucket cut by a window edge keeps its oldest in each window",
			// The 15:00 bucket: 15:00 and 15:10 are in the hourly window, 15:20 in "all".
			[]string{on("2026-11-26T15:00:00Z"), on("2026-11-26T15:20:00Z")}, []string{on("2026-11-26T15:10:00Z")}},
		{"the future is kept",
			[]string{ago(-time.Second), ago(-time.Hour), ago(-400 * day)}, nil},
		{"same second: the lower sequence is kept",
			[]string{zfsrepl.SnapshotName(same, 7)}, []string{zfsrepl.SnapshotName(same, 8), zfsrepl.SnapshotName(same, 1000000)}},
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := shuffled(r, append(slices.Clone(c.keep), c.destroy...))
			keep, destroy := g.Plan(now, in)
			if want := sortOldestFirst(c.keep); !slices.Equal(keep, want) {
				t.Errorf("keep\n got %q\nwant %q", keep, want)
			}
			if want := sortOldestFirst(c.destroy); !slices.Equal(destroy, want) {
				t.Errorf("destroy\n got %q\nwant %q", destroy, want)
			}
		})
	}
}

func TestPlanAllWindowKeepsEverything(t *testing.T) {
	g := mustGrid(t, "1d:all")
	now := utc("2026-11-26T16:15:00Z")
	r := rand.New(rand.NewPCG(3, 4))
	var in []string
	for i := range 5000 {
		in = append(in, zfsrepl.SnapshotName(now.Add(-time.Duration(r.Int64N(int64(day/time.Second)))*time.Second), uint64(i)))
	}
	keep, destroy := g.Plan(now, in)
	if len(keep) != len(in) || len(destroy) != 0 {
		t.Fatalf("kept %d, destroyed %d of %d", len(keep), len(destroy), len(in))
	}
	keep, destroy = g.Plan(now, []string{at(now.Add(-day)), at(now.Add(-day + time.Second))})
	if len(keep) != 1 || len(destroy) != 1 {
		t.Fatalf("at the span: kept %q, destroyed %q", keep, destroy)
	}
}

func TestPlanOneOldestPerBucket(t *testing.T) {
	g := mustGrid(t, "10d:1h")
	now := utc("2026-11-26T16:15:00Z")
	r := rand.New(rand.NewPCG(5, 6))
	var in []string
	occupied := map[int64]time.Time{} // hour bucket -> oldest time in it
	for i := range 3000 {
		// Leave every third hour empty.
		ts := now.Add(-time.Duration(r.Int64N(int64(10*day/time.Second))) * time.Second)
		h := ts.Unix() / 3600
		if h%3 == 0 {
			continue
		}
		in = append(in, zfsrepl.SnapshotName(ts, uint64(i)))
		if o, ok := occupied[h]; !ok || ts.Before(o) {
			occupied[h] = ts
		}
	}
	keep, destroy := g.Plan(now, in)
	if len(keep)+len(destroy) != len(in) {
		t.Fatalf("%d + %d names for %d", len(keep), len(destroy), len(in))
	}
	if len(keep) != len(occupied) {
		t.Fatalf("kept %d, want one for each of the %d occupied buckets", len(keep), len(occupied))
	}
	for _, n := range keep {
		ts, _, _ := zfsrepl.ParseSnapshotName(n)
		h := ts.Unix() / 3600
		if h%3 == 0 {
			t.Errorf("%s kept for an empty bucket", n)
		}
		if !ts.Equal(occupied[h]) {
			t.Errorf("%s kept, but %s is the oldest of its bucket", n, occupied[h])
		}
	}
}

// TestPlanOlderArrivalTakesOverBucket: the one way a keeper loses its bucket
// without changing windows is a snapshot older than it arriving later (say,
// a late replication of an older snapshot).
func TestPlanOlderArrivalTakesOverBucket(t *testing.T) {
	g := mustGrid(t, defaultRules...)
	now := utc("2026-11-26T16:15:00Z")
	x, k := at(utc("2026-11-26T11:20:00Z")), at(utc("2026-11-26T11:05:00Z"))
	keep, _ := g.Plan(now, []string{x})
	if !slices.Equal(keep, []string{x}) {
		t.Fatalf("keep %q", keep)
	}
	keep, destroy := g.Plan(now, []string{x, k})
	if !slices.Equal(keep, []string{k}) || !slices.Equal(destroy, []string{x}) {
		t.Fatalf("keep %q destroy %q, want the older arrival kept", keep, destroy)
	}
}

func TestPlanIgnoresForeignNames(t *testing.T) {
	g := mustGrid(t, defaultRules...)
	now := utc("2026-11-26T16:15:00Z")
	ours := []string{at(now.Add(-time.Minute)), at(now.Add(-40 * day))}
	foreign := []string{
		"", "manual", "zrepl-ha_manual", "zrepl-ha_rescue_20261126T161400Z",
		"zrepl-ha_cursor_beta_20261126T161400Z_000001", // a bookmark's name
		"zrepl-ha_20261126T161400Z_42",                 // sequence too short
		"zrepl-ha_20261126T161400_000001",              // no Z
		"zrepl-ha_20261126T256100Z_000001",             // no such time
		"tank/data@" + at(now.Add(-time.Minute)),       // a full name, not a short one
		"zrepl-ha_20261126T161400Z_000001 ",
		strings.ToUpper(at(now.Add(-time.Minute))),
	}
	keep, destroy := g.Plan(now, append(slices.Clone(foreign), ours...))
	if !slices.Equal(keep, ours[:1]) || !slices.Equal(destroy, ours[1:]) {
		t.Fatalf("keep %q destroy %q", keep, destroy)
	}
	keep, destroy = g.Plan(now, foreign)
	if keep != nil || destroy != nil {
		t.Fatalf("foreign only: keep %q destroy %q", keep, destroy)
	}
}

func TestPlanDeterministic(t *testing.T) {
	g := mustGrid(t, defaultRules...)
	now := utc("2026-11-26T16:15:00Z")
	var in []string
	for i := range 2000 {
		in = append(in, zfsrepl.SnapshotName(now.Add(-time.Duration(i)*97*time.Second), uint64(5000-i)))
	}
	in = append(in, in[:10]...) // duplicates are listed once
	wantKeep, wantDestroy := g.Plan(now, in)
	if len(wantKeep)+len(wantDestroy) != 2000 {
		t.Fatalf("%d + %d names for 2000 distinct", len(wantKeep), len(wantDestroy))
	}
	byAge := func(a, b string) int {
		pa, _ := parseName(a)
		pb, _ := parseName(b)
		return olderFirst(pa, pb)
	}
	if !slices.IsSortedFunc(wantKeep, byAge) || !slices.IsSortedFunc(wantDestroy, byAge) {
		t.Fatal("not sorted oldest first")
	}
	r := rand.New(rand.NewPCG(7, 8))
	for range 20 {
		keep, destroy := g.Plan(now, shuffled(r, in))
		if !slices.Equal(keep, wantKeep) || !slices.Equal(destroy, wantDestroy) {
			t.Fatal("the result depends on the input order")
		}
	}
}

func TestPlanZeroGridKeepsEverything(t *testing.T) {
	now := utc("2026-11-26T16:15:00Z")
	in := []string{at(now.Add(-400 * day)), at(now), "manual"}
	keep, destroy := Grid{}.Plan(now, in)
	if !slices.Equal(keep, in[:2]) || destroy != nil {
		t.Fatalf("keep %q destroy %q", keep, destroy)
	}
}

// TestPlanMatchesModel checks Plan against refPlan on random valid grids,
// snapshot sets and instants.
func TestPlanMatchesModel(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	steps := []time.Duration{time.Second, 7 * time.Second, time.Minute, 10 * time.Minute, time.Hour, 90 * time.Minute, day, 7 * day}
	for i := range 300 {
		var rules []config.KeepRule
		var span, iv time.Duration
		for range 1 + r.IntN(4) {
			if iv > 0 || r.IntN(3) == 0 {
				iv = max(iv, steps[r.IntN(len(steps))])
			}
			span = max(span, iv) + steps[r.IntN(len(steps))]*time.Duration(1+r.IntN(30))
			rules = append(rules, config.KeepRule{Span: span, Interval: iv})
		}
		g, err := NewGrid(rules)
		if err != nil {
			t.Fatalf("generated grid %v: %v", rules, err)
		}
		now := time.Unix(1_700_000_000+r.Int64N(1e8), 0)
		var in []string
		for j := range r.IntN(400) {
			ts := now.Add(-time.Duration(r.Int64N(int64(span/time.Second)*11/10+60)-60) * time.Second)
			in = append(in, zfsrepl.SnapshotName(ts, uint64(r.IntN(3)+j%2)))
		}
		keep, destroy := g.Plan(now, in)
		wantKeep, wantDestroy := refPlan(g, now, in, parseName)
		if !slices.Equal(keep, wantKeep) || !slices.Equal(destroy, wantDestroy) {
			t.Fatalf("case %d, grid %v, now %s:\nkeep    %q\nwant    %q\ndestroy %q\nwant    %q", i, rules, now, keep, wantKeep, destroy, wantDestroy)
		}
	}
}

// TestPlanDST: buckets are UTC, so the same instant planned in Europe/Berlin
// and in UTC gives the same result around both switches, and a day bucket is
// a UTC day, not a Berlin day.
func TestPlanDST(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	g := mustGrid(t, "1h:all", "24h:1h", "30d:1d", "52w:1w")
	for _, sw := range []string{"2026-03-29T01:00:00Z", "2026-10-25T01:00:00Z"} {
		s := utc(sw)
		// Every 13 minutes from 35 days before the switch to 3 hours after.
		var in []string
		for ts := s.Add(-35 * day); !ts.After(s.Add(3 * time.Hour)); ts = ts.Add(13 * time.Minute) {
			in = append(in, at(ts))
		}
		for d := -3 * time.Hour; d <= 3*time.Hour; d += 30 * time.Minute {
			u := s.Add(d)
			b := u.In(berlin)
			ku, du := g.Plan(u, in)
			kb, db := g.Plan(b, in)
			if !slices.Equal(ku, kb) || !slices.Equal(du, db) {
				t.Fatalf("%s (%s in Berlin): %d/%d kept/destroyed in UTC, %d/%d in Berlin", u, b, len(ku), len(du), len(kb), len(db))
			}
		}
	}
	var in []string
	for ts := utc("2026-03-20T00:00:00Z"); ts.Before(utc("2026-10-26T00:00:00Z")); ts = ts.Add(time.Hour + 7*time.Minute) {
		in = append(in, at(ts))
	}
	// Wall-clock times that do not exist or exist twice in Berlin.
	for _, b := range []time.Time{
		time.Date(2026, 3, 29, 2, 30, 0, 0, berlin),  // skipped in spring
		time.Date(2026, 10, 25, 2, 30, 0, 0, berlin), // repeated in autumn
	} {
		ku, du := g.Plan(b.UTC(), in)
		kb, db := g.Plan(b, in)
		if !slices.Equal(ku, kb) || !slices.Equal(du, db) {
			t.Fatalf("%s: Berlin and UTC differ", b)
		}
	}

	// 21:30Z and 22:30Z on Oct 24 are one UTC day but two Berlin days
	// (23:30 on the 24th, 00:30 on the 25th): one is kept.
	now := time.Date(2026, 10, 30, 12, 0, 0, 0, berlin)
	a, b := at(utc("2026-10-24T21:30:00Z")), at(utc("2026-10-24T22:30:00Z"))
	if keep, _ := g.Plan(now, []string{a, b}); !slices.Equal(keep, []string{a}) {
		t.Errorf("day buckets: kept %q, want only %s", keep, a)
	}
	// 00:30Z and 01:30Z on Oct 25 are both 02:30 on Berlin's wall clock
	// (CEST, then CET) but two UTC hours: both are kept.
	now = time.Date(2026, 10, 25, 12, 0, 0, 0, berlin)
	a, b = at(utc("2026-10-25T00:30:00Z")), at(utc("2026-10-25T01:30:00Z"))
	if keep, _ := g.Plan(now, []string{a, b}); !slices.Equal(keep, []string{a, b}) {
		t.Errorf("hour buckets across the autumn switch: kept %q", keep)
	}
	// Berlin's March 29 has 23 hours, 23:00Z on the 28th to 22:00Z on the
	// 29th: 23 UTC hour buckets, and two UTC day buckets.
	var spring []string
	for ts := utc("2026-03-28T23:00:00Z"); ts.Before(utc("2026-03-29T22:00:00Z")); ts = ts.Add(20 * time.Minute) {
		spring = append(spring, at(ts))
	}
	now = time.Date(2026, 3, 30, 12, 0, 0, 0, berlin)
	if keep, _ := mustGrid(t, "2d:1h").Plan(now, spring); len(keep) != 23 {
		t.Errorf("hour buckets across the spring switch: kept %d, want 23", len(keep))
	}
	if keep, _ := mustGrid(t, "3d:1d").Plan(now, spring); len(keep) != 2 {
		t.Errorf("day buckets across the spring switch: kept %d, want 2", len(keep))
	}
}

// TestPlanUTCDays: Unix time has no leap seconds, so a day is 86400 s, day
// buckets start at multiples of 86400 and a leap-second name does not parse.
func TestPlanUTCDays(t *testing.T) {
	g := mustGrid(t, "30d:1d", "52w:1w")
	now := utc("2017-01-05T00:00:00Z")
	// 2016-12-31 had a leap second (23:59:60) in UTC.
	before, after := utc("2016-12-31T23:59:59Z"), utc("2017-01-01T00:00:00Z")
	if after.Sub(before) != time.Second || after.Sub(utc("2016-12-31T00:00:00Z")) != 86400*time.Second {
		t.Fatal("the leap second day is not 86400 s")
	}
	if after.Unix()%86400 != 0 {
		t.Fatal("midnight UTC is not a multiple of 86400")
	}
	leap := "zrepl-ha_20161231T235960Z_000001"
	keep, destroy := g.Plan(now, []string{at(before), at(after), leap})
	if !slices.Equal(keep, []string{at(before), at(after)}) || destroy != nil {
		t.Fatalf("23:59:59 and 00:00:00: keep %q destroy %q", keep, destroy)
	}
	// One snapshot every 10 minutes for 20 days: each kept one is the first
	// of its UTC day, at an exact multiple of 86400 s.
	var in []string
	for ts := utc("2016-12-16T00:00:00Z"); ts.Before(now); ts = ts.Add(10 * time.Minute) {
		in = append(in, at(ts))
	}
	keep, _ = g.Plan(now, in)
	if len(keep) != 20 {
		t.Fatalf("kept %d, want one for each of 20 days", len(keep))
	}
	for _, n := range keep {
		ts, _, _ := zfsrepl.ParseSnapshotName(n)
		if ts.Unix()%86400 != 0 {
			t.Errorf("%s kept: not the start of a UTC day", n)
		}
	}
	// Weekly buckets follow the epoch, which was a Thursday.
	now = utc("2026-11-26T12:00:00Z")
	thu := utc("2026-10-15T00:00:00Z")
	if thu.Weekday() != time.Thursday || thu.Unix()%(7*86400) != 0 {
		t.Fatal("test date")
	}
	keep, _ = g.Plan(now, []string{at(thu.Add(-time.Second)), at(thu), at(thu.Add(6 * day))})
	if want := []string{at(thu.Add(-time.Second)), at(thu)}; !slices.Equal(keep, want) {
		t.Errorf("weekly buckets: kept %q, want %q", keep, want)
	}
}

func TestMaxKept(t *testing.T) {
	now := utc("2026-11-26T16:15:00Z")
	cases := []struct {
		rules   []string
		cadence time.Duration
		want    int
	}{
		{defaultRules, 5 * time.Second, 721 + 24 + 30},
		{defaultRules, time.Second, 3601 + 24 + 30},
		{[]string{"1h:all", "24h:1h", "30d:1d", "52w:1w"}, 5 * time.Second, 721 + 24 + 30 + 49}, // ceil(334d/7d)+1
		{[]string{"90m:1h"}, time.Second, 3},                                                    // ceil(1.5)+1
		{[]string{"10s:all"}, 3 * time.Second, 4},                                               // 10/3+1
		{[]string{"30d:1d"}, 0, 31},                                                             // no "all" rule: cadence does not matter
		{[]string{"1h:all"}, 0, math.MaxInt},                                                    // unbounded
		{[]string{"1h:all"}, -time.Second, math.MaxInt},
	}
	for _, c := range cases {
		if got := mustGrid(t, c.rules...).MaxKept(now, c.cadence); got != c.want {
			t.Errorf("%q at %s: %d, want %d", c.rules, c.cadence, got, c.want)
		}
	}
	if got := (Grid{}).MaxKept(now, time.Second); got != 0 {
		t.Errorf("zero grid: %d", got)
	}
}

// TestMaxKeptBounds plans dense snapshots (exactly one cadence apart) at
// many instants: the kept count never exceeds MaxKept, and reaches it for a
// grid whose span is no multiple of its interval.
func TestMaxKeptBounds(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, c := range []struct {
		rules   []string
		cadence time.Duration
	}{
		{[]string{"90m:1h"}, 10 * time.Second},
		{[]string{"1m:all", "10m:1m", "1h:7m", "2h:1h"}, 2 * time.Second},
		{[]string{"10s:all", "1m:10s", "1h:1m"}, 3 * time.Second},
		{[]string{"5m:all", "1h:5m", "1d:1h"}, 30 * time.Second},
	} {
		g := mustGrid(t, c.rules...)
		maxKept := g.MaxKept(time.Time{}, c.cadence)
		last := g.Rules[len(g.Rules)-1].Span
		reached := 0
		for range 20 {
			now := time.Unix(1_800_000_000+r.Int64N(1e6), 0)
			var in []string
			for ts := now; now.Sub(ts) <= last; ts = ts.Add(-c.cadence) {
				in = append(in, at(ts))
			}
			keep, _ := g.Plan(now, in)
			if len(keep) > maxKept {
				t.Fatalf("%q at %s, now %s: kept %d > MaxKept %d", c.rules, c.cadence, now, len(keep), maxKept)
			}
			reached = max(reached, len(keep))
		}
		if c.rules[0] == "90m:1h" && reached != maxKept {
			t.Errorf("%q: at most %d kept, MaxKept %d is not tight", c.rules, reached, maxKept)
		}
	}
	g := mustGrid(t, "90m:1h")
	now := utc("2026-11-26T02:00:00Z") // window (00:30, 02:00]: buckets 00, 01, 02
	in := []string{at(utc("2026-11-26T00:30:01Z")), at(utc("2026-11-26T01:00:00Z")), at(utc("2026-11-26T02:00:00Z"))}
	if keep, _ := g.Plan(now, in); len(keep) != 3 || g.MaxKept(now, time.Second) != 3 {
		t.Errorf("kept %q", keep)
	}
}

// simPhase plans every planEvery until the simulation has run until.
type simPhase struct{ until, planEvery time.Duration }

// simulation takes a snapshot every cadence (named like zfsrepl.TakeSnapshot
// names them: never earlier than the newest name), plans, and removes what
// the plan destroyed. Every plan is checked against refPlan, its non-future
// kept count against MaxKept (when boundKept), and every snapshot that was
// kept by the previous plan and is destroyed now is accounted for: it aged
// out of the grid, it moved into a window with another interval that has an
// older keeper for its bucket, or its bucket got an older keeper that was not
// there before. Anything else fails the test.
type simulation struct {
	t         *testing.T
	g         Grid
	cadence   time.Duration
	boundKept bool

	known    map[string]parsedName
	current  []string
	seq      uint64
	lastName time.Time
	prevKept map[string]bool
	prevNow  time.Time
	plans    int
	maxSeen  int

	agedOut, movedWindow, olderKeeper int
}

func newSimulation(t *testing.T, g Grid, cadence time.Duration) *simulation {
	return &simulation{t: t, g: g, cadence: cadence, boundKept: true, known: map[string]parsedName{}}
}

func (s *simulation) snapshot(now time.Time) {
	ts := now.UTC().Truncate(time.Second)
	if ts.Before(s.lastName) {
		ts = s.lastName
	}
	s.lastName = ts
	s.seq++
	n := zfsrepl.SnapshotName(ts, s.seq)
	s.known[n] = parsedName{n, ts, s.seq}
	s.current = append(s.current, n)
}

func (s *simulation) lookup(n string) (parsedName, bool) { p, ok := s.known[n]; return p, ok }

func (s *simulation) plan(now time.Time) {
	t := s.t
	t.Helper()
	s.plans++
	keep, destroy := s.g.Plan(now, s.current)
	wantKeep, wantDestroy := refPlan(s.g, now, s.current, s.lookup)
	if !slices.Equal(keep, wantKeep) || !slices.Equal(destroy, wantDestroy) {
		t.Fatalf("now %s: Plan differs from the model: keep %d/%d destroy %d/%d", now, len(keep), len(wantKeep), len(destroy), len(wantDestroy))
	}
	present := 0
	oldest := map[class]parsedName{} // kept now, per bucket
	for _, n := range keep {
		p := s.known[n]
		c := classify(s.g, now, p.t)
		if !c.future {
			present++
		}
		if c.iv > 0 {
			oldest[c] = p
		}
	}
	s.maxSeen = max(s.maxSeen, present)
	if bound := s.g.MaxKept(now, s.cadence); s.boundKept && present > bound {
		t.Fatalf("now %s: %d kept, MaxKept %d", now, present, bound)
	}
	for _, n := range destroy {
		p := s.known[n]
		if p.t.After(now) {
			t.Fatalf("now %s: %s is in the future and was destroyed", now, n)
		}
		if !s.prevKept[n] {
			continue
		}
		before, after := classify(s.g, s.prevNow, p.t), classify(s.g, now, p.t)
		k, hasK := oldest[after]
		switch {
		case after.out:
			s.agedOut++
		case after.iv == 0:
			t.Fatalf("now %s: %s is in an \"all\" window and was destroyed", now, n)
		case !hasK || olderFirst(k, p) >= 0:
			t.Fatalf("now %s: %s destroyed without an older keeper in its bucket", now, n)
		case before.iv != after.iv:
			s.movedWindow++
		case classify(s.g, s.prevNow, k.t) != after || !s.prevKept[k.name]:
			s.olderKeeper++ // k is new in this bucket
		default:
			t.Fatalf("now %s: %s was kept at %s and is destroyed in the same bucket, whose keeper %s was there already",
				now, n, s.prevNow, k.name)
		}
	}
	s.current = keep
	s.prevKept = make(map[string]bool, len(keep))
	for _, n := range keep {
		s.prevKept[n] = true
	}
	s.prevNow = now
}

// run simulates from start, planning as phases say, and returns the end.
func (s *simulation) run(start time.Time, phases []simPhase) time.Time {
	var lastPlan time.Duration = -1 << 62
	var el time.Duration
	for _, ph := range phases {
		for ; el < ph.until; el += s.cadence {
			now := start.Add(el)
			s.snapshot(now)
			if el-lastPlan >= ph.planEvery {
				s.plan(now)
				lastPlan = el
			}
		}
	}
	return start.Add(el)
}

// TestPlanStability runs the grid like the scheduler does, with a monotonic
// clock: a snapshot every cadence, a plan after it, the destroyed ones gone.
// Stretches far from any span boundary are fast-forwarded (the snapshots
// are still taken every cadence, only planned less often).
func TestPlanStability(t *testing.T) {
	const minute = time.Minute
	cases := []struct {
		name    string
		rules   []string
		cadence time.Duration
		phases  []simPhase
	}{
		{"1s cadence for 3 days", []string{"10s:all", "3m:10s", "15m:1m", "1d:30m", "3d:2h"}, time.Second, []simPhase{
			{20 * minute, time.Second},
			{day - 5*minute, 5 * minute},
			{day + 5*minute, time.Second},
			{3*day - 5*minute, 5 * minute},
			{3*day + 5*minute, time.Second},
			{3*day + 5*time.Hour, minute},
		}},
		{"default grid at the default 5s cadence for 3 days", defaultRules, 5 * time.Second, []simPhase{
			{55 * minute, 30 * minute},
			{65 * minute, 5 * time.Second},
			{day - 5*minute, 30 * minute},
			{day + 5*minute, 5 * time.Second},
			{3 * day, 30 * minute},
		}},
		{"equal intervals share buckets", []string{"10s:all", "1m:10s", "3m:10s", "10m:1m", "20m:1m", "1h:15m"}, time.Second, []simPhase{
			{70 * minute, time.Second},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if testing.Short() && c.cadence == time.Second && len(c.phases) > 1 {
				t.Skip("long simulation")
			}
			s := newSimulation(t, mustGrid(t, c.rules...), c.cadence)
			s.run(time.Date(2026, 3, 28, 21, 17, 43, 0, time.UTC), c.phases)
			t.Logf("%d plans, at most %d kept (MaxKept %d); kept then destroyed: %d aged out, %d moved to a coarser window",
				s.plans, s.maxSeen, s.g.MaxKept(time.Time{}, c.cadence), s.agedOut, s.movedWindow)
			if s.movedWindow == 0 {
				t.Error("no snapshot moved between windows: the simulation is too short")
			}
			if c.cadence == time.Second && s.agedOut == 0 {
				t.Error("no snapshot aged out: the simulation is too short")
			}
			if s.olderKeeper != 0 {
				t.Errorf("%d keepers replaced by an older snapshot with a monotonic clock", s.olderKeeper)
			}
		})
	}
}

// TestPlanClockSteppedBack: the clock steps back by 5 minutes. Snapshot
// names never go back (TakeSnapshot reuses the newest name's time), so the
// snapshots taken meanwhile pile up in the future: they are all kept until
// the clock catches up, and then thinned like any other.
func TestPlanClockSteppedBack(t *testing.T) {
	g := mustGrid(t, "1m:all", "5m:1m", "20m:5m")
	s := newSimulation(t, g, time.Second)
	start := time.Date(2026, 10, 25, 0, 40, 0, 0, time.UTC)
	stepped := s.run(start, []simPhase{{10 * time.Minute, time.Second}})
	s.boundKept = false // the piled-up names are not a cadence apart
	back := stepped.Add(-5 * time.Minute)
	newest := s.lastName
	for el := time.Duration(0); el < 35*time.Minute; el += time.Second {
		now := back.Add(el)
		s.snapshot(now)
		s.plan(now) // fails if a snapshot in the future is destroyed
		if now.Before(newest) && len(s.current) < int(el/time.Second)+1 {
			t.Fatalf("now %s: %d kept, fewer than the %d piled up", now, len(s.current), int(el/time.Second)+1)
		}
		if now.Equal(newest.Add(20 * time.Minute)) {
			s.boundKept = true // the pile-up has aged out
		}
	}
	t.Logf("%d plans, at most %d kept (MaxKept %d without the pile-up)", s.plans, s.maxSeen, g.MaxKept(time.Time{}, time.Second))
	if s.maxSeen <= g.MaxKept(time.Time{}, time.Second) {
		t.Errorf("at most %d kept: the pile-up of future snapshots never showed", s.maxSeen)
	}
	if s.movedWindow == 0 || !s.boundKept {
		t.Error("the simulation is too short")
	}
}

// hundredK is 100,000 names one second apart, newest at now, in shuffled
// order.
func hundredK() (now time.Time, names []string) {
	now = utc("2026-11-26T16:15:00Z")
	names = make([]string, 100_000)
	for i := range names {
		names[i] = zfsrepl.SnapshotName(now.Add(-time.Duration(i)*time.Second), uint64(100_000-i))
	}
	return now, shuffled(rand.New(rand.NewPCG(13, 14)), names)
}

func TestPlan100k(t *testing.T) {
	g := mustGrid(t, defaultRules...)
	now, names := hundredK()
	keep, destroy := g.Plan(now, names)
	// "1h:all": ages 0..3599 s, 3600 kept. "24h:1h": 11-25 16:15:01 to 11-26
	// 15:15:00, 24 hour buckets (the first cut by the window edge). "30d:1d":
	// 11-25 12:28:21 to 16:15:00, one day bucket.
	if len(keep) != 3625 || len(destroy) != 100_000-3625 {
		t.Fatalf("kept %d, destroyed %d; want 3625 and %d", len(keep), len(destroy), 100_000-3625)
	}
	if m := g.MaxKept(now, time.Second); len(keep) > m {
		t.Fatalf("kept %d > MaxKept %d", len(keep), m)
	}
	wantOldest := []string{
		zfsrepl.SnapshotName(utc("2026-11-25T12:28:21Z"), 1),     // the day's keeper: the oldest of all
		zfsrepl.SnapshotName(utc("2026-11-25T16:15:01Z"), 13601), // the first hour's, cut by the window
		zfsrepl.SnapshotName(utc("2026-11-25T17:00:00Z"), 16300),
	}
	if !slices.Equal(keep[:3], wantOldest) {
		t.Errorf("oldest kept %q, want %q", keep[:3], wantOldest)
	}
	if keep[len(keep)-1] != zfsrepl.SnapshotName(now, 100_000) {
		t.Errorf("newest kept %s", keep[len(keep)-1])
	}
	wantKeep, wantDestroy := refPlan(g, now, names, parseName)
	if !slices.Equal(keep, wantKeep) || !slices.Equal(destroy, wantDestroy) {
		t.Error("differs from the model")
	}
}

func BenchmarkPlan100k(b *testing.B) {
	g := mustGrid(b, defaultRules...)
	now, names := hundredK()
	b.ReportAllocs()
	for b.Loop() {
		g.Plan(now, names)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(names)), "ns/name")
}

// ExampleGrid_Plan shows the default grid at work.
func ExampleGrid_Plan() {
	rules := make([]config.KeepRule, len(defaultRules))
	for i, s := range defaultRules {
		rules[i], _ = config.ParseKeepRule(s)
	}
	g, err := NewGrid(rules)
	if err != nil {
		panic(err)
	}
	now := time.Date(2026, 11, 26, 16, 15, 0, 0, time.UTC)
	keep, destroy := g.Plan(now, []string{
		"zrepl-ha_20261126T161000Z_000009", // 5 minutes old: "1h:all"
		"zrepl-ha_20261126T120000Z_000008", // 12:00 hour bucket: the oldest
		"zrepl-ha_20261126T123000Z_000007", // 12:00 hour bucket: destroyed
		"zrepl-ha_20261120T000000Z_000004", // 20th: kept by "30d:1d"
		"zrepl-ha_20261001T000000Z_000001", // older than 30 days
		"manual",                           // not ours: neither
	})
	fmt.Println("keep:   ", keep)
	fmt.Println("destroy:", destroy)
	// Output:
	// keep:    [zrepl-ha_20261120T000000Z_000004 zrepl-ha_20261126T120000Z_000008 zrepl-ha_20261126T161000Z_000009]
	// destroy: [zrepl-ha_20261001T000000Z_000001 zrepl-ha_20261126T123000Z_000007]
}
