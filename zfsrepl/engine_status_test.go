package zfsrepl

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// A peer that refuses a cycle for now (it rejoins) is not an error in the
// status: it is shown apart, and metrics do not count it as a failed cycle.
func TestRecordPeerNotReady(t *testing.T) {
	e := &Engine{}
	root := Root{Source: "tank/data", Target: "tank/data"}
	for _, tc := range []struct {
		err                 error
		lastError, notReady string
	}{
		{fmt.Errorf("listing receiver root tank/data: %w: on the peer: this node is rejoining", ErrPeerNotReady), "", "not ready"},
		{errors.New("listing receiver root tank/data: connection refused"), "connection refused", ""},
		{nil, "", ""},
	} {
		e.record(&Report{Root: root}, tc.err)
		st := e.Status()[0]
		if !matches(st.LastError, tc.lastError) || !matches(st.PeerNotReady, tc.notReady) {
			t.Errorf("after %v: last error %q, peer not ready %q; want %q and %q", tc.err, st.LastError, st.PeerNotReady, tc.lastError, tc.notReady)
		}
	}
}

// matches: want "" means s must be empty.
func matches(s, want string) bool {
	if want == "" {
		return s == ""
	}
	return strings.Contains(s, want)
}
