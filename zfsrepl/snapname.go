package zfsrepl

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// SnapshotPrefix starts every snapshot zrepl-ha creates. Only snapshots whose
// whole short name matches the pattern below are ever created or destroyed
// by zrepl-ha; an admin's "zrepl-ha_manual" is not ours.
const SnapshotPrefix = "zrepl-ha_"

const snapTimeLayout = "20060102T150405Z"

var ownedRE = regexp.MustCompile(`^zrepl-ha_(\d{8}T\d{6}Z)_(\d{6,})$`)

// SnapshotName is the short name for a snapshot taken at t with sequence
// seq: zrepl-ha_20261126T161500Z_000042. Names sort by time, then sequence,
// as plain strings (for sequences below a million, which at one snapshot a
// second is 11 days; past that the wider number still sorts after because
// the timestamp has moved on).
func SnapshotName(t time.Time, seq uint64) string {
	return fmt.Sprintf("%s%s_%06d", SnapshotPrefix, t.UTC().Format(snapTimeLayout), seq)
}

// ParseSnapshotName reports whether short is one of ours, and its time and
// sequence.
func ParseSnapshotName(short string) (t time.Time, seq uint64, ok bool) {
	m := ownedRE.FindStringSubmatch(short)
	if m == nil {
		return time.Time{}, 0, false
	}
	t, err := time.Parse(snapTimeLayout, m[1])
	if err != nil {
		return time.Time{}, 0, false
	}
	seq, err = strconv.ParseUint(m[2], 10, 64)
	if err != nil {
		return time.Time{}, 0, false
	}
	return t, seq, true
}

// IsOwned reports whether a version (snapshot) was created by zrepl-ha.
func IsOwned(v Version) bool {
	if v.Type != Snapshot {
		return false
	}
	_, _, ok := ParseSnapshotName(v.Short())
	return ok
}

// cursorPrefix names the sender's replication cursor bookmarks for a peer:
// zrepl-ha_cursor_<peer>_<snapshot time>_<seq>.
func cursorPrefix(peer string) string { return "zrepl-ha_cursor_" + peer + "_" }

// CursorName is the cursor bookmark short name for the snapshot short name.
func CursorName(peer, snapShort string) string {
	return cursorPrefix(peer) + strings.TrimPrefix(snapShort, SnapshotPrefix)
}

// HoldTag is the receiver's hold on its last received snapshot.
func HoldTag(peer string) string { return "zrepl-ha:from-" + peer }
