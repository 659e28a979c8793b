package drill

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/zrepl-ha/zrepl-ha/failover/shares"
	"github.com/zrepl-ha/zrepl-ha/internal/config"
	"github.com/zrepl-ha/zrepl-ha/transport/zfsrpc"
)

func errorsIs(err, target error) bool { return errors.Is(err, target) }

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		passive, active string
		ok              bool
	}{
		{"2.2.2-0ubuntu9", "2.2.2-0ubuntu9", true},
		{"2.2.7-1", "2.2.2-0ubuntu9", true}, // patch level: same release
		{"2.2.0", "2.2.7", true},
		{"2.3.1", "2.2.7", true}, // newer passive
		{"2.1.15", "2.2.2", false},
		{"zfs-2.2.2-1", "2.2.2", true},
		{"garbage", "2.2.2", false},
	} {
		if c := compareVersions(tc.passive, tc.active); c.OK != tc.ok {
			t.Errorf("%s vs %s: %+v", tc.passive, tc.active, c)
		}
	}
}

func TestParseFeatures(t *testing.T) {
	out := "size\t1G\nfeature@async_destroy\tenabled\nfeature@lz4_compress\tactive\nfeature@draid\tdisabled\nguid\t123\n"
	f := parseFeatures([]byte(out))
	if len(f) != 3 || f["feature@lz4_compress"] != "active" || f["feature@draid"] != "disabled" {
		t.Fatalf("%v", f)
	}
}

func TestCompareFeatures(t *testing.T) {
	active := map[string]string{"feature@a": "active", "feature@b": "enabled", "feature@c": "disabled"}
	if c := compareFeatures("p", map[string]string{"feature@a": "active", "feature@b": "enabled"}, "t", active); !c.OK {
		t.Errorf("all there: %+v", c)
	}
	c := compareFeatures("p", map[string]string{"feature@a": "disabled", "feature@c": "disabled"}, "t", active)
	if c.OK || !strings.Contains(c.Reason, "a (active on t, disabled on p), b (enabled on t, unknown to its OpenZFS on p)") {
		t.Errorf("missing: %+v", c)
	}
}

func TestCompareSpace(t *testing.T) {
	if c := compareSpace(zfsrpc.DrillRoot{Name: "b", Used: 8, Avail: 2}, zfsrpc.DrillRoot{Name: "t", Used: 10}); !c.OK {
		t.Errorf("exactly enough: %+v", c)
	}
	if c := compareSpace(zfsrpc.DrillRoot{Name: "b", Used: 8, Avail: 1}, zfsrpc.DrillRoot{Name: "t", Used: 10 << 30}); c.OK || !strings.Contains(c.Reason, "10.0 GiB") {
		t.Errorf("short: %+v", c)
	}
}

func TestFingerprints(t *testing.T) {
	cfg := func(src, dst, vip, iface string, opts map[string]string) *config.Config {
		c := &config.Config{}
		c.Replication.Roots = []config.Root{{Source: src, Target: dst}}
		c.Shares.NFS = []config.NFSShare{{Dataset: src + "/home", Clients: "10.0.0.0/8", Options: "rw"}}
		c.Shares.SMB = []config.SMBShare{{Name: "Home", Dataset: src + "/home", Options: opts}}
		c.VIP = config.VIP{Address: vip, Interface: iface}
		return c
	}
	opts := map[string]string{"read only": "no", "browseable": "yes"}
	as, av := Fingerprints(cfg("tank/data", "backup/data", "198.18.0.100/24", "eth0", opts))
	// The passive's view: roots swapped, another NIC name, same options.
	ps, pv := Fingerprints(cfg("backup/data", "tank/data", "198.18.0.100/24", "eno1", map[string]string{"browseable": "yes", "read only": "no"}))
	if as != ps || av != pv {
		t.Fatalf("the same config on both nodes differs: %s/%s vs %s/%s", as, av, ps, pv)
	}
	xs, xv := Fingerprints(cfg("tank/data", "backup/data", "198.18.0.101/24", "eth0", map[string]string{"read only": "yes"}))
	if xs == as || xv == av {
		t.Fatal("a different share option or VIP compares equal")
	}
}

func TestSharesCheck(t *testing.T) {
	m := &shares.Manager{NFS: []config.NFSShare{{Dataset: "tank/data/home", Clients: "10.0.0.0/8"}}, SMB: []config.SMBShare{{Name: "x", Dataset: "tank/other"}}}
	installed := func(string) (string, error) { return "/usr/sbin/x", nil }
	err := SharesCheck(m, []string{"tank/data"}, installed)(context.Background())
	if err == nil || !strings.Contains(err.Error(), "tank/other is not under a replicated root") {
		t.Fatalf("%v", err)
	}
	m.SMB = nil
	if err := SharesCheck(m, []string{"tank/data"}, installed)(context.Background()); err != nil {
		t.Fatal(err)
	}
	missing := func(b string) (string, error) { return "", errors.New("not found") }
	if err := SharesCheck(m, []string{"tank/data"}, missing)(context.Background()); err == nil || !strings.Contains(err.Error(), "install nfs-kernel-server") {
		t.Fatalf("%v", err)
	}
}

func TestVIPHeldByThePassive(t *testing.T) {
	held := func(context.Context) (bool, error) { return true, nil }
	err := VIPCheck(netip.MustParseAddr("127.0.0.1"), 0, held)(context.Background())
	if err == nil || !strings.Contains(err.Error(), "this passive node holds the VIP") {
		t.Fatalf("%v", err)
	}
}
