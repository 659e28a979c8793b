package failover

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/zrepl-ha/zrepl-ha/internal/command"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

// PromotionPlan is exactly what Serve would do to this node's roots now;
// `zrepl-ha promote --dry-run` prints it and Serve carries it out, so the
// two cannot disagree.
type PromotionPlan struct {
	Roots []RootPlan `json:"roots"`
}

// RootPlan is one root's part of a promotion.
type RootPlan struct {
	Root string `json:"root"`
	// Replica: the root is readonly, it received replication, so it is
	// rolled back to its latest consistent snapshot. A writable root has
	// been serving and keeps its data.
	Replica bool `json:"replica"`
	// Snapshot is the latest consistent snapshot (the same name on every
	// dataset); "" when there is none.
	Snapshot  string         `json:"snapshot"`
	Aborts    []AbortPlan    `json:"aborts,omitempty"`
	Rollbacks []RollbackPlan `json:"rollbacks,omitempty"`
	Datasets  int            `json:"datasets"`

	tree []zfsrepl.TreeDataset // the listing the plan read; Serve reuses it
}

// AbortPlan is a partial receive that promotion discards (zfs recv -A).
type AbortPlan struct {
	Dataset string `json:"dataset"`
	Bytes   int64  `json:"bytes"` // space held by the partial state
}

// RollbackPlan is a dataset rolled back to the consistent snapshot.
type RollbackPlan struct {
	Dataset string   `json:"dataset"`
	To      string   `json:"to"`
	Destroy []string `json:"destroy,omitempty"` // later snapshots (rollback -r)
	Bytes   int64    `json:"bytes"`             // written after the snapshot (written@snapshot)
}

// Plan computes the promotion of every root.
func (s *Services) Plan(ctx context.Context) (PromotionPlan, error) {
	var p PromotionPlan
	for _, root := range s.Roots {
		rp, err := s.planRoot(ctx, root)
		if err != nil {
			return p, err
		}
		p.Roots = append(p.Roots, rp)
	}
	return p, nil
}

func (s *Services) planRoot(ctx context.Context, root string) (RootPlan, error) {
	rp := RootPlan{Root: root}
	tree, err := s.ZFS.Tree(ctx, root)
	if err != nil {
		return rp, fmt.Errorf("plan promotion of %s: %w", root, err)
	}
	rp.Datasets = len(tree)
	rp.tree = tree
	for _, d := range tree {
		if d.ResumeToken != "" {
			rp.Aborts = append(rp.Aborts, AbortPlan{Dataset: d.Name, Bytes: s.partialBytes(ctx, d.Name)})
		}
	}
	// A root that received replication is readonly (the receive policy
	// sets it, and a rejoin or handover sets it back); a writable root has
	// been serving, and promotion must not roll back its writes.
	rp.Replica = len(tree) > 0 && tree[0].Name == root && tree[0].ReadOnly
	rp.Snapshot = zfsrepl.LatestConsistent(tree)
	if !rp.Replica {
		return rp, nil
	}
	if rp.Snapshot == "" {
		return rp, fmt.Errorf("%s has no snapshot common to all its datasets: nothing consistent to promote", root)
	}
	for _, d := range tree {
		var later []string
		seen := false
		for _, v := range d.Versions {
			if v.Type == zfsrepl.Bookmark {
				continue
			}
			if seen {
				later = append(later, v.Short())
			}
			if v.Short() == rp.Snapshot {
				seen = true
			}
		}
		if len(later) == 0 && d.Written == 0 {
			continue
		}
		rb := RollbackPlan{Dataset: d.Name, To: rp.Snapshot, Destroy: later,
			Bytes: zfsNumber(ctx, "get", "-H", "-p", "-o", "value", "written@"+rp.Snapshot, d.Name)}
		rp.Rollbacks = append(rp.Rollbacks, rb)
	}
	return rp, nil
}

// partialBytes is the space a partial receive holds (its hidden %recv
// clone); 0 when it cannot be read.
func (s *Services) partialBytes(ctx context.Context, ds string) int64 {
	return zfsNumber(ctx, "list", "-H", "-p", "-o", "used", ds+"/%recv")
}

// zfsNumber runs a zfs query that prints one number; 0 when it fails (the
// sizes are for the admin's information, never for a decision).
func zfsNumber(ctx context.Context, args ...string) int64 {
	var r command.Runner
	out, err := r.Command(ctx, "zfs", args...).Output()
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	return n
}
