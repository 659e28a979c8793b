package zfsrepl

import (
	"errors"
	"testing"
)

func snapV(ds, short string, guid, txg uint64) Version {
	return Version{Name: ds + "@" + short, Type: Snapshot, GUID: guid, CreateTXG: txg}
}

// afterSteps must yield the tree a listing of the receiver would show after
// the steps, or refuse so the engine lists.
func TestAfterSteps(t *testing.T) {
	s1, s2, s3 := "zrepl-ha_20261201T100000Z_000001", "zrepl-ha_20261201T100002Z_000002", "zrepl-ha_20261201T100004Z_000003"
	stree := []TreeDataset{
		{Name: "tank/a", Versions: []Version{snapV("tank/a", s1, 11, 5), {Name: "tank/a#c", Type: Bookmark, GUID: 11, CreateTXG: 5}, snapV("tank/a", "admin", 12, 6), snapV("tank/a", s2, 13, 7), snapV("tank/a", s3, 14, 9)}},
		{Name: "tank/a/b", Versions: []Version{snapV("tank/a/b", s1, 21, 5), snapV("tank/a/b", s2, 23, 7), snapV("tank/a/b", s3, 24, 9)}},
	}
	rtree := []TreeDataset{
		{Name: "pool/a", Versions: []Version{{Name: "pool/a@" + s1, Type: Snapshot, GUID: 11, CreateTXG: 100, UserRefs: 1}}},
		{Name: "pool/a/b", Versions: []Version{{Name: "pool/a/b@" + s1, Type: Snapshot, GUID: 21, CreateTXG: 100, UserRefs: 1}}},
	}
	inc := func(src, tgt, from, to string, interm bool) StepResult {
		return StepResult{Step: Step{Kind: StepIncremental, Source: src, Target: tgt, To: to, Send: SendOptions{From: from, Snapshot: src + "@" + to, Intermediates: interm}}}
	}
	steps := []StepResult{
		inc("tank/a", "pool/a", "tank/a@"+s1, s3, true),
		inc("tank/a/b", "pool/a/b", "tank/a/b#"+"c", s3, false),
	}
	// tank/a/b's base is a bookmark the sender does not have: refuse.
	if _, ok := afterSteps(stree, rtree, steps); ok {
		t.Fatal("a base missing from the sender's tree must make the caller list")
	}
	steps[1] = inc("tank/a/b", "pool/a/b", "tank/a/b@"+s1, s3, false)
	after, ok := afterSteps(stree, rtree, steps)
	if !ok {
		t.Fatal("afterSteps refused plain incrementals")
	}
	names := func(d TreeDataset) (out []string) {
		for _, v := range d.Versions {
			out = append(out, v.Short())
		}
		return out
	}
	if got, want := names(after[0]), []string{s1, "admin", s2, s3}; !equal(got, want) {
		t.Errorf("-I: receiver has %v, want %v", got, want)
	}
	if got, want := names(after[1]), []string{s1, s3}; !equal(got, want) {
		t.Errorf("-i: receiver has %v, want %v", got, want)
	}
	if got := LatestConsistent(after); got != s3 {
		t.Errorf("LatestConsistent = %q, want %q", got, s3)
	}
	if len(rtree[0].Versions) != 1 {
		t.Error("afterSteps changed the tree it was given")
	}
	for name, bad := range map[string]StepResult{
		"failed": {Step: steps[0].Step, Err: errors.New("cut")},
		"full":   {Step: Step{Kind: StepFull, Source: "tank/a", Target: "pool/a", To: s3, Send: SendOptions{Snapshot: "tank/a@" + s3}}},
		"resume": {Step: Step{Kind: StepResume, Source: "tank/a", Target: "pool/a"}},
		"new":    inc("tank/a/c", "pool/a/c", "tank/a/c@"+s1, s3, true),
	} {
		if _, ok := afterSteps(stree, rtree, []StepResult{bad}); ok {
			t.Errorf("%s step: afterSteps must refuse", name)
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
