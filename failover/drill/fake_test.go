package drill

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/zrepl-ha/zrepl-ha/transport/zfsrpc"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

// fakeZFS is the passive's ZFS: trees by root, and clones that are
// directories copied from files[snapshot]. Methods the drill must not call
// are the nil embedded interface's: calling one panics.
type fakeZFS struct {
	zfsrepl.ZFS
	mu          sync.Mutex
	trees       map[string][]zfsrepl.TreeDataset
	files       map[string]map[string]string // snapshot -> relative path -> content
	mountDir    string
	cloneErrFor string            // the snapshot whose clone does not mount
	clones      map[string]string // clone -> mountpoint
	destroyed   []string
	extra       []string // other datasets List reports (leftovers)
	unmounted   []string
}

func (f *fakeZFS) Tree(ctx context.Context, root string) ([]zfsrepl.TreeDataset, error) {
	t, ok := f.trees[root]
	if !ok {
		return nil, fmt.Errorf("%w: %s", zfsrepl.ErrDatasetNotFound, root)
	}
	return t, nil
}

func (f *fakeZFS) Clone(ctx context.Context, snapshot, target string, props map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if props["readonly"] != "on" {
		return fmt.Errorf("clone %s not readonly", target)
	}
	if f.clones == nil {
		f.clones = map[string]string{}
	}
	f.clones[target] = props["mountpoint"]
	if snapshot == f.cloneErrFor {
		f.unmounted = append(f.unmounted, target)
		return errMount // like zfs: created, but not mounted
	}
	for p, content := range f.files[snapshot] {
		full := filepath.Join(props["mountpoint"], filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeZFS) GetProperty(ctx context.Context, name, prop string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	mp, ok := f.clones[name]
	switch {
	case !ok:
		return "", fmt.Errorf("%w: %s", zfsrepl.ErrDatasetNotFound, name)
	case prop == "mountpoint":
		return mp, nil
	case prop == "mounted" && !slices.Contains(f.unmounted, name):
		return "yes", nil
	}
	return "no", nil
}

func (f *fakeZFS) Destroy(ctx context.Context, name string, flags zfsrepl.DestroyFlags) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.destroyed = append(f.destroyed, name)
	if mp, ok := f.clones[name]; ok {
		os.RemoveAll(mp)
		delete(f.clones, name)
	}
	return nil
}

func (f *fakeZFS) List(ctx context.Context, root string, recursive bool) ([]zfsrepl.Dataset, error) {
	var out []zfsrepl.Dataset
	for _, n := range f.extra {
		if strings.HasPrefix(n, root+"/") {
			out = append(out, zfsrepl.Dataset{Name: n, Type: zfsrepl.Filesystem})
		}
	}
	return out, nil
}

// fakePeer is the active: its tree, its snapshot files, its facts.
type fakePeer struct {
	trees map[string][]zfsrepl.TreeDataset
	files map[string]map[string]string
	guids map[string]uint64
	info  zfsrpc.DrillInfo
	reqs  []zfsrpc.DrillSampleRequest
}

func (p *fakePeer) Tree(ctx context.Context, root string) ([]zfsrepl.TreeDataset, error) {
	return p.trees[root], nil
}

func (p *fakePeer) DrillSample(ctx context.Context, req zfsrpc.DrillSampleRequest) (zfsrpc.DrillSampleResponse, error) {
	p.reqs = append(p.reqs, req)
	if err := zfsrpc.CheckDrillSample(req); err != nil {
		return zfsrpc.DrillSampleResponse{}, err
	}
	if g := p.guids[req.Snapshot]; g != req.GUID {
		return zfsrpc.DrillSampleResponse{}, fmt.Errorf("%w: %d", ErrGUIDMismatch, g)
	}
	out := zfsrpc.DrillSampleResponse{GUID: req.GUID, Count: len(p.files[req.Snapshot]), CountComplete: true}
	for _, path := range req.Paths {
		content, ok := p.files[req.Snapshot][path]
		if !ok {
			out.Files = append(out.Files, zfsrpc.DrillFile{Path: path, Error: "no such file"})
			continue
		}
		out.Files = append(out.Files, zfsrpc.DrillFile{Path: path, Size: int64(len(content)), SHA256: sha(content, req.FileBytes)})
	}
	return out, nil
}

func (p *fakePeer) DrillInfo(ctx context.Context) (zfsrpc.DrillInfo, error) { return p.info, nil }

type fakeInfo zfsrpc.DrillInfo

func (f fakeInfo) DrillInfo(ctx context.Context) (zfsrpc.DrillInfo, error) {
	return zfsrpc.DrillInfo(f), nil
}
