package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

// rejoinFake models just enough of ZFS for Rejoin: datasets with versions,
// written, properties and origins; snapshot -r, rename (with children),
// clone and promote (snapshots up to the origin move to the clone).
// Methods Rejoin does not call panic through the nil embedded interface.
type rejoinFake struct {
	zfsrepl.ZFS
	ds    map[string]*fakeDS
	txg   uint64
	guid  uint64
	calls []string
	// failAt makes the call whose description starts with it fail once.
	failAt string
}

type fakeDS struct {
	versions []zfsrepl.Version
	written  uint64
	props    map[string]string
	origin   string
}

var errRejoinInjected = errors.New("injected failure")

func newRejoinFake() *rejoinFake { return &rejoinFake{ds: map[string]*fakeDS{}, guid: 1000} }

func (f *rejoinFake) call(s string) error {
	f.calls = append(f.calls, s)
	if f.failAt != "" && strings.HasPrefix(s, f.failAt) {
		f.failAt = ""
		return errRejoinInjected
	}
	return nil
}

func fakeNotFound(name string) error {
	return &zfsrepl.Error{Cmd: "zfs", Stderr: "cannot open '" + name + "': dataset does not exist", Kind: zfsrepl.ErrDatasetNotFound}
}

func (f *rejoinFake) create(name string) {
	f.ds[name] = &fakeDS{props: map[string]string{}}
}

// snap adds a snapshot with a fresh guid (or the given one) to ds.
func (f *rejoinFake) snap(ds, short string, guid uint64) {
	f.txg++
	if guid == 0 {
		f.guid++
		guid = f.guid
	}
	d := f.ds[ds]
	d.versions = append(d.versions, zfsrepl.Version{Name: ds + "@" + short, Type: zfsrepl.Snapshot, GUID: guid, CreateTXG: f.txg})
	d.written = 0
}

func (f *rejoinFake) names(root string) []string {
	var out []string
	for n := range f.ds {
		if n == root || strings.HasPrefix(n, root+"/") {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

func (f *rejoinFake) Tree(ctx context.Context, root string) ([]zfsrepl.TreeDataset, error) {
	if f.ds[root] == nil {
		return nil, fakeNotFound(root)
	}
	var out []zfsrepl.TreeDataset
	for _, n := range f.names(root) {
		d := f.ds[n]
		out = append(out, zfsrepl.TreeDataset{Name: n, Type: zfsrepl.Filesystem, Written: d.written, Versions: slices.Clone(d.versions)})
	}
	return out, nil
}

func (f *rejoinFake) List(ctx context.Context, root string, recursive bool) ([]zfsrepl.Dataset, error) {
	if f.ds[root] == nil {
		return nil, fakeNotFound(root)
	}
	var out []zfsrepl.Dataset
	for _, n := range f.names(root) {
		out = append(out, zfsrepl.Dataset{Name: n, Type: zfsrepl.Filesystem})
	}
	return out, nil
}

func (f *rejoinFake) Versions(ctx context.Context, ds string) ([]zfsrepl.Version, error) {
	if f.ds[ds] == nil {
		return nil, fakeNotFound(ds)
	}
	return slices.Clone(f.ds[ds].versions), nil
}

func (f *rejoinFake) GetProperty(ctx context.Context, name, prop string) (string, error) {
	d := f.ds[name]
	if d == nil {
		return "", fakeNotFound(name)
	}
	switch prop {
	case "type":
		return "filesystem", nil
	case "origin":
		if d.origin == "" {
			return "-", nil
		}
		return d.origin, nil
	}
	if v, ok := d.props[prop]; ok {
		return v, nil
	}
	return "-", nil
}

func (f *rejoinFake) SetProperty(ctx context.Context, name, prop, value string) error {
	if err := f.call("set " + prop + "=" + value + " " + name); err != nil {
		return err
	}
	if f.ds[name] == nil {
		return fakeNotFound(name)
	}
	f.ds[name].props[prop] = value
	return nil
}

func (f *rejoinFake) Create(ctx context.Context, name string, props map[string]string) error {
	if err := f.call("create " + name); err != nil {
		return err
	}
	f.create(name)
	for k, v := range props {
		f.ds[name].props[k] = v
	}
	return nil
}

func (f *rejoinFake) Snapshot(ctx context.Context, root, short string, recursive bool) error {
	if err := f.call("snapshot -r " + root + "@" + short); err != nil {
		return err
	}
	for _, n := range f.names(root) {
		f.snap(n, short, 0)
	}
	return nil
}

func (f *rejoinFake) Rename(ctx context.Context, from, to string) error {
	if err := f.call("rename " + from + " " + to); err != nil {
		return err
	}
	if f.ds[to] != nil {
		return fmt.Errorf("%s: %w", to, zfsrepl.ErrExists)
	}
	for _, n := range f.names(from) {
		nn := to + strings.TrimPrefix(n, from)
		d := f.ds[n]
		for i := range d.versions {
			_, sep, short, _ := zfsrepl.SplitVersion(d.versions[i].Name)
			d.versions[i].Name = nn + string(sep) + short
		}
		f.ds[nn] = d
		delete(f.ds, n)
		// origins pointing into the renamed tree follow it
		for _, o := range f.ds {
			if ds, _, short, ok := zfsrepl.SplitVersion(o.origin); ok && ds == n {
				o.origin = nn + "@" + short
			}
		}
	}
	return nil
}

func (f *rejoinFake) Clone(ctx context.Context, snapshot, target string, props map[string]string) error {
	if err := f.call("clone " + snapshot + " " + target); err != nil {
		return err
	}
	ds, _, _, _ := zfsrepl.SplitVersion(snapshot)
	if f.ds[ds] == nil || !slices.ContainsFunc(f.ds[ds].versions, func(v zfsrepl.Version) bool { return v.Name == snapshot }) {
		return fakeNotFound(snapshot)
	}
	if f.ds[target] != nil {
		return zfsrepl.ErrExists
	}
	f.create(target)
	f.ds[target].origin = snapshot
	for k, v := range props {
		f.ds[target].props[k] = v
	}
	return nil
}

func (f *rejoinFake) Promote(ctx context.Context, clone string) error {
	if err := f.call("promote " + clone); err != nil {
		return err
	}
	c := f.ds[clone]
	ods, _, short, ok := zfsrepl.SplitVersion(c.origin)
	if !ok {
		return fmt.Errorf("%s is not a clone", clone)
	}
	o := f.ds[ods]
	i := slices.IndexFunc(o.versions, func(v zfsrepl.Version) bool { return v.Type == zfsrepl.Snapshot && v.Short() == short })
	var moved, kept []zfsrepl.Version
	for _, v := range o.versions {
		if v.CreateTXG <= o.versions[i].CreateTXG && v.Type == zfsrepl.Snapshot {
			v.Name = clone + "@" + v.Short()
			moved = append(moved, v)
		} else {
			kept = append(kept, v)
		}
	}
	c.versions = append(moved, c.versions...)
	o.versions = kept
	c.origin, o.origin = o.origin, clone+"@"+short
	return nil
}

// peerOf builds the peer's tree: for each local dataset under root, the
// same relative path under peerRoot with the given snapshots' guids.
func rejoinPeerTree(peerRoot string, ds map[string][]zfsrepl.Version) []zfsrepl.TreeDataset {
	var out []zfsrepl.TreeDataset
	for rel, vs := range ds {
		var vv []zfsrepl.Version
		for _, v := range vs {
			_, sep, short, _ := zfsrepl.SplitVersion(v.Name)
			v.Name = peerRoot + rel + string(sep) + short
			vv = append(vv, v)
		}
		out = append(out, zfsrepl.TreeDataset{Name: peerRoot + rel, Type: zfsrepl.Filesystem, Versions: vv})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

var rejoinNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

const (
	rs1 = "zrepl-ha_20261201T110000Z_000001"
	rs2 = "zrepl-ha_20261201T110100Z_000002"
	rs3 = "zrepl-ha_20261201T110200Z_000003"
)

// world: local a/data and a/data/c with rs1, rs2 (shared with the peer);
// the peer b/data has them too, plus its own rs3 after the failover.
func rejoinWorld(t *testing.T) (*rejoinFake, []zfsrepl.TreeDataset) {
	f := newRejoinFake()
	f.create("a")
	f.create("a/data")
	f.create("a/data/c")
	peer := map[string][]zfsrepl.Version{}
	for _, s := range []string{rs1, rs2} {
		for _, rel := range []string{"", "/c"} {
			f.snap("a/data"+rel, s, 0)
			peer[rel] = append(peer[rel], f.ds["a/data"+rel].versions[len(f.ds["a/data"+rel].versions)-1])
		}
	}
	for _, rel := range []string{"", "/c"} {
		f.guid++
		peer[rel] = append(peer[rel], zfsrepl.Version{Name: "x@" + rs3, Type: zfsrepl.Snapshot, GUID: f.guid, CreateTXG: 100})
	}
	return f, rejoinPeerTree("b/data", peer)
}

func rejoinMutating(calls []string) []string {
	return slices.DeleteFunc(slices.Clone(calls), func(s string) bool { return strings.HasPrefix(s, "set readonly=on") })
}

func TestRejoinNoDivergence(t *testing.T) {
	f, peer := rejoinWorld(t)
	res, err := Rejoin(context.Background(), f, "a/data", peer, "b/data", 5, rejoinNow, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Diverged || res.Rescue != "" || len(res.Datasets) != 2 {
		t.Fatalf("result %+v", res)
	}
	for _, d := range res.Datasets {
		if d.Base != rs2 || d.Diverged || f.ds[d.Name].props["readonly"] != "on" {
			t.Errorf("%+v readonly=%s", d, f.ds[d.Name].props["readonly"])
		}
	}
	if m := rejoinMutating(f.calls); len(m) != 0 {
		t.Errorf("calls beyond readonly=on: %v", m)
	}
}

func TestRejoinCommonBaseByGUIDNotName(t *testing.T) {
	f, peer := rejoinWorld(t)
	// The peer's rs2 is a different snapshot under the same name (another
	// guid): the common base is rs1, and local rs2 is a divergent snapshot.
	for i := range peer {
		peer[i].Versions[1].GUID += 5000
	}
	res, err := Rejoin(context.Background(), f, "a/data", peer, "b/data", 5, rejoinNow, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Diverged {
		t.Fatal("not diverged")
	}
	for _, d := range res.Datasets {
		if d.Base != rs1 || !slices.Equal(d.Later, []string{rs2}) {
			t.Errorf("%s: base %s later %v, want base %s later [%s]", d.Name, d.Base, d.Later, rs1, rs2)
		}
	}
	// The clone starts at rs1 by guid: the new a/data has rs1 only.
	if vs := f.ds["a/data"].versions; len(vs) != 1 || vs[0].Short() != rs1 {
		t.Errorf("a/data versions %v", vs)
	}

	// A bookmark on the peer counts as a base (its guid is the snapshot's).
	f, peer = rejoinWorld(t)
	for i := range peer {
		peer[i].Versions[1].Type = zfsrepl.Bookmark
		peer[i].Versions[1].Name = strings.Replace(peer[i].Versions[1].Name, "@", "#", 1)
	}
	res, err = Rejoin(context.Background(), f, "a/data", peer, "b/data", 5, rejoinNow, nil)
	if err != nil || res.Diverged || res.Datasets[0].Base != rs2 {
		t.Fatalf("bookmark base: %+v %v", res, err)
	}
}

func TestRejoinDivergedByWritten(t *testing.T) {
	f, peer := rejoinWorld(t)
	f.ds["a/data/c"].written = 4096
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	res, err := Rejoin(context.Background(), f, "a/data", peer, "b/data", 5, rejoinNow, log)
	if err != nil {
		t.Fatal(err)
	}
	const rescue = "a/zrepl-ha-rescue/a_data_5_20261201T120000Z"
	const rsnap = "zrepl-ha_rescue_5_20261201T120000Z"
	if !res.Diverged || res.Rescue != rescue || res.RescueSnapshot != rsnap {
		t.Fatalf("result %+v", res)
	}
	if res.Datasets[0].Diverged || !res.Datasets[1].Diverged || res.Datasets[1].Written != 4096 ||
		res.Datasets[1].Rescue != rescue+"/c" || res.Datasets[1].Base != rs2 {
		t.Errorf("datasets %+v", res.Datasets)
	}
	want := []string{
		"snapshot -r a/data@" + rsnap,
		"create a/zrepl-ha-rescue",
		"rename a/data " + rescue,
		"clone " + rescue + "@" + rs2 + " a/data",
		"promote a/data",
		"clone " + rescue + "/c@" + rs2 + " a/data/c",
		"promote a/data/c",
	}
	if m := rejoinMutating(f.calls); !slices.Equal(m, want) {
		t.Errorf("calls\n%s\nwant\n%s", strings.Join(m, "\n"), strings.Join(want, "\n"))
	}
	checkRescued(t, f, rescue, rsnap)
	if f.ds["a/zrepl-ha-rescue"].props["canmount"] != "off" {
		t.Error("rescue container mounts")
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), rescue) {
		t.Errorf("no WARN naming the rescue: %s", logs.String())
	}
	rs, err := Rescues(context.Background(), f, []string{"a", "b"})
	if err != nil || !slices.Equal(rs, []string{rescue}) {
		t.Errorf("Rescues = %v, %v", rs, err)
	}
	// Run again: nothing diverged any more, nothing moves.
	f.calls = nil
	res, err = Rejoin(context.Background(), f, "a/data", peer, "b/data", 5, rejoinNow.Add(time.Minute), nil)
	if err != nil || res.Diverged || len(rejoinMutating(f.calls)) != 0 {
		t.Errorf("second run: %+v %v %v", res, err, f.calls)
	}
}

// checkRescued: each dataset is back as a promoted clone that ends at the
// base with the original guids, readonly; the rescue is its clone and keeps
// the rescue snapshot.
func checkRescued(t *testing.T, f *rejoinFake, rescue, rsnap string) {
	t.Helper()
	for _, rel := range []string{"", "/c"} {
		d, r := f.ds["a/data"+rel], f.ds[rescue+rel]
		if d == nil || r == nil {
			t.Fatalf("a/data%s or its rescue missing", rel)
		}
		if d.props["readonly"] != "on" || d.origin != "" || r.origin != "a/data"+rel+"@"+rs2 {
			t.Errorf("a/data%s: readonly=%s origin=%q; rescue origin %q", rel, d.props["readonly"], d.origin, r.origin)
		}
		if len(d.versions) != 2 || d.versions[1].Short() != rs2 {
			t.Errorf("a/data%s versions %v", rel, d.versions)
		}
		if len(r.versions) == 0 || r.versions[len(r.versions)-1].Short() != rsnap {
			t.Errorf("rescue%s versions %v", rel, r.versions)
		}
	}
}

func TestRejoinDivergedByLaterSnapshot(t *testing.T) {
	f, peer := rejoinWorld(t)
	f.snap("a/data", "mine", 0) // only the root has it
	res, err := Rejoin(context.Background(), f, "a/data", peer, "b/data", 7, rejoinNow, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Diverged || !res.Datasets[0].Diverged || !slices.Equal(res.Datasets[0].Later, []string{"mine"}) || res.Datasets[1].Diverged {
		t.Fatalf("result %+v", res)
	}
	rescue := "a/zrepl-ha-rescue/a_data_7_20261201T120000Z"
	r := f.ds[rescue]
	var shorts []string
	for _, v := range r.versions {
		shorts = append(shorts, v.Short())
	}
	if !slices.Equal(shorts, []string{"mine", "zrepl-ha_rescue_7_20261201T120000Z"}) {
		t.Errorf("rescue keeps %v", shorts)
	}
}

func TestRejoinNoCommonBase(t *testing.T) {
	f, peer := rejoinWorld(t)
	f.ds["a/data/c"].written = 1 // diverged too: still nothing may change
	for i := range peer {
		if peer[i].Name == "b/data/c" {
			for j := range peer[i].Versions {
				peer[i].Versions[j].GUID += 7777
			}
		}
	}
	_, err := Rejoin(context.Background(), f, "a/data", peer, "b/data", 5, rejoinNow, nil)
	if !errors.Is(err, ErrNoCommonSnapshot) || !strings.Contains(err.Error(), "a/data/c") || strings.Contains(err.Error(), "a/data,") {
		t.Fatalf("err = %v", err)
	}
	if len(f.calls) != 0 {
		t.Errorf("changed things: %v", f.calls)
	}
	if _, err := Rejoin(context.Background(), f, "a/data", nil, "b/data", 5, rejoinNow, nil); !errors.Is(err, ErrNoCommonSnapshot) {
		t.Errorf("empty peer: %v", err)
	}
}

func TestRejoinChildOnlyHere(t *testing.T) {
	f, peer := rejoinWorld(t)
	f.create("a/data/new") // created after the last replication
	f.ds["a/data/new"].written = 100
	res, err := Rejoin(context.Background(), f, "a/data", peer, "b/data", 5, rejoinNow, nil)
	if err != nil {
		t.Fatal(err)
	}
	rescue := "a/zrepl-ha-rescue/a_data_5_20261201T120000Z"
	if !res.Diverged || len(res.Datasets) != 3 || !res.Datasets[2].OnlyLocal || res.Datasets[2].Rescue != rescue+"/new" {
		t.Fatalf("result %+v", res)
	}
	if f.ds["a/data/new"] != nil || f.ds[rescue+"/new"] == nil {
		t.Error("a/data/new should be in the rescue only")
	}
	checkRescued(t, f, rescue, "zrepl-ha_rescue_5_20261201T120000Z")
}

// A crash after each mutating step, then Rejoin again (later, so with
// another timestamp): it always ends in the same rescued state.
func TestRejoinCrashAtEveryStep(t *testing.T) {
	steps := []string{"snapshot", "create", "rename", "clone a/zrepl-ha-rescue/a_data_5_20261201T120000Z@", "promote a/data", "clone a/zrepl-ha-rescue/a_data_5_20261201T120000Z/c@", "promote a/data/c", "set readonly=on a/data/c"}
	for _, step := range steps {
		t.Run(step, func(t *testing.T) {
			f, peer := rejoinWorld(t)
			f.ds["a/data"].written = 10
			f.ds["a/data/c"].written = 10
			f.failAt = step
			if _, err := Rejoin(context.Background(), f, "a/data", peer, "b/data", 5, rejoinNow, nil); !errors.Is(err, errRejoinInjected) {
				t.Fatalf("first run: %v", err)
			}
			res, err := Rejoin(context.Background(), f, "a/data", peer, "b/data", 5, rejoinNow.Add(time.Hour), nil)
			if err != nil {
				t.Fatalf("second run: %v\ncalls %v", err, f.calls)
			}
			ts := "20261201T120000Z"
			if step == "snapshot" { // nothing was done: the second run is the first
				ts = "20261201T130000Z"
			}
			rescue := "a/zrepl-ha-rescue/a_data_5_" + ts
			switch {
			case step == "set readonly=on a/data/c":
				// Everything was in place (the clones are made readonly):
				// the second run finds nothing diverged.
				if res.Diverged || res.Rescue != "" {
					t.Fatalf("result %+v", res)
				}
			case res.Rescue != rescue || !res.Diverged:
				t.Fatalf("result %+v", res)
			}
			checkRescued(t, f, rescue, "zrepl-ha_rescue_5_"+ts)
			if rs, _ := Rescues(context.Background(), f, []string{"a"}); len(rs) != 1 {
				t.Errorf("rescues %v", rs)
			}
		})
	}
}

func TestRejoinRescueNameTaken(t *testing.T) {
	f, peer := rejoinWorld(t)
	f.ds["a/data"].written = 1
	f.create("a/zrepl-ha-rescue")
	f.create("a/zrepl-ha-rescue/a_data_5_20261201T120000Z")
	f.snap("a/zrepl-ha-rescue/a_data_5_20261201T120000Z", "x", 0)
	// It looks like an unfinished rescue of a/data but shares nothing with
	// the peer: refused, nothing changes.
	_, err := Rejoin(context.Background(), f, "a/data", peer, "b/data", 5, rejoinNow, nil)
	if err == nil || len(f.calls) != 0 {
		t.Fatalf("err %v calls %v", err, f.calls)
	}
}
