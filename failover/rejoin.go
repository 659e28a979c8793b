package failover

// Rejoin after a failover: the returning node keeps whatever it wrote after
// the newest snapshot it shares with the new active as a rescue, and puts
// the shared state back in place so the new active's incrementals land
// without a full resend. See docs/failover.md, "Rejoin and rescue".

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/zrepl-ha/zrepl-ha/internal/command"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

// RescueContainer is the dataset, directly below a pool's root, that holds
// the rescues of that pool's roots. It is created with canmount=off.
const RescueContainer = "zrepl-ha-rescue"

// rescueSnapPrefix starts the short name of a rescue snapshot:
// zrepl-ha_rescue_<epoch>_<YYYYMMDDTHHMMSSZ>. It does not match the
// replication snapshots' pattern, so pruning never touches it.
const rescueSnapPrefix = "zrepl-ha_rescue_"

const rescueTimeLayout = "20060102T150405Z"

// ErrNoCommonSnapshot: a dataset shares no snapshot or bookmark (by guid)
// with its counterpart on the peer. Only a full resend, which replaces this
// node's copy, can bring it back; that is the admin's decision.
var ErrNoCommonSnapshot = errors.New("no snapshot in common with the peer")

// RejoinResult is what Rejoin found and did for one root.
type RejoinResult struct {
	Root string
	// Diverged: some dataset had snapshots after its common base, or writes
	// after its newest snapshot, or exists only on this node.
	Diverged bool
	// Rescue is the dataset that now holds the root as it was (with its
	// children), "" when nothing diverged.
	Rescue string
	// RescueSnapshot is the short name of the snapshot taken of the whole
	// root before it moved (zrepl-ha_rescue_<epoch>_<ts>).
	RescueSnapshot string
	// Resumed: a rescue interrupted by a crash was completed.
	Resumed  bool
	Datasets []RejoinDataset // parents first
}

// RejoinDataset is one dataset of the root.
type RejoinDataset struct {
	Name string // this node's dataset (under the root)
	// Base is the short name of the newest snapshot shared with the peer
	// (compared by guid), "" for a dataset the peer does not have.
	Base     string
	BaseGUID uint64
	Diverged bool
	// Later are the snapshots taken here after Base (short names), not
	// counting the rescue snapshot.
	Later   []string
	Written uint64 // bytes written after the newest snapshot, when checked
	// OnlyLocal: the peer has no such dataset. It stays in the rescue only;
	// there is nothing to receive into it.
	OnlyLocal bool
	// Rescue is where this dataset's state before the rejoin is kept, ""
	// when no rescue was made.
	Rescue string
}

// renamer is implemented by a ZFS that can rename datasets itself (the
// fakes of the tests). zfsrepl.ZFS has no Rename yet; without it Rejoin runs
// `zfs rename` through internal/command.
type renamer interface {
	Rename(ctx context.Context, from, to string) error
}

// Rejoin makes root, on the node that comes back after a failover, a replica
// of the new active's peerRoot again, keeping anything only this node has.
//
// peer is the new active's tree of peerRoot; datasets are matched by their
// path relative to the roots, snapshots by guid. For each dataset the common
// base is the newest local snapshot whose guid is among the peer's
// snapshots and bookmarks. A dataset the peer has but shares nothing with is
// an error wrapping ErrNoCommonSnapshot, and nothing is changed.
//
// If nothing diverged, every dataset is set readonly=on and that is all.
// Otherwise the whole root is rescued without copying data: a recursive
// snapshot, a rename to <pool>/zrepl-ha-rescue/<root_with_underscores>_<epoch>_<ts>,
// then per dataset, parents first, a clone of the rescue at the common base
// back under the original name, promoted so it owns the snapshots up to the
// base (same guids: replication finds its base), readonly=on. Every step is
// detectably done, so running Rejoin again after a crash completes it.
func Rejoin(ctx context.Context, z zfsrepl.ZFS, root string, peer []zfsrepl.TreeDataset, peerRoot string, epoch uint64, now time.Time, log *slog.Logger) (RejoinResult, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	res := RejoinResult{Root: root}
	if err := zfsrepl.ValidateDataset(root); err != nil {
		return res, err
	}
	peerGUIDs := map[string]map[uint64]bool{}
	for _, d := range peer {
		rel, ok := relName(peerRoot, d.Name)
		if !ok {
			continue
		}
		g := map[uint64]bool{}
		for _, v := range d.Versions {
			g[v.GUID] = true
		}
		peerGUIDs[rel] = g
	}
	if len(peerGUIDs) == 0 {
		return res, fmt.Errorf("rejoining %s: the peer's tree of %s is empty: nothing to rejoin to; check replication.roots: %w", root, peerRoot, ErrNoCommonSnapshot)
	}
	pool, _, _ := strings.Cut(root, "/")
	container := pool + "/" + RescueContainer

	// A rescue of this root at this epoch that a crash interrupted?
	rescue, err := unfinishedRescue(ctx, z, root, container, epoch, peerGUIDs)
	if err != nil {
		return res, err
	}
	if rescue != "" {
		res.Resumed = true
		log.Warn("completing an interrupted rescue", "root", root, "rescue", rescue)
		return finishRescue(ctx, z, root, rescue, peerGUIDs, nil, res, log)
	}

	tree, err := z.Tree(ctx, root)
	if errors.Is(err, zfsrepl.ErrDatasetNotFound) {
		// A new passive that never received the root has nothing to
		// rescue: the peer's first replication creates it.
		log.Info("rejoin: the root does not exist here yet; nothing to rescue", "root", root)
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("rejoining %s: listing it: %w", root, err)
	}
	plan, err := planRejoin(root, tree, peerGUIDs)
	if err != nil {
		return res, err
	}
	res.Datasets, res.Diverged = plan, false
	for _, d := range plan {
		res.Diverged = res.Diverged || d.Diverged
	}
	if !res.Diverged {
		for _, d := range tree {
			if err := z.SetProperty(ctx, d.Name, "readonly", "on"); err != nil {
				return res, fmt.Errorf("rejoining %s: making %s a replica (readonly=on): %w", root, d.Name, err)
			}
		}
		return res, nil
	}

	// Diverged: check the plan can work before changing anything.
	if !strings.Contains(root, "/") {
		return res, fmt.Errorf("rejoining %s: it diverged, and a pool's root dataset cannot be renamed into a rescue; keep its writes by hand (zfs snapshot, then a full resend from the peer)", root)
	}
	if root == container || strings.HasPrefix(root, container+"/") {
		return res, fmt.Errorf("rejoining %s: it is inside the rescue area %s; replicate another root", root, container)
	}
	if tree[0].Encrypted {
		er, err := z.GetProperty(ctx, root, "encryptionroot")
		if err != nil {
			return res, fmt.Errorf("rejoining %s: reading its encryptionroot: %w", root, err)
		}
		if er != root {
			return res, fmt.Errorf("rejoining %s: it diverged, and it inherits its key from %s, so ZFS will not rename it out of there; rescue it by hand (zfs snapshot -r, zfs clone of the common snapshots): nothing was changed", root, er)
		}
	}
	snap := rescueSnapPrefix + strconv.FormatUint(epoch, 10) + "_" + now.UTC().Format(rescueTimeLayout)
	if s := existingRescueSnapshot(tree[0].Versions, epoch); s != "" {
		snap = s // taken by a run that crashed before the rename
	}
	ts := strings.TrimPrefix(snap, rescueSnapPrefix+strconv.FormatUint(epoch, 10)+"_")
	rescue = container + "/" + strings.ReplaceAll(root, "/", "_") + "_" + strconv.FormatUint(epoch, 10) + "_" + ts
	if err := mustNotExist(ctx, z, rescue); err != nil {
		return res, fmt.Errorf("rejoining %s: the rescue name %s: %w", root, rescue, err)
	}
	cType, err := z.GetProperty(ctx, container, "type")
	switch {
	case errors.Is(err, zfsrepl.ErrDatasetNotFound):
		cType = ""
	case err != nil:
		return res, fmt.Errorf("rejoining %s: looking for %s: %w", root, container, err)
	case cType != string(zfsrepl.Filesystem):
		return res, fmt.Errorf("rejoining %s: %s is a %s, not a filesystem; rename it out of the way", root, container, cType)
	}

	// (a) one atomic cut of the whole root as it is now.
	if !hasVersion(tree[0].Versions, snap) {
		if err := z.Snapshot(ctx, root, snap, true); err != nil {
			return res, fmt.Errorf("rejoining %s: taking the rescue snapshot %s: %w", root, snap, err)
		}
	}
	// (b) move the root, children and all, into the rescue area.
	if cType == "" {
		if err := z.Create(ctx, container, map[string]string{"canmount": "off"}); err != nil && !errors.Is(err, zfsrepl.ErrExists) {
			return res, fmt.Errorf("rejoining %s: creating %s: %w", root, container, err)
		}
	}
	if err := rename(ctx, z, root, rescue); err != nil {
		return res, fmt.Errorf("rejoining %s: moving it to %s (if it is busy, stop what uses it and run again): %w", root, rescue, err)
	}
	return finishRescue(ctx, z, root, rescue, peerGUIDs, plan, res, log)
}

// planRejoin finds each dataset's common base and whether it diverged. It is
// pure.
func planRejoin(root string, tree []zfsrepl.TreeDataset, peerGUIDs map[string]map[uint64]bool) ([]RejoinDataset, error) {
	var out []RejoinDataset
	var missing []string
	for _, d := range tree {
		rel, _ := relName(root, d.Name)
		rd := RejoinDataset{Name: d.Name, Written: d.Written}
		g, ok := peerGUIDs[rel]
		if !ok {
			rd.OnlyLocal, rd.Diverged = true, true
			out = append(out, rd)
			continue
		}
		base, i := commonBase(d.Versions, g)
		if i < 0 {
			missing = append(missing, d.Name)
			continue
		}
		rd.Base, rd.BaseGUID = base.Short(), base.GUID
		for _, v := range d.Versions[i+1:] {
			if v.Type == zfsrepl.Snapshot {
				rd.Later = append(rd.Later, v.Short())
			}
		}
		rd.Diverged = len(rd.Later) > 0 || d.Written > 0
		out = append(out, rd)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("rejoining %s: %s: %w (compared by guid, snapshots and bookmarks); only a full resend from the peer, which replaces this node's copy, can fix it: that is the admin's decision; nothing was changed",
			root, strings.Join(missing, ", "), ErrNoCommonSnapshot)
	}
	return out, nil
}

// commonBase is the newest snapshot of versions (oldest first) whose guid
// the peer has; i is its index, -1 when there is none.
func commonBase(versions []zfsrepl.Version, peer map[uint64]bool) (zfsrepl.Version, int) {
	for i := len(versions) - 1; i >= 0; i-- {
		if v := versions[i]; v.Type == zfsrepl.Snapshot && peer[v.GUID] {
			return v, i
		}
	}
	return zfsrepl.Version{}, -1
}

// finishRescue is step (c) onwards: rescue holds the root as it was; each
// dataset comes back under its name as a promoted clone of its common base.
// Each dataset's state says what is left to do: missing (clone, promote), a
// clone of the rescue (promote), or promoted already (the rescue is now its
// clone). prior is the plan of the run that moved the root (nil when
// completing a crashed run: then every dataset is reported as diverged,
// since writes after the base are no longer visible in written).
func finishRescue(ctx context.Context, z zfsrepl.ZFS, root, rescue string, peerGUIDs map[string]map[uint64]bool, prior []RejoinDataset, res RejoinResult, log *slog.Logger) (RejoinResult, error) {
	rtree, err := z.Tree(ctx, rescue)
	if err != nil {
		return res, fmt.Errorf("rejoining %s: listing the rescue %s: %w", root, rescue, err)
	}
	ltree, err := z.Tree(ctx, root)
	if err != nil && !errors.Is(err, zfsrepl.ErrDatasetNotFound) {
		return res, fmt.Errorf("rejoining %s: listing it: %w", root, err)
	}
	local := map[string]zfsrepl.TreeDataset{}
	for _, d := range ltree {
		local[d.Name] = d
	}
	before := map[string]RejoinDataset{}
	for _, d := range prior {
		before[d.Name] = d
	}
	res.Rescue, res.Diverged, res.Datasets = rescue, true, nil
	if len(rtree) > 0 {
		res.RescueSnapshot = newestRescueSnapshot(rtree[0].Versions)
	}

	// Plan every dataset before acting: a dataset that shares nothing with
	// the peer stops everything here, before any clone.
	type job struct {
		rd     RejoinDataset
		src    string // its rescue dataset
		exists bool   // already back under root (a clone, maybe promoted)
	}
	var jobs []job
	var missing []string
	for _, d := range rtree {
		rel, _ := relName(rescue, d.Name)
		target := root + rel
		rd := RejoinDataset{Name: target, Rescue: d.Name, Diverged: true}
		if p, ok := before[target]; ok {
			rd.Diverged, rd.Written, rd.Later = p.Diverged, p.Written, p.Later
		}
		g, ok := peerGUIDs[rel]
		if !ok {
			rd.OnlyLocal, rd.Diverged = true, true
			jobs = append(jobs, job{rd: rd, src: d.Name})
			continue
		}
		// Before the promotion the base is on the rescue, after it on the
		// clone (the rescue keeps only what came after it).
		base, i := commonBase(d.Versions, g)
		l, exists := local[target]
		if i < 0 {
			if base, i = commonBase(l.Versions, g); i < 0 {
				missing = append(missing, d.Name)
				continue
			}
		}
		rd.Base, rd.BaseGUID = base.Short(), base.GUID
		if _, ok := before[target]; !ok {
			for _, v := range d.Versions {
				if v.Type == zfsrepl.Snapshot && v.CreateTXG > base.CreateTXG && !strings.HasPrefix(v.Short(), rescueSnapPrefix) {
					rd.Later = append(rd.Later, v.Short())
				}
			}
		}
		jobs = append(jobs, job{rd: rd, src: d.Name, exists: exists})
	}
	if len(missing) > 0 {
		return res, fmt.Errorf("rejoining %s from the rescue %s: %s: %w; the rescue stays as it is; only a full resend from the peer can bring these back",
			root, rescue, strings.Join(missing, ", "), ErrNoCommonSnapshot)
	}

	for _, j := range jobs {
		rd := j.rd
		if rd.OnlyLocal {
			res.Datasets = append(res.Datasets, rd)
			continue // kept in the rescue only: the peer has nothing to send into it
		}
		origin := j.src + "@" + rd.Base
		if !j.exists {
			if err := z.Clone(ctx, origin, rd.Name, map[string]string{"readonly": "on"}); err != nil {
				return res, fmt.Errorf("rejoining %s: cloning %s back to %s (run again to continue; the rescue %s holds everything): %w", root, origin, rd.Name, rescue, err)
			}
			if err := z.Promote(ctx, rd.Name); err != nil {
				return res, fmt.Errorf("rejoining %s: promoting %s (run again to continue; the rescue %s holds everything): %w", root, rd.Name, rescue, err)
			}
		} else {
			o, err := z.GetProperty(ctx, rd.Name, "origin")
			if err != nil {
				return res, fmt.Errorf("rejoining %s: reading the origin of %s: %w", root, rd.Name, err)
			}
			if o == origin {
				if err := z.Promote(ctx, rd.Name); err != nil {
					return res, fmt.Errorf("rejoining %s: promoting %s (run again to continue; the rescue %s holds everything): %w", root, rd.Name, rescue, err)
				}
			} else if ro, err := z.GetProperty(ctx, j.src, "origin"); err != nil {
				return res, fmt.Errorf("rejoining %s: reading the origin of %s: %w", root, j.src, err)
			} else if !strings.HasPrefix(ro, rd.Name+"@") {
				return res, fmt.Errorf("rejoining %s: %s exists but is neither a clone of %s nor its promoted clone (origin %q); move it out of the way and run again", root, rd.Name, origin, o)
			}
		}
		// (d) a replica again; a no-op on a fresh clone.
		if err := z.SetProperty(ctx, rd.Name, "readonly", "on"); err != nil {
			return res, fmt.Errorf("rejoining %s: making %s a replica (readonly=on): %w", root, rd.Name, err)
		}
		res.Datasets = append(res.Datasets, rd)
	}

	// (e) say loudly what was kept and where.
	for _, rd := range res.Datasets {
		if rd.Diverged {
			log.Warn("rejoin: this node's state after the common snapshot is kept in a rescue",
				"dataset", rd.Name, "common_snapshot", rd.Base, "rescue", rd.Rescue,
				"rescue_snapshot", res.RescueSnapshot, "later_snapshots", rd.Later,
				"written_after_newest_snapshot", rd.Written, "only_here", rd.OnlyLocal)
		}
	}
	log.Warn("rejoin: root rescued; it continues from the common snapshots and the rescue keeps everything after them",
		"root", root, "rescue", rescue, "rescue_snapshot", res.RescueSnapshot, "see", "zfs list -r -t all "+rescue)
	return res, nil
}

// unfinishedRescue finds a rescue of root at epoch that a crash
// interrupted: one of its datasets that the peer also has is not yet back
// under root as a promoted clone (the rescue being a clone of it).
func unfinishedRescue(ctx context.Context, z zfsrepl.ZFS, root, container string, epoch uint64, peerGUIDs map[string]map[uint64]bool) (string, error) {
	ds, err := z.List(ctx, container, true)
	if errors.Is(err, zfsrepl.ErrDatasetNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("rejoining %s: listing the rescues in %s: %w", root, container, err)
	}
	re := regexp.MustCompile("^" + regexp.QuoteMeta(container+"/"+strings.ReplaceAll(root, "/", "_")+"_"+strconv.FormatUint(epoch, 10)+"_") + `\d{8}T\d{6}Z$`)
	var cands []string
	for _, d := range ds {
		if re.MatchString(d.Name) {
			cands = append(cands, d.Name)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(cands))) // newest first
	for _, r := range cands {
		for _, d := range ds {
			rel, ok := relName(r, d.Name)
			if !ok || peerGUIDs[rel] == nil {
				continue // only this node had it: it stays in the rescue
			}
			o, err := z.GetProperty(ctx, d.Name, "origin")
			if err != nil {
				return "", fmt.Errorf("rejoining %s: reading the origin of the rescue %s: %w", root, d.Name, err)
			}
			if !strings.HasPrefix(o, root+rel+"@") {
				return r, nil
			}
		}
	}
	return "", nil
}

// Rescues lists the rescue datasets of the given pools (the direct children
// of <pool>/zrepl-ha-rescue), for `zrepl-ha status`.
func Rescues(ctx context.Context, z zfsrepl.ZFS, pools []string) ([]string, error) {
	var out []string
	for _, p := range pools {
		container := p + "/" + RescueContainer
		ds, err := z.List(ctx, container, true)
		if errors.Is(err, zfsrepl.ErrDatasetNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing the rescues in %s: %w", container, err)
		}
		for _, d := range ds {
			if rel, ok := relName(container, d.Name); ok && rel != "" && !strings.Contains(rel[1:], "/") {
				out = append(out, d.Name)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// relName is name's path relative to root: "" for root itself, "/c" for a
// child.
func relName(root, name string) (string, bool) {
	if name == root {
		return "", true
	}
	if strings.HasPrefix(name, root+"/") {
		return name[len(root):], true
	}
	return "", false
}

func hasVersion(vs []zfsrepl.Version, short string) bool {
	for _, v := range vs {
		if v.Type == zfsrepl.Snapshot && v.Short() == short {
			return true
		}
	}
	return false
}

// existingRescueSnapshot is the newest rescue snapshot of this epoch among
// vs, "" if none.
func existingRescueSnapshot(vs []zfsrepl.Version, epoch uint64) string {
	p := rescueSnapPrefix + strconv.FormatUint(epoch, 10) + "_"
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i].Type == zfsrepl.Snapshot && strings.HasPrefix(vs[i].Short(), p) {
			return vs[i].Short()
		}
	}
	return ""
}

func newestRescueSnapshot(vs []zfsrepl.Version) string {
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i].Type == zfsrepl.Snapshot && strings.HasPrefix(vs[i].Short(), rescueSnapPrefix) {
			return vs[i].Short()
		}
	}
	return ""
}

func mustNotExist(ctx context.Context, z zfsrepl.ZFS, name string) error {
	_, err := z.GetProperty(ctx, name, "type")
	switch {
	case err == nil:
		return fmt.Errorf("%s already exists; rename it out of the way: %w", name, zfsrepl.ErrExists)
	case errors.Is(err, zfsrepl.ErrDatasetNotFound):
		return nil
	default:
		return err
	}
}

// rename renames a dataset with its children (zfs rename).
func rename(ctx context.Context, z zfsrepl.ZFS, from, to string) error {
	if r, ok := z.(renamer); ok {
		return r.Rename(ctx, from, to)
	}
	if err := zfsrepl.ValidateDataset(from); err != nil {
		return err
	}
	if err := zfsrepl.ValidateDataset(to); err != nil {
		return err
	}
	bin, runner := "zfs", &command.Runner{}
	if e, ok := z.(*zfsrepl.Exec); ok {
		bin, runner = e.Bin.ZFS, e.Runner
	}
	_, err := runner.Command(ctx, bin, "rename", from, to).Output()
	return err
}
