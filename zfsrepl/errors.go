package zfsrepl

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel kinds of zfs failure. Test with errors.Is; the concrete error is
// *Error, which also carries the command line and zfs's own message.
var (
	ErrDatasetNotFound     = errors.New("dataset does not exist")
	ErrDestinationModified = errors.New("destination modified since its most recent snapshot")
	ErrBusy                = errors.New("dataset is busy")
	ErrExists              = errors.New("dataset already exists")
	ErrNoCommonBase        = errors.New("incremental source does not match the destination's most recent snapshot")
	// ErrHeld is a destroy refused because a user hold protects the snapshot.
	ErrHeld = errors.New("snapshot is held")
	// ErrHasClones: a snapshot a clone depends on (a rejoin's rescue, a
	// drill's clone) cannot be destroyed.
	ErrHasClones = errors.New("snapshot has dependent clones")
	// ErrPeerNotReady: the receiving node refused replication for now (it
	// is rejoining or starting); a cycle can wait for it cheaply.
	ErrPeerNotReady = errors.New("the peer is not ready for replication yet")
)

// Error is a failed zfs or zpool command.
type Error struct {
	Cmd    string // the full command line
	Stderr string // zfs's own message
	Kind   error  // one of the sentinels above, or nil
	Err    error  // the underlying exec error
}

func (e *Error) Error() string {
	msg := e.Stderr
	if msg == "" && e.Err != nil {
		msg = e.Err.Error()
	}
	return fmt.Sprintf("%s: %s", e.Cmd, msg)
}

// Unwrap exposes both the kind (for errors.Is) and the exec error.
func (e *Error) Unwrap() []error {
	var out []error
	if e.Kind != nil {
		out = append(out, e.Kind)
	}
	if e.Err != nil {
		out = append(out, e.Err)
	}
	return out
}

// ExitCode is the documented CLI exit code: 4 for a missing dataset, 3 for
// any other zfs failure.
func (e *Error) ExitCode() int {
	if errors.Is(e.Kind, ErrDatasetNotFound) {
		return 4
	}
	return 3
}

// ResumableError is a receive that was interrupted but left a resumable
// state: continue it with `zfs send -t Token`, or discard it with recv -A.
type ResumableError struct {
	Dataset string
	Token   string
	Err     error
}

func (e *ResumableError) Error() string {
	return fmt.Sprintf("receive into %s was interrupted and can be resumed (token %.24s...): %v", e.Dataset, e.Token, e.Err)
}

func (e *ResumableError) Unwrap() error { return e.Err }

// ExitCode: a resumable interruption is a zfs failure.
func (e *ResumableError) ExitCode() int { return 3 }

// classify maps zfs's message to a sentinel. The messages are OpenZFS 2.x's
// (lib/libzfs/libzfs_util.c and libzfs_sendrecv.c).
func classify(stderr string) error {
	s := strings.ToLower(stderr)
	switch {
	case strings.Contains(s, "has been modified") && strings.Contains(s, "since most recent snapshot"):
		return ErrDestinationModified
	case strings.Contains(s, "does not exist"), strings.Contains(s, "no such pool"),
		strings.Contains(s, "could not find any snapshots to destroy"):
		return ErrDatasetNotFound
	case strings.Contains(s, "being held"):
		return ErrHeld
	case strings.Contains(s, "dependent clones"):
		return ErrHasClones
	case strings.Contains(s, "is busy"), strings.Contains(s, "dataset is busy"):
		return ErrBusy
	case strings.Contains(s, "already exists"), strings.Contains(s, "bookmark exists"):
		return ErrExists
	case strings.Contains(s, "is not an earlier snapshot"), strings.Contains(s, "most recent snapshot") && strings.Contains(s, "does not match incremental source"):
		return ErrNoCommonBase
	}
	return nil
}
