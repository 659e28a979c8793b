package drill

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/zrepl-ha/zrepl-ha/internal/config"
	"github.com/zrepl-ha/zrepl-ha/transport/zfsrpc"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

// clonePrefix names the drill's clones, <pool>/zrepl-ha-drill-<time>-<n>:
// directly under the pool, so never inside a replicated root (a receive
// or a prune must not see them), and recognisable as leftovers.
const clonePrefix = "zrepl-ha-drill-"

// root checks one replicated root: its latest consistent snapshot against
// the active's, then the content of each dataset's copy of it.
func (d *run) root(ctx context.Context, root config.Root) {
	name := "snapshot " + root.Source
	local, err := d.o.ZFS.Tree(ctx, root.Source)
	if err != nil {
		d.add(Check{Name: name, Reason: fmt.Sprintf("cannot list the replica %s: %v", root.Source, err)})
		return
	}
	latest := zfsrepl.LatestConsistent(local)
	if latest == "" {
		d.add(Check{Name: name, Reason: fmt.Sprintf("no zrepl-ha snapshot is on every dataset of %s: replication has not completed once; see `zrepl-ha status` on the active", root.Source)})
		return
	}
	peer, err := d.o.Peer.Tree(ctx, root.Target)
	if err != nil {
		d.add(Check{Name: name, Reason: fmt.Sprintf("cannot list the active's %s: %v", root.Target, err)})
		return
	}
	c, guids := compareTrees(root, local, peer, latest, d.o.Now(), d.o.MaxLag)
	d.add(c)
	if !c.OK {
		return // a different or missing snapshot: its content says nothing more
	}
	sampled := 0
	for _, ds := range local {
		if sampled == d.o.MaxDatasets {
			d.add(Check{Name: "content " + root.Source, OK: true, Reason: fmt.Sprintf("%d more datasets compared by guid only (the drill samples %d per root)", len(local)-sampled, d.o.MaxDatasets)})
			break
		}
		sampled++
		d.add(d.content(ctx, ds, latest, guids[ds.Name], peerName(root, ds.Name)))
	}
}

func peerName(root config.Root, local string) string {
	return root.Target + strings.TrimPrefix(local, root.Source)
}

// compareTrees checks that the replica's latest consistent snapshot is the
// active's snapshot of that name on every dataset (same guid), and that
// the active has no snapshot the passive lacks that is older than maxLag.
// It returns the guid of each local dataset's snapshot.
func compareTrees(root config.Root, local, peer []zfsrepl.TreeDataset, latest string, now time.Time, maxLag time.Duration) (Check, map[string]uint64) {
	c := Check{Name: "snapshot " + root.Source}
	byName := map[string]zfsrepl.TreeDataset{}
	for _, p := range peer {
		byName[p.Name] = p
	}
	find := func(vs []zfsrepl.Version, short string) (zfsrepl.Version, bool) {
		for _, v := range vs {
			if v.Type == zfsrepl.Snapshot && v.Short() == short {
				return v, true
			}
		}
		return zfsrepl.Version{}, false
	}
	guids := map[string]uint64{}
	for _, l := range local {
		lv, _ := find(l.Versions, latest) // LatestConsistent: every dataset has it
		pn := peerName(root, l.Name)
		p, ok := byName[pn]
		if !ok {
			c.Reason = fmt.Sprintf("the active has no dataset %s, which the replica has as %s: the trees differ; compare replication.roots on both nodes", pn, l.Name)
			return c, nil
		}
		pv, ok := find(p.Versions, latest)
		if !ok {
			c.Reason = fmt.Sprintf("the replica's latest consistent snapshot %s@%s is gone on the active: its content cannot be verified; let replication catch up (zrepl-ha status on the active)", l.Name, latest)
			return c, nil
		}
		if pv.GUID != lv.GUID {
			c.Reason = fmt.Sprintf("%s@%s is not the active's snapshot of that name (guid %d here, %d on the active): the replica diverged; rejoin it from the active", l.Name, latest, lv.GUID, pv.GUID)
			return c, nil
		}
		guids[l.Name] = lv.GUID
	}
	// Lag: the active's snapshots of the root newer than ours. Recent ones
	// are replication on its way; an old one means replication is stuck,
	// and a failover now would lose everything since our snapshot.
	pr := byName[root.Target]
	base, _ := find(pr.Versions, latest)
	var newer []zfsrepl.Version
	for _, v := range pr.Versions {
		if zfsrepl.IsOwned(v) && v.CreateTXG > base.CreateTXG {
			newer = append(newer, v)
		}
	}
	if len(newer) > 0 {
		oldest := newer[0] // Versions are oldest first
		age := now.Sub(time.Unix(oldest.Creation, 0))
		if age > maxLag {
			c.Reason = fmt.Sprintf("the replica is behind: its latest consistent snapshot is %s, the active has %d newer, the oldest (%s) taken %s ago, over the %s limit: a failover now would lose them; see `zrepl-ha status` on the active",
				latest, len(newer), oldest.Short(), age.Round(time.Second), maxLag)
			return c, nil
		}
	}
	c.OK = true
	c.Reason = fmt.Sprintf("latest consistent snapshot %s is the active's on all %d datasets (same guid)", latest, len(local))
	if len(newer) > 0 {
		c.Reason += fmt.Sprintf("; %d newer on the active, within the %s lag limit", len(newer), maxLag)
	}
	return c, guids
}

// content clones one dataset's snapshot, mounts the clone read-only, and
// compares its file count and a sample's checksums with the active's copy.
func (d *run) content(ctx context.Context, ds zfsrepl.TreeDataset, snap string, guid uint64, peerDS string) Check {
	c := Check{Name: "content " + ds.Name + "@" + snap}
	if ds.Type != zfsrepl.Filesystem {
		c.OK, c.Reason = true, fmt.Sprintf("a %s has no files to sample; compared by guid", ds.Type)
		return c
	}
	if ds.Encrypted {
		ks, err := d.o.ZFS.GetProperty(ctx, ds.Name, "keystatus")
		if err == nil && ks != "available" {
			c.OK, c.Reason = true, "encrypted and its key is not loaded on the passive: compared by guid only; promotion needs the key (zfs load-key)"
			return c
		}
	}
	d.clones++
	clone := fmt.Sprintf("%s/%s%s-%d", poolOf(ds.Name), clonePrefix, d.stamp, d.clones)
	mp := filepath.Join(d.o.MountDir, filepath.Base(clone))
	defer d.destroy(ctx, clone, mp)
	err := d.o.ZFS.Clone(ctx, ds.Name+"@"+snap, clone, map[string]string{"readonly": "on", "mountpoint": mp, "canmount": "on"})
	if err != nil {
		c.Reason = fmt.Sprintf("cannot clone %s@%s to %s: %v", ds.Name, snap, clone, err)
		return c
	}
	if m, err := d.o.ZFS.GetProperty(ctx, clone, "mounted"); err != nil || m != "yes" {
		c.Reason = fmt.Sprintf("the clone %s of %s@%s did not mount at %s (mounted=%s, %v): a promotion would not mount it either", clone, ds.Name, snap, mp, m, err)
		return c
	}
	// Where it is mounted, as zfs says: a pool imported with an altroot
	// puts it below that root, not at mp.
	dir, err := d.o.ZFS.GetProperty(ctx, clone, "mountpoint")
	if err != nil || !filepath.IsAbs(dir) {
		c.Reason = fmt.Sprintf("the clone %s has no usable mountpoint (%q, %v)", clone, dir, err)
		return c
	}
	so := d.o.Sample
	w, err := walk(ctx, dir, so.Files, so.MaxCount)
	if err != nil {
		c.Reason = fmt.Sprintf("cannot read the clone of %s@%s: %v", ds.Name, snap, err)
		return c
	}
	local, err := hashFiles(ctx, dir, w.Sample, so.FileBytes)
	if err != nil {
		c.Reason = fmt.Sprintf("cannot read the clone of %s@%s: %v", ds.Name, snap, err)
		return c
	}
	resp, err := d.o.Peer.DrillSample(ctx, zfsrpc.DrillSampleRequest{Snapshot: peerDS + "@" + snap, GUID: guid, Paths: w.Sample, FileBytes: so.FileBytes, MaxCount: so.MaxCount})
	if err != nil {
		c.Reason = fmt.Sprintf("the active could not sample %s@%s: %v", peerDS, snap, err)
		return c
	}
	return compareSample(c, w, local, resp, so.FileBytes)
}

// compareSample judges the passive's walk and hashes against the active's.
func compareSample(c Check, w walkResult, local []zfsrpc.DrillFile, peer zfsrpc.DrillSampleResponse, fileBytes int64) Check {
	if w.Complete && peer.CountComplete && w.Count != peer.Count {
		c.Reason = fmt.Sprintf("the clone has %d files, the active's snapshot %d: the replica's content differs; rejoin it from the active", w.Count, peer.Count)
		return c
	}
	for i, l := range local {
		p := peer.Files[i]
		switch {
		case l.Error != "":
			c.Reason = fmt.Sprintf("cannot read %s in the clone: %s (a damaged replica? run zpool status -v and a scrub)", l.Path, l.Error)
		case p.Error != "":
			c.Reason = fmt.Sprintf("the active cannot read %s in its snapshot: %s", l.Path, p.Error)
		case l.Size != p.Size:
			c.Reason = fmt.Sprintf("%s is %d bytes in the clone, %d on the active: the replica's content differs; rejoin it from the active", l.Path, l.Size, p.Size)
		case l.SHA256 != p.SHA256:
			c.Reason = fmt.Sprintf("%s has sha256 %.16s… in the clone, %.16s… on the active: the replica's content differs; rejoin it from the active", l.Path, l.SHA256, p.SHA256)
		default:
			continue
		}
		return c
	}
	c.OK = true
	count := fmt.Sprintf("%d files", w.Count)
	if !w.Complete || !peer.CountComplete {
		count = fmt.Sprintf("at least %d files (counting stops there)", w.Count)
	}
	c.Reason = fmt.Sprintf("%s as on the active; %d sampled (up to %s each), checksums match", count, len(local), bytesH(uint64(fileBytes)))
	return c
}

// destroy removes a clone and its mountpoint, bounded, and even when the
// drill's ctx has ended: a leftover clone pins its origin snapshot, which
// the replica's pruning then cannot destroy. A failure is a check of its
// own, so it is never silent.
func (d *run) destroy(ctx context.Context, clone, mp string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.o.CleanupTimeout)
	defer cancel()
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		err = d.o.ZFS.Destroy(ctx, clone, zfsrepl.DestroyFlags{})
		if err == nil || errors.Is(err, zfsrepl.ErrDatasetNotFound) {
			err = nil
			break
		}
		// Busy right after the walk: an unmount can race the last close.
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
		if ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		d.add(Check{Name: "cleanup " + clone, Reason: fmt.Sprintf("cannot destroy the drill's clone: %v; destroy it by hand (zfs destroy %s): it pins its origin snapshot", err, clone)})
		return
	}
	if rerr := os.Remove(mp); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		d.o.Log.Warn("drill: mountpoint left behind", "dir", mp, "err", rerr)
	}
}

// removeStale destroys clones an earlier drill left behind (a crash, a
// power cut): they pin replica snapshots. The lock guarantees no other
// drill is running, so every zrepl-ha-drill-* dataset is a leftover.
func (d *run) removeStale(ctx context.Context) {
	seen := map[string]bool{}
	for _, root := range d.o.Roots {
		pool := poolOf(root.Source)
		if seen[pool] {
			continue
		}
		seen[pool] = true
		all, err := d.o.ZFS.List(ctx, pool, true)
		if err != nil {
			d.o.Log.Warn("drill: cannot look for leftover clones", "pool", pool, "err", err)
			continue
		}
		for _, ds := range all {
			rest, ok := strings.CutPrefix(ds.Name, pool+"/"+clonePrefix)
			if !ok || strings.Contains(rest, "/") {
				continue
			}
			d.o.Log.Warn("drill: destroying a clone left by an earlier drill", "clone", ds.Name)
			d.destroy(ctx, ds.Name, filepath.Join(d.o.MountDir, filepath.Base(ds.Name)))
		}
	}
}
