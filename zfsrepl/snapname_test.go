package zfsrepl

import (
	"sort"
	"testing"
	"time"
)

func TestSnapshotNameRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 26, 16, 15, 0, 0, time.FixedZone("CET", 3600))
	n := SnapshotName(at, 42)
	if n != "zrepl-ha_20261126T151500Z_000042" {
		t.Fatal(n)
	}
	got, seq, ok := ParseSnapshotName(n)
	if !ok || seq != 42 || !got.Equal(at) {
		t.Fatal(got, seq, ok)
	}
	if err := ValidateShortName(n); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"zrepl-ha_manual", "zrepl-ha_20261126T151500Z", "x_zrepl-ha_20261126T151500Z_000001", "zrepl-ha_20261326T151500Z_000001", "zrepl-ha_rescue_3_20261126T151500Z"} {
		if _, _, ok := ParseSnapshotName(bad); ok {
			t.Errorf("%q parsed as ours", bad)
		}
	}
}

func TestSnapshotNamesSortByTime(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var names []string
	for i := 0; i < 100; i++ {
		names = append(names, SnapshotName(base.Add(time.Duration(i)*time.Second), uint64(999990+i)))
	}
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	for i := range names {
		if names[i] != sorted[i] {
			t.Fatalf("names do not sort by time at %d: %s vs %s", i, names[i], sorted[i])
		}
	}
}

func TestCursorAndHoldNames(t *testing.T) {
	if c := CursorName("beta", "zrepl-ha_20261126T151500Z_000042"); c != "zrepl-ha_cursor_beta_20261126T151500Z_000042" {
		t.Fatal(c)
	}
	if err := ValidateHoldTag(HoldTag("beta")); err != nil {
		t.Fatal(err)
	}
	if IsOwned(Version{Name: "p/a#zrepl-ha_20261126T151500Z_000042", Type: Bookmark}) {
		t.Fatal("bookmark counted as an owned snapshot")
	}
}
