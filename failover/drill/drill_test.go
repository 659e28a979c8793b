package drill

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/internal/config"
	"github.com/zrepl-ha/zrepl-ha/transport/zfsrpc"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

func sha(content string, limit int64) string {
	if int64(len(content)) > limit {
		content = content[:limit]
	}
	s := sha256.Sum256([]byte(content))
	return hex.EncodeToString(s[:])
}

var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

const (
	snap1 = "zrepl-ha_20261201T110000Z_000001"
	snap2 = "zrepl-ha_20261201T115900Z_000002"
)

func snapv(ds, short string, guid, txg uint64, created time.Time) zfsrepl.Version {
	return zfsrepl.Version{Name: ds + "@" + short, Type: zfsrepl.Snapshot, GUID: guid, CreateTXG: txg, Creation: created.Unix()}
}

// pair is a passive with replica backup/data (child backup/data/c) of the
// active's tank/data, both at snap1, with files that match.
type pair struct {
	z    *fakeZFS
	peer *fakePeer
	opts Options
}

func newPair(t *testing.T) *pair {
	t.Helper()
	files := map[string]string{"a.txt": "alpha", "d/b.bin": strings.Repeat("b", 5000), "d/e/c": "c"}
	child := map[string]string{"x": "x1"}
	local := []zfsrepl.TreeDataset{
		{Name: "backup/data", Type: zfsrepl.Filesystem, Versions: []zfsrepl.Version{snapv("backup/data", snap1, 11, 100, now.Add(-time.Hour))}},
		{Name: "backup/data/c", Type: zfsrepl.Filesystem, Versions: []zfsrepl.Version{snapv("backup/data/c", snap1, 12, 100, now.Add(-time.Hour))}},
	}
	remote := []zfsrepl.TreeDataset{
		{Name: "tank/data", Type: zfsrepl.Filesystem, Versions: []zfsrepl.Version{snapv("tank/data", snap1, 11, 50, now.Add(-time.Hour))}},
		{Name: "tank/data/c", Type: zfsrepl.Filesystem, Versions: []zfsrepl.Version{snapv("tank/data/c", snap1, 12, 50, now.Add(-time.Hour))}},
	}
	feats := map[string]string{"feature@lz4_compress": "active", "feature@zstd_compress": "enabled"}
	info := func(node, pool, root string) zfsrpc.DrillInfo {
		return zfsrpc.DrillInfo{Node: node, ZFSVersion: "2.3.1-1", Pools: []zfsrpc.DrillPool{{Name: pool, Features: feats}},
			Roots: []zfsrpc.DrillRoot{{Name: root, Used: 10 << 30, Avail: 90 << 30}}, SharesFingerprint: "s", VIPFingerprint: "v"}
	}
	z := &fakeZFS{
		trees: map[string][]zfsrepl.TreeDataset{"backup/data": local},
		files: map[string]map[string]string{"backup/data@" + snap1: files, "backup/data/c@" + snap1: child},
	}
	peer := &fakePeer{
		trees: map[string][]zfsrepl.TreeDataset{"tank/data": remote},
		files: map[string]map[string]string{"tank/data@" + snap1: copyMap(files), "tank/data/c@" + snap1: copyMap(child)},
		guids: map[string]uint64{"tank/data@" + snap1: 11, "tank/data/c@" + snap1: 12},
		info:  info("alpha", "tank", "tank/data"),
	}
	return &pair{z: z, peer: peer, opts: Options{
		Roots: []config.Root{{Source: "backup/data", Target: "tank/data"}},
		ZFS:   z, Peer: peer, Local: fakeInfo(info("beta", "backup", "backup/data")),
		MountDir: t.TempDir(), Now: func() time.Time { return now },
		Sample: SampleOptions{FileBytes: 4096},
	}}
}

func copyMap(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (p *pair) run(t *testing.T) Report {
	t.Helper()
	rep, err := Run(context.Background(), p.opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.z.clones) != 0 {
		t.Fatalf("clones left behind: %v", p.z.clones)
	}
	return rep
}

func failed(rep Report, name string) (Check, bool) {
	for _, c := range rep.Checks {
		if !c.OK && strings.HasPrefix(c.Name, name) {
			return c, true
		}
	}
	return Check{}, false
}

func TestRunReady(t *testing.T) {
	p := newPair(t)
	rep := p.run(t)
	if !rep.Ready || len(rep.Failed()) != 0 {
		t.Fatalf("want ready, failed: %+v", rep.Failed())
	}
	if rep.Node != "beta" || rep.Peer != "alpha" {
		t.Errorf("nodes %q %q", rep.Node, rep.Peer)
	}
	if len(p.peer.reqs) != 2 || p.peer.reqs[0].Snapshot != "tank/data@"+snap1 || p.peer.reqs[1].Snapshot != "tank/data/c@"+snap1 || p.peer.reqs[0].GUID != 11 {
		t.Fatalf("the active was asked %+v", p.peer.reqs)
	}
	if got := len(p.peer.reqs[0].Paths); got != 3 {
		t.Errorf("sampled %d of 3 files", got)
	}
	if len(p.z.destroyed) != 2 || !strings.HasPrefix(p.z.destroyed[0], "backup/"+clonePrefix+"20261201T120000Z-") {
		t.Errorf("destroyed %v", p.z.destroyed)
	}
	var names []string
	for _, c := range rep.Checks {
		names = append(names, c.Name)
	}
	want := "snapshot backup/data,content backup/data@" + snap1 + ",content backup/data/c@" + snap1 +
		",shares,tiebreaker,vip,zfs version,pool features backup,space backup/data,share config,vip config"
	if strings.Join(names, ",") != want {
		t.Errorf("checks\n%s\nwant\n%s", strings.Join(names, ","), want)
	}
}

// Each damage must turn the verdict to no, with a reason that names it;
// and the clones are destroyed whatever happened.
func TestRunNotReady(t *testing.T) {
	cases := []struct {
		name, check, reason string
		damage              func(p *pair)
	}{
		{"file content differs", "content backup/data@", "sha256", func(p *pair) { p.peer.files["tank/data@"+snap1]["a.txt"] = "ALPHA" }},
		{"file size differs", "content backup/data@", "bytes in the clone", func(p *pair) { p.peer.files["tank/data@"+snap1]["d/e/c"] = "cc" }},
		{"file count differs", "content backup/data/c@", "the clone has 1 files, the active's snapshot 2", func(p *pair) {
			p.peer.files["tank/data/c@"+snap1]["y"] = "y"
		}},
		{"file missing on the active", "content backup/data@", "no such file", func(p *pair) {
			delete(p.peer.files["tank/data@"+snap1], "a.txt")
			p.peer.files["tank/data@"+snap1]["z"] = "keeps the count"
		}},
		{"guid differs", "snapshot backup/data", "diverged", func(p *pair) { p.peer.trees["tank/data"][1].Versions[0].GUID = 99 }},
		{"snapshot gone on the active", "snapshot backup/data", "gone on the active", func(p *pair) { p.peer.trees["tank/data"][0].Versions = nil }},
		{"replica behind", "snapshot backup/data", "is behind", func(p *pair) {
			p.peer.trees["tank/data"][0].Versions = append(p.peer.trees["tank/data"][0].Versions, snapv("tank/data", snap2, 21, 60, now.Add(-2*time.Hour)))
		}},
		{"no consistent snapshot", "snapshot backup/data", "has not completed once", func(p *pair) { p.z.trees["backup/data"][1].Versions = nil }},
		{"clone does not mount", "content backup/data/c@", "but not mounted", func(p *pair) {
			p.z.files["backup/data/c@"+snap1] = nil // only the child's clone fails
			p.z.cloneErrFor = "backup/data/c@" + snap1
		}},
		{"older OpenZFS on the passive", "zfs version", "upgrade the passive", func(p *pair) {
			i := p.opts.Local.(fakeInfo)
			i.ZFSVersion = "2.1.5-1"
			p.opts.Local = i
		}},
		{"feature missing on the passive", "pool features backup", "block_cloning", func(p *pair) {
			p.peer.info.Pools[0].Features = map[string]string{"feature@block_cloning": "enabled", "feature@lz4_compress": "active"}
		}},
		{"no room on the passive", "space backup/data", "add space", func(p *pair) { p.peer.info.Roots[0].Used = 200 << 30 }},
		{"shares differ", "share config", "shares: sections differ", func(p *pair) { p.peer.info.SharesFingerprint = "other" }},
		{"vip differs", "vip config", "vip.address differs", func(p *pair) { p.peer.info.VIPFingerprint = "other" }},
		{"tiebreaker silent", "tiebreaker", "no answer", func(p *pair) {
			p.opts.Tiebreaker = func(context.Context) error { return errors.New("no answer") }
		}},
		{"on the active", "role", "run the drill on the passive", func(p *pair) {
			p.opts.Role = func(context.Context) (string, error) { return "active", nil }
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t)
			tc.damage(p)
			rep := p.run(t)
			c, ok := failed(rep, tc.check)
			if rep.Ready || !ok || !strings.Contains(c.Reason, tc.reason) {
				t.Fatalf("ready=%v, check %q: %+v; failed: %+v", rep.Ready, tc.check, c, rep.Failed())
			}
			if len(rep.Failed()) != 1 {
				t.Errorf("one damage, %d failed checks: %+v", len(rep.Failed()), rep.Failed())
			}
		})
	}
}

var errMount = errors.New("filesystem successfully created, but not mounted")

// A newer snapshot on the active within the lag limit is replication on
// its way, not a failure.
func TestRecentLagIsReady(t *testing.T) {
	p := newPair(t)
	p.peer.trees["tank/data"][0].Versions = append(p.peer.trees["tank/data"][0].Versions, snapv("tank/data", snap2, 21, 60, now.Add(-time.Minute)))
	rep := p.run(t)
	if !rep.Ready || !strings.Contains(rep.Checks[0].Reason, "1 newer on the active, within") {
		t.Fatalf("%+v", rep.Checks[0])
	}
}

func TestStaleClonesDestroyed(t *testing.T) {
	p := newPair(t)
	p.z.extra = []string{"backup/" + clonePrefix + "20261130T000000Z-1", "backup/data", "backup/other/" + clonePrefix + "x"}
	p.run(t)
	if p.z.destroyed[0] != "backup/"+clonePrefix+"20261130T000000Z-1" || len(p.z.destroyed) != 3 {
		t.Fatalf("destroyed %v: want the leftover first, then this drill's two clones, nothing nested", p.z.destroyed)
	}
}

func TestSecondDrillRefused(t *testing.T) {
	p := newPair(t)
	unlock, err := lock(p.opts.MountDir)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if _, err := Run(context.Background(), p.opts); !errors.Is(err, ErrBusy) {
		t.Fatalf("want ErrBusy, got %v", err)
	}
}

func TestOptionsRequired(t *testing.T) {
	p := newPair(t)
	for name, mod := range map[string]func(o *Options){
		"no roots":          func(o *Options) { o.Roots = nil },
		"no peer":           func(o *Options) { o.Peer = nil },
		"relative mountdir": func(o *Options) { o.MountDir = "drill" },
	} {
		o := p.opts
		mod(&o)
		if _, err := Run(context.Background(), o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRoleUnknown(t *testing.T) {
	c := roleCheck(context.Background(), func(context.Context) (string, error) { return "", fmt.Errorf("no daemon") })
	if c.OK || !strings.Contains(c.Reason, "no daemon") {
		t.Fatalf("%+v", c)
	}
}
