package drill

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/zrepl-ha/zrepl-ha/internal/command"
	"github.com/zrepl-ha/zrepl-ha/internal/config"
	"github.com/zrepl-ha/zrepl-ha/transport/zfsrpc"
)

// System reads what the ZFS interface does not cover: the OpenZFS version
// and pool features.
type System interface {
	ZFSVersion(ctx context.Context) (string, error)
	// PoolFeatures maps "feature@x" to enabled, active or disabled.
	PoolFeatures(ctx context.Context, pool string) (map[string]string, error)
}

// Host is System on this machine.
type Host struct {
	Runner      command.Runner
	Zfs, Zpool  string // binaries; "zfs" and "zpool" when empty
	VersionFile string // /sys/module/zfs/version when empty
}

// ZFSVersion is the loaded kernel module's version: that is what receives
// and imports, whatever the userland says. Without the module file it
// falls back to `zfs version`'s zfs-kmod line.
func (h Host) ZFSVersion(ctx context.Context) (string, error) {
	file := h.VersionFile
	if file == "" {
		file = "/sys/module/zfs/version"
	}
	if b, err := os.ReadFile(file); err == nil && len(bytes.TrimSpace(b)) > 0 {
		return string(bytes.TrimSpace(b)), nil
	}
	out, err := h.Runner.Command(ctx, or(h.Zfs, "zfs"), "version").Output()
	if err != nil {
		return "", fmt.Errorf("OpenZFS version (is the zfs module loaded?): %w", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "zfs-kmod-"); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("OpenZFS version: no zfs-kmod line in `zfs version`: %q", out)
}

// PoolFeatures runs zpool get -H -o property,value all POOL.
func (h Host) PoolFeatures(ctx context.Context, pool string) (map[string]string, error) {
	out, err := h.Runner.Command(ctx, or(h.Zpool, "zpool"), "get", "-H", "-o", "property,value", "all", pool).Output()
	if err != nil {
		return nil, fmt.Errorf("features of pool %s: %w", pool, err)
	}
	return parseFeatures(out), nil
}

func parseFeatures(out []byte) map[string]string {
	f := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		prop, val, ok := strings.Cut(sc.Text(), "\t")
		if ok && strings.HasPrefix(prop, "feature@") {
			f[prop] = strings.TrimSpace(val)
		}
	}
	return f
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Fingerprints hash the share and the VIP config as both nodes see them.
// Share datasets are written with each root's canonical name (the smaller
// of source and target), so a pair whose roots are named differently on
// the two nodes still compares equal. The VIP's interface is left out: the
// two nodes may name their NICs differently; the address is what clients
// use.
func Fingerprints(cfg *config.Config) (shares, vip string) {
	canon := func(ds string) string {
		for _, r := range cfg.Replication.Roots {
			for _, name := range []string{r.Source, r.Target} {
				if ds == name || strings.HasPrefix(ds, name+"/") {
					return min(r.Source, r.Target) + ds[len(name):]
				}
			}
		}
		return ds
	}
	type smb struct {
		Name, Dataset string
		Options       [][2]string
	}
	var nfs []config.NFSShare
	for _, s := range cfg.Shares.NFS {
		s.Dataset = canon(s.Dataset)
		nfs = append(nfs, s)
	}
	slices.SortFunc(nfs, func(a, b config.NFSShare) int {
		return strings.Compare(a.Dataset+"\x00"+a.Clients, b.Dataset+"\x00"+b.Clients)
	})
	var smbs []smb
	for _, s := range cfg.Shares.SMB {
		e := smb{Name: strings.ToLower(s.Name), Dataset: canon(s.Dataset)}
		for k, v := range s.Options {
			e.Options = append(e.Options, [2]string{k, v})
		}
		slices.SortFunc(e.Options, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
		smbs = append(smbs, e)
	}
	slices.SortFunc(smbs, func(a, b smb) int { return strings.Compare(a.Name, b.Name) })
	vipAddr := ""
	if cfg.VIP.Enabled() {
		vipAddr = cfg.VIP.Prefix().String()
	}
	return hash(struct {
		NFS []config.NFSShare
		SMB []smb
	}{nfs, smbs}), hash(vipAddr)
}

func hash(v any) string {
	b, _ := json.Marshal(v)
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}

// version is an OpenZFS version's numeric part: 2.2.2-0ubuntu9 -> 2 2 2.
type version [3]int

func parseVersion(s string) (version, bool) {
	var v version
	s, _, _ = strings.Cut(strings.TrimPrefix(s, "zfs-"), "-")
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return v, false
	}
	for i := 0; i < len(parts) && i < 3; i++ {
		n, err := strconv.Atoi(parts[i])
		if err != nil {
			return v, false
		}
		v[i] = n
	}
	return v, true
}

func (v version) cmp(o version) int { return slices.Compare(v[:], o[:]) }

// compareVersions: a passive on an older OpenZFS release (major.minor)
// than the active may be unable to receive what the active sends after an
// upgrade of its pool, and cannot serve the same features; a newer one is
// fine.
func compareVersions(passive, active string) Check {
	c := Check{Name: "zfs version"}
	p, ok1 := parseVersion(passive)
	a, ok2 := parseVersion(active)
	switch {
	case !ok1 || !ok2:
		c.Reason = fmt.Sprintf("cannot compare OpenZFS versions: passive %q, active %q", passive, active)
	case version{p[0], p[1]}.cmp(version{a[0], a[1]}) < 0:
		c.Reason = fmt.Sprintf("the passive runs OpenZFS %s, an older release than the active's %s: upgrade the passive", passive, active)
	default:
		c.OK = true
		c.Reason = fmt.Sprintf("passive %s, active %s", passive, active)
	}
	return c
}

// compareFeatures lists the features the active's pool has enabled or
// active that the passive's pool has disabled or does not know: a stream
// using one cannot be received, and the passive's pool could not take over
// the same data.
func compareFeatures(passivePool string, passive map[string]string, activePool string, active map[string]string) Check {
	c := Check{Name: "pool features " + passivePool}
	var missing []string
	for f, st := range active {
		if st != "enabled" && st != "active" {
			continue
		}
		if ps, ok := passive[f]; !ok || ps == "disabled" {
			state := "unknown to its OpenZFS"
			if ok {
				state = "disabled"
			}
			missing = append(missing, fmt.Sprintf("%s (%s on %s, %s on %s)", strings.TrimPrefix(f, "feature@"), st, activePool, state, passivePool))
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		c.Reason = fmt.Sprintf("pool %s lacks features the active's pool %s uses: %s; enable them (zpool set feature@NAME=enabled %s) or upgrade OpenZFS on the passive",
			passivePool, activePool, strings.Join(missing, ", "), passivePool)
		return c
	}
	c.OK, c.Reason = true, fmt.Sprintf("every feature enabled on %s is enabled on %s", activePool, passivePool)
	return c
}

// compareSpace: the passive's replica must be able to grow to the active's
// size. What the replica uses already counts: it holds most of that data.
func compareSpace(passive, active zfsrpc.DrillRoot) Check {
	c := Check{Name: "space " + passive.Name}
	room := passive.Used + passive.Avail
	if room < active.Used {
		c.Reason = fmt.Sprintf("%s can hold %s (used %s + available %s), less than the %s the active's %s uses: add space to the passive's pool",
			passive.Name, bytesH(room), bytesH(passive.Used), bytesH(passive.Avail), bytesH(active.Used), active.Name)
		return c
	}
	c.OK = true
	c.Reason = fmt.Sprintf("%s can hold %s, the active's %s uses %s", passive.Name, bytesH(room), active.Name, bytesH(active.Used))
	return c
}

func bytesH(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
