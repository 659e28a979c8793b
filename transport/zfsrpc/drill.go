package zfsrpc

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"

	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

// The drill calls: `zrepl-ha drill` on the passive asks the active for the
// checksums of files in the active's copy of a snapshot (drill.sample) and
// for what makes the pair compatible (drill.info). Both only read. The
// answering side is a DrillHandler (failover/drill.Responder); this file
// checks every request before it reaches the handler, so the bounds and the
// path rules hold whatever the handler does.

// Bounds of a drill.sample request. A request over them is refused, never
// trimmed: both sides must hash exactly the same bytes for the checksums to
// mean anything.
const (
	MaxDrillPaths     = 64
	MaxDrillPathLen   = 4096
	MaxDrillFileBytes = 16 << 20
	// MaxDrillTotalBytes bounds paths x file bytes: what one request may
	// make the peer read.
	MaxDrillTotalBytes = 256 << 20
	// MaxDrillCount bounds the files the peer counts in one snapshot.
	MaxDrillCount    = 10_000_000
	drillResultLimit = 4 << 20
)

// DrillSampleRequest asks for checksums of files in one snapshot of the
// answering node.
type DrillSampleRequest struct {
	// Snapshot is the full name on the answering node (dataset@short), under
	// one of its replicated roots.
	Snapshot string `json:"snapshot"`
	// GUID is the snapshot's guid on the asking node: the answer is refused
	// when the answering node's snapshot of that name is another one.
	GUID uint64 `json:"guid"`
	// Paths are slash-separated and relative to the snapshot's root:
	// canonical (path.Clean), no "..", no leading "/", not under ".zfs".
	Paths []string `json:"paths,omitempty"`
	// FileBytes is how much of each file is hashed, from its start.
	FileBytes int64 `json:"file_bytes"`
	// MaxCount, when positive, asks for a count of the snapshot's regular
	// files, stopping at MaxCount.
	MaxCount int `json:"max_count,omitempty"`
}

// DrillFile is one sampled file.
type DrillFile struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256,omitempty"` // of the first FileBytes bytes
	Error  string `json:"error,omitempty"`  // why it could not be read
}

// DrillSampleResponse answers a DrillSampleRequest.
type DrillSampleResponse struct {
	GUID  uint64      `json:"guid"`
	Files []DrillFile `json:"files"` // in the request's order
	// Count is the number of regular files, and CountComplete whether the
	// walk finished below MaxCount.
	Count         int  `json:"count"`
	CountComplete bool `json:"count_complete"`
}

// DrillInfo is what decides whether the two nodes are compatible.
type DrillInfo struct {
	Node string `json:"node"`
	// ZFSVersion is the loaded kernel module's version (2.2.2-0ubuntu9).
	ZFSVersion string      `json:"zfs_version"`
	Pools      []DrillPool `json:"pools"` // the pools that hold the roots
	Roots      []DrillRoot `json:"roots"`
	// SharesFingerprint and VIPFingerprint hash the share and VIP config in
	// a form both nodes compute alike (failover/drill.Fingerprints).
	SharesFingerprint string `json:"shares_fingerprint"`
	VIPFingerprint    string `json:"vip_fingerprint"`
}

// DrillPool is one pool's feature states: "feature@x" -> enabled, active
// or disabled, as zpool get prints them.
type DrillPool struct {
	Name     string            `json:"name"`
	Features map[string]string `json:"features"`
}

// DrillRoot is one replicated root's space.
type DrillRoot struct {
	Name  string `json:"name"`
	Used  uint64 `json:"used"`
	Avail uint64 `json:"avail"`
}

// DrillHandler answers the drill calls on the node that is asked.
type DrillHandler interface {
	DrillSample(ctx context.Context, req DrillSampleRequest) (DrillSampleResponse, error)
	DrillInfo(ctx context.Context) (DrillInfo, error)
}

// DrillSample asks the peer for checksums of files in its snapshot.
func (c *Client) DrillSample(ctx context.Context, req DrillSampleRequest) (DrillSampleResponse, error) {
	var out DrillSampleResponse
	if err := CheckDrillSample(req); err != nil {
		return out, err
	}
	resp, err := c.call(ctx, request{Method: "drill.sample", DrillSample: &req})
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(resp, &out); err != nil {
		return out, fmt.Errorf("zfsrpc: drill.sample from %s: %w", c.Peer, err)
	}
	if len(out.Files) != len(req.Paths) {
		return out, fmt.Errorf("zfsrpc: drill.sample from %s: %d files for %d paths", c.Peer, len(out.Files), len(req.Paths))
	}
	return out, nil
}

// DrillInfo asks the peer for its compatibility facts.
func (c *Client) DrillInfo(ctx context.Context) (DrillInfo, error) {
	var out DrillInfo
	resp, err := c.call(ctx, request{Method: "drill.info"})
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(resp, &out); err != nil {
		return out, fmt.Errorf("zfsrpc: drill.info from %s: %w", c.Peer, err)
	}
	return out, nil
}

// CheckDrillSample refuses a request outside the bounds or with a path
// that could leave the snapshot. Both sides call it.
func CheckDrillSample(req DrillSampleRequest) error {
	bad := func(format string, args ...any) error {
		return &codedError{codeBadRequest, fmt.Errorf("drill.sample: "+format, args...)}
	}
	if err := zfsrepl.ValidateSnapshot(req.Snapshot); err != nil {
		return bad("%w", err)
	}
	switch {
	case len(req.Paths) > MaxDrillPaths:
		return bad("%d paths, at most %d", len(req.Paths), MaxDrillPaths)
	case req.FileBytes <= 0 || req.FileBytes > MaxDrillFileBytes:
		return bad("file_bytes %d outside 1..%d", req.FileBytes, MaxDrillFileBytes)
	case int64(len(req.Paths))*req.FileBytes > MaxDrillTotalBytes:
		return bad("%d paths of %d bytes exceed %d bytes", len(req.Paths), req.FileBytes, MaxDrillTotalBytes)
	case req.MaxCount < 0 || req.MaxCount > MaxDrillCount:
		return bad("max_count %d outside 0..%d", req.MaxCount, MaxDrillCount)
	}
	for _, p := range req.Paths {
		if err := CheckDrillPath(p); err != nil {
			return bad("%w", err)
		}
	}
	return nil
}

// CheckDrillPath accepts a canonical relative slash path that stays inside
// the directory it is joined to.
func CheckDrillPath(p string) error {
	switch {
	case p == "" || len(p) > MaxDrillPathLen:
		return fmt.Errorf("path of %d bytes: want 1..%d", len(p), MaxDrillPathLen)
	case strings.ContainsRune(p, 0) || strings.ContainsRune(p, '\\'):
		return fmt.Errorf("path %q contains a NUL or a backslash", p)
	case path.IsAbs(p) || path.Clean(p) != p:
		return fmt.Errorf("path %q is not a clean relative path", p)
	case p == ".." || strings.HasPrefix(p, "../"):
		return fmt.Errorf("path %q leaves the snapshot", p)
	case p == ".zfs" || strings.HasPrefix(p, ".zfs/"):
		return fmt.Errorf("path %q is under .zfs", p)
	}
	return nil
}

// drillCall serves the drill methods; ok is false for any other method.
func (s *Server) drillCall(ctx context.Context, req request) (out []byte, ok bool, err error) {
	switch req.Method {
	case "drill.sample", "drill.info":
	default:
		return nil, false, nil
	}
	if s.Drill == nil {
		return nil, true, &codedError{codeBadRequest, fmt.Errorf("%s: this node does not answer drills (an older zrepl-ha run?)", req.Method)}
	}
	var res any
	if req.Method == "drill.info" {
		res, err = s.Drill.DrillInfo(ctx)
	} else {
		if req.DrillSample == nil {
			return nil, true, &codedError{codeBadRequest, fmt.Errorf("drill.sample without a request")}
		}
		if err := CheckDrillSample(*req.DrillSample); err != nil {
			return nil, true, err
		}
		if err := s.allowed(req.DrillSample.Snapshot); err != nil {
			return nil, true, err
		}
		res, err = s.Drill.DrillSample(ctx, *req.DrillSample)
	}
	if err != nil {
		return nil, true, coded(err)
	}
	out, err = json.Marshal(res)
	if err == nil && len(out) > drillResultLimit {
		err = fmt.Errorf("%s answer is %d bytes, over the %d-byte limit", req.Method, len(out), drillResultLimit)
	}
	return out, true, err
}
