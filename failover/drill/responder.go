package drill

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/zrepl-ha/zrepl-ha/transport/zfsrpc"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

// ErrGUIDMismatch is a snapshot that has the asked-for name but is a
// different snapshot (another guid): the two nodes' histories diverged.
var ErrGUIDMismatch = errors.New("same snapshot name, different guid")

// Responder answers the drill calls of the peer (zfsrpc.DrillHandler) and
// gathers this node's own compatibility facts for Run. zfsrpc.Server has
// checked a sample request's bounds, paths and root before it gets here.
type Responder struct {
	Node   string
	ZFS    zfsrepl.ZFS
	Roots  []string // this node's replicated roots (config source names)
	System System
	// Fingerprints of this node's share and VIP config (Fingerprints).
	Shares, VIP string
}

var _ zfsrpc.DrillHandler = (*Responder)(nil)

// DrillSample hashes files of one of this node's snapshots, read through
// the dataset's <mountpoint>/.zfs/snapshot/<snap> directory.
func (r *Responder) DrillSample(ctx context.Context, req zfsrpc.DrillSampleRequest) (zfsrpc.DrillSampleResponse, error) {
	var out zfsrpc.DrillSampleResponse
	if err := zfsrpc.CheckDrillSample(req); err != nil {
		return out, err
	}
	ds, _, short, _ := zfsrepl.SplitVersion(req.Snapshot)
	guid, err := snapshotGUID(ctx, r.ZFS, req.Snapshot)
	if err != nil {
		return out, err
	}
	out.GUID = guid
	if req.GUID != 0 && guid != req.GUID {
		return out, fmt.Errorf("%w: %s has guid %d on %s, the asking node's has %d", ErrGUIDMismatch, req.Snapshot, guid, r.Node, req.GUID)
	}
	dir, err := snapshotDir(ctx, r.ZFS, ds, short)
	if err != nil {
		return out, err
	}
	out.Files, err = hashFiles(ctx, dir, req.Paths, req.FileBytes)
	if err != nil {
		return out, err
	}
	if req.MaxCount > 0 {
		w, err := walk(ctx, dir, 0, req.MaxCount)
		if err != nil {
			return out, err
		}
		out.Count, out.CountComplete = w.Count, w.Complete
	}
	return out, nil
}

// DrillInfo returns this node's compatibility facts.
func (r *Responder) DrillInfo(ctx context.Context) (zfsrpc.DrillInfo, error) {
	info := zfsrpc.DrillInfo{Node: r.Node, SharesFingerprint: r.Shares, VIPFingerprint: r.VIP}
	var err error
	if info.ZFSVersion, err = r.System.ZFSVersion(ctx); err != nil {
		return info, err
	}
	seen := map[string]bool{}
	for _, root := range r.Roots {
		pool := poolOf(root)
		if !seen[pool] {
			seen[pool] = true
			f, err := r.System.PoolFeatures(ctx, pool)
			if err != nil {
				return info, err
			}
			info.Pools = append(info.Pools, zfsrpc.DrillPool{Name: pool, Features: f})
		}
		ds, err := r.ZFS.List(ctx, root, false)
		if err != nil {
			return info, fmt.Errorf("space of %s: %w", root, err)
		}
		if len(ds) == 0 {
			return info, fmt.Errorf("space of %s: %w", root, zfsrepl.ErrDatasetNotFound)
		}
		info.Roots = append(info.Roots, zfsrpc.DrillRoot{Name: root, Used: ds[0].Used, Avail: ds[0].Avail})
	}
	return info, nil
}

func poolOf(dataset string) string {
	pool, _, _ := strings.Cut(dataset, "/")
	return pool
}

// snapshotGUID looks the snapshot up among its dataset's versions.
func snapshotGUID(ctx context.Context, z zfsrepl.ZFS, snapshot string) (uint64, error) {
	ds, _, _, _ := zfsrepl.SplitVersion(snapshot)
	vs, err := z.Versions(ctx, ds)
	if err != nil {
		return 0, err
	}
	for _, v := range vs {
		if v.Type == zfsrepl.Snapshot && v.Name == snapshot {
			return v.GUID, nil
		}
	}
	return 0, fmt.Errorf("%w: snapshot %s", zfsrepl.ErrDatasetNotFound, snapshot)
}

// snapshotDir is where a mounted dataset shows its snapshot's files.
func snapshotDir(ctx context.Context, z zfsrepl.ZFS, ds, short string) (string, error) {
	mp, err := z.GetProperty(ctx, ds, "mountpoint")
	if err != nil {
		return "", err
	}
	mounted, err := z.GetProperty(ctx, ds, "mounted")
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(mp) || mounted != "yes" {
		return "", fmt.Errorf("%s is not mounted (mountpoint %s, mounted %s): its snapshots' files cannot be read; mount it (zfs mount %s)", ds, mp, mounted, ds)
	}
	return filepath.Join(mp, ".zfs", "snapshot", short), nil
}
