package zfsrepl

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateNames(t *testing.T) {
	long := "tank/" + strings.Repeat("a", 260)
	cases := []struct {
		fn   func(string) error
		kind string
		name string
		ok   bool
	}{
		{ValidateDataset, "ds", "tank", true},
		{ValidateDataset, "ds", "tank/a/b_c-d:e.f", true},
		{ValidateDataset, "ds", "tank/with space", true},
		{ValidateDataset, "ds", "", false},
		{ValidateDataset, "ds", "-x", false},
		{ValidateDataset, "ds", "tank/-rf", false},
		{ValidateDataset, "ds", "tank//a", false},
		{ValidateDataset, "ds", "tank/a/", false},
		{ValidateDataset, "ds", "tank/../etc", false},
		{ValidateDataset, "ds", "tank/.", false},
		{ValidateDataset, "ds", "/tank/a", false},
		{ValidateDataset, "ds", "1tank", false},
		{ValidateDataset, "ds", "tank/a@s", false},
		{ValidateDataset, "ds", "tank/a;rm", false},
		{ValidateDataset, "ds", "tank/a%b", false},
		{ValidateDataset, "ds", "tank/a\nb", false},
		{ValidateDataset, "ds", long, false},
		{ValidateSnapshot, "snap", "tank/a@s1", true},
		{ValidateSnapshot, "snap", "tank/a@zrepl-ha_20261126T120000Z_000001", true},
		{ValidateSnapshot, "snap", "tank/a", false},
		{ValidateSnapshot, "snap", "tank/a@", false},
		{ValidateSnapshot, "snap", "tank/a@-x", false},
		{ValidateSnapshot, "snap", "tank/a@b@c", false},
		{ValidateSnapshot, "snap", "tank/a@b#c", false},
		{ValidateSnapshot, "snap", "@s", false},
		{ValidateBookmark, "bm", "tank/a#b", true},
		{ValidateBookmark, "bm", "tank/a@b", false},
		{ValidateBookmark, "bm", "tank/a#", false},
		{ValidateSnapshotOrBookmark, "either", "tank/a#b", true},
		{ValidateSnapshotOrBookmark, "either", "tank/a@b", true},
		{ValidateSnapshotOrBookmark, "either", "tank/a", false},
		{ValidateShortName, "short", "s1", true},
		{ValidateShortName, "short", "a/b", false},
		{ValidateHoldTag, "tag", "zrepl-ha:peer beta", true},
		{ValidateHoldTag, "tag", "", false},
		{ValidateHoldTag, "tag", "-r", false},
		{ValidateHoldTag, "tag", "a\x00b", false},
	}
	for _, c := range cases {
		t.Run(c.kind+"/"+c.name, func(t *testing.T) {
			err := c.fn(c.name)
			if c.ok && err != nil {
				t.Fatalf("want ok, got %v", err)
			}
			if !c.ok {
				if err == nil {
					t.Fatal("want error")
				}
				if !errors.Is(err, ErrInvalidName) {
					t.Fatalf("error does not wrap ErrInvalidName: %v", err)
				}
				if !strings.Contains(err.Error(), "invalid") {
					t.Fatalf("unclear message: %v", err)
				}
			}
		})
	}
}

func FuzzValidateSnapshot(f *testing.F) {
	for _, s := range []string{"tank/a@s", "-x", "a@@b", "t/../x@y", "t/a#b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateSnapshot(s) != nil {
			return
		}
		// Whatever passes must never look like an option or escape.
		if strings.HasPrefix(s, "-") || strings.Contains(s, "/-") || strings.Contains(s, "@-") ||
			strings.Contains(s, "..") && strings.Contains(s, "/../") || strings.Count(s, "@") != 1 {
			t.Fatalf("accepted %q", s)
		}
	})
}

func TestSplitVersion(t *testing.T) {
	ds, sep, short, ok := SplitVersion("tank/a#bm")
	if ds != "tank/a" || sep != '#' || short != "bm" || !ok {
		t.Fatal(ds, sep, short, ok)
	}
	if _, _, _, ok := SplitVersion("tank/a"); ok {
		t.Fatal("plain dataset split as version")
	}
}

// A comma would split one name into two in a batch destroy.
func TestValidateSnapshotRefusesComma(t *testing.T) {
	if err := ValidateSnapshot("tank/a@s4,s3"); err == nil {
		t.Fatal("a comma in a snapshot name was accepted")
	}
}
