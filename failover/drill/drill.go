package drill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/zrepl-ha/zrepl-ha/internal/config"
	"github.com/zrepl-ha/zrepl-ha/transport/zfsrpc"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

// Peer is the active node as the drill asks it; *zfsrpc.Client is one.
type Peer interface {
	Tree(ctx context.Context, root string) ([]zfsrepl.TreeDataset, error)
	DrillSample(ctx context.Context, req zfsrpc.DrillSampleRequest) (zfsrpc.DrillSampleResponse, error)
	DrillInfo(ctx context.Context) (zfsrpc.DrillInfo, error)
}

// InfoSource gives this node's compatibility facts; *Responder is one.
type InfoSource interface {
	DrillInfo(ctx context.Context) (zfsrpc.DrillInfo, error)
}

// Options configure one drill. Roots, ZFS, Peer, Local and MountDir are
// required; a nil check function means that part is not configured, and
// the report says so.
type Options struct {
	// Roots as in the config: Source is the replica on this node, Target
	// its name on the active.
	Roots []config.Root
	ZFS   zfsrepl.ZFS
	Peer  Peer
	Local InfoSource
	// Role returns this node's role as the daemon sees it; the drill is
	// meant for the passive.
	Role func(ctx context.Context) (string, error)
	// Shares says whether the share config would apply here (SharesCheck).
	Shares func(ctx context.Context) error
	// Tiebreaker and VIP probe once (TiebreakerCheck, VIPCheck).
	Tiebreaker func(ctx context.Context) error
	VIP        func(ctx context.Context) error
	// MountDir holds the clones' temporary mountpoints and the lock that
	// keeps two drills apart (/run/zrepl-ha/drill in the daemon's layout).
	MountDir string
	Sample   SampleOptions
	// MaxLag is how old the active's oldest snapshot missing on the passive
	// may be before the drill says the replica is behind (DefaultMaxLag).
	MaxLag time.Duration
	// MaxDatasets bounds the datasets cloned per root (DefaultMaxDatasets);
	// the rest are compared by guid only, and the report says so.
	MaxDatasets int
	// CleanupTimeout bounds destroying one clone (DefaultCleanupTimeout).
	CleanupTimeout time.Duration
	Now            func() time.Time
	Log            *slog.Logger
}

// Defaults for zero Options fields.
const (
	DefaultMaxLag         = time.Hour
	DefaultMaxDatasets    = 32
	DefaultCleanupTimeout = 2 * time.Minute
)

// ErrBusy is another drill holding the lock in MountDir.
var ErrBusy = errors.New("another drill is running")

// Check is one verdict of the drill.
type Check struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Reason says what was found; for a failed check, what to fix.
	Reason string `json:"reason"`
}

// Report is the drill's outcome.
type Report struct {
	Node     string        `json:"node,omitempty"`
	Peer     string        `json:"peer,omitempty"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	Checks   []Check       `json:"checks"`
	// Ready is "failover ready": every check passed.
	Ready bool `json:"failover_ready"`
}

// Failed returns the checks that did not pass.
func (r Report) Failed() []Check {
	var out []Check
	for _, c := range r.Checks {
		if !c.OK {
			out = append(out, c)
		}
	}
	return out
}

func (o *Options) validate() error {
	switch {
	case len(o.Roots) == 0:
		return errors.New("drill: no replicated roots: set replication.roots")
	case o.ZFS == nil || o.Peer == nil || o.Local == nil:
		return errors.New("drill: ZFS, Peer and Local are required")
	case !filepath.IsAbs(o.MountDir):
		return fmt.Errorf("drill: the mount directory %q must be an absolute path", o.MountDir)
	}
	o.Sample = o.Sample.withDefaults()
	if o.MaxLag <= 0 {
		o.MaxLag = DefaultMaxLag
	}
	if o.MaxDatasets <= 0 {
		o.MaxDatasets = DefaultMaxDatasets
	}
	if o.CleanupTimeout <= 0 {
		o.CleanupTimeout = DefaultCleanupTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Run runs the drill. Every finding, good or bad, is a Check in the
// Report; the error is for a drill that could not run at all (bad
// Options, another drill running). Clones are destroyed before Run
// returns, also when ctx ends.
func Run(ctx context.Context, o Options) (Report, error) {
	if err := o.validate(); err != nil {
		return Report{}, err
	}
	d := &run{o: o, stamp: o.Now().UTC().Format("20060102T150405Z")}
	d.rep.Started = o.Now()
	unlock, err := lock(o.MountDir)
	if err != nil {
		return Report{}, err
	}
	defer unlock()

	if o.Role != nil {
		d.add(roleCheck(ctx, o.Role))
	}
	d.removeStale(ctx)
	for _, root := range o.Roots {
		d.root(ctx, root)
	}
	d.add(optional(ctx, "shares", o.Shares, "no shares configured"))
	d.add(optional(ctx, "tiebreaker", o.Tiebreaker, "no tiebreaker configured: automatic failover is off (only switchover and failover --force)"))
	d.add(optional(ctx, "vip", o.VIP, "no VIP configured"))
	d.compat(ctx)

	d.rep.Ready = len(d.rep.Checks) > 0 && len(d.rep.Failed()) == 0
	d.rep.Duration = o.Now().Sub(d.rep.Started)
	return d.rep, nil
}

// run is one drill's state.
type run struct {
	o      Options
	stamp  string // names this drill's clones
	clones int
	rep    Report
}

func (d *run) add(c Check) {
	d.rep.Checks = append(d.rep.Checks, c)
	if c.OK {
		d.o.Log.Info("drill", "check", c.Name, "ok", true, "reason", c.Reason)
	} else {
		d.o.Log.Warn("drill", "check", c.Name, "ok", false, "reason", c.Reason)
	}
}

func roleCheck(ctx context.Context, role func(context.Context) (string, error)) Check {
	c := Check{Name: "role"}
	r, err := role(ctx)
	switch {
	case err != nil:
		c.Reason = fmt.Sprintf("cannot ask the daemon for this node's role: %v", err)
	case r != "passive":
		c.Reason = fmt.Sprintf("this node is %s: run the drill on the passive", r)
	default:
		c.OK, c.Reason = true, "this node is passive"
	}
	return c
}

func optional(ctx context.Context, name string, f func(context.Context) error, off string) Check {
	if f == nil {
		return Check{Name: name, OK: true, Reason: off}
	}
	if err := f(ctx); err != nil {
		return Check{Name: name, Reason: err.Error()}
	}
	return Check{Name: name, OK: true, Reason: "ok"}
}

// compat compares this node's facts with the active's.
func (d *run) compat(ctx context.Context) {
	local, err := d.o.Local.DrillInfo(ctx)
	if err != nil {
		d.add(Check{Name: "compatibility", Reason: fmt.Sprintf("this node's facts: %v", err)})
		return
	}
	peer, err := d.o.Peer.DrillInfo(ctx)
	if err != nil {
		d.add(Check{Name: "compatibility", Reason: fmt.Sprintf("the active did not answer drill.info (is it running this zrepl-ha version?): %v", err)})
		return
	}
	d.rep.Node, d.rep.Peer = local.Node, peer.Node
	d.add(compareVersions(local.ZFSVersion, peer.ZFSVersion))
	pools := func(info zfsrpc.DrillInfo) map[string]map[string]string {
		m := map[string]map[string]string{}
		for _, p := range info.Pools {
			m[p.Name] = p.Features
		}
		return m
	}
	roots := func(info zfsrpc.DrillInfo) map[string]zfsrpc.DrillRoot {
		m := map[string]zfsrpc.DrillRoot{}
		for _, r := range info.Roots {
			m[r.Name] = r
		}
		return m
	}
	lp, pp, lr, pr := pools(local), pools(peer), roots(local), roots(peer)
	seen := map[[2]string]bool{}
	for _, root := range d.o.Roots {
		pair := [2]string{poolOf(root.Source), poolOf(root.Target)}
		if !seen[pair] {
			seen[pair] = true
			lf, ok1 := lp[pair[0]]
			af, ok2 := pp[pair[1]]
			if !ok1 || !ok2 {
				d.add(Check{Name: "pool features " + pair[0], Reason: fmt.Sprintf("no feature list for pool %s here or %s on the active: are the roots the same in both configs?", pair[0], pair[1])})
			} else {
				d.add(compareFeatures(pair[0], lf, pair[1], af))
			}
		}
		l, ok1 := lr[root.Source]
		a, ok2 := pr[root.Target]
		if !ok1 || !ok2 {
			d.add(Check{Name: "space " + root.Source, Reason: fmt.Sprintf("the active does not report root %s (its replication.roots differ from this node's)", root.Target)})
			continue
		}
		d.add(compareSpace(l, a))
	}
	c := Check{Name: "share config", OK: local.SharesFingerprint == peer.SharesFingerprint}
	c.Reason = "the same on both nodes"
	if !c.OK {
		c.Reason = fmt.Sprintf("the shares: sections differ (fingerprint %s here, %s on %s): make both configs' shares the same", local.SharesFingerprint, peer.SharesFingerprint, peer.Node)
	}
	d.add(c)
	c = Check{Name: "vip config", OK: local.VIPFingerprint == peer.VIPFingerprint}
	c.Reason = "the same address on both nodes"
	if !c.OK {
		c.Reason = fmt.Sprintf("vip.address differs (fingerprint %s here, %s on %s): both nodes must configure the same VIP", local.VIPFingerprint, peer.VIPFingerprint, peer.Node)
	}
	d.add(c)
}

// lock takes an exclusive flock on MountDir/.lock: a second drill would
// take the first one's clones for leftovers and destroy them.
func lock(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("drill: create %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w (%s is locked): wait for it to finish", ErrBusy, dir)
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}
