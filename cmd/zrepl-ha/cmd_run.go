package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/zrepl-ha/zrepl-ha/failover"
	"github.com/zrepl-ha/zrepl-ha/failover/probe"
	"github.com/zrepl-ha/zrepl-ha/failover/shares"
	"github.com/zrepl-ha/zrepl-ha/failover/vip"
	"github.com/zrepl-ha/zrepl-ha/failover/watchdog"
	"github.com/zrepl-ha/zrepl-ha/failover/witness"
	"github.com/zrepl-ha/zrepl-ha/internal/config"
	"github.com/zrepl-ha/zrepl-ha/scheduler"
	"github.com/zrepl-ha/zrepl-ha/transport"
	"github.com/zrepl-ha/zrepl-ha/transport/zfsrpc"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

func newRunCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "run this node of the pair (the daemon)",
		Description: "Runs heartbeats on every path, the tiebreaker, the failover decision, and, while\n" +
			"this node is active, the snapshot -> replicate -> prune cycle to the peer. It\n" +
			"answers `zrepl-ha status`, `failover`, `demote` and `switchover` on\n" +
			"node.control_socket. The decision rules are in docs/failover.md.\n\n" +
			"Example:\n" +
			"   zrepl-ha --config /etc/zrepl-ha/alpha.yaml run",
		Action: func(ctx context.Context, c *cli.Command) error {
			return runDaemon(ctx, c.String("config"), c.Root().ErrWriter)
		},
	}
}

// nfsGrace is the NFSv4 grace and lease time zrepl-ha sets.
const nfsGrace = 10 * time.Second

// transferExec is the Exec of the commands that replicate: zfs's send and
// receive kernel threads run at this process's priority, not OpenZFS's
// nice 19 (zfsrepl.ThreadRaiser). Without /proc it is a plain Exec.
func transferExec(log *slog.Logger) *zfsrepl.Exec {
	z := zfsrepl.NewExec(zfsrepl.Binaries{}, log)
	if nice, err := zfsrepl.DaemonNice(""); err == nil {
		z.Threads = &zfsrepl.ThreadRaiser{Nice: nice, Log: log}
	}
	return z
}

// runDaemon builds the node from the config and runs it until ctx ends.
func runDaemon(ctx context.Context, path string, errw io.Writer) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	log, level := newLevelLogger(cfg, errw)
	sd := newSystemd(log)
	z := transferExec(log)

	sec, lsec, err := security(cfg, log)
	if err != nil {
		return err
	}
	var roots []string
	for _, r := range cfg.Replication.Roots {
		roots = append(roots, r.Source)
	}
	epochs, err := failover.RootEpochs(ctx, z, roots)
	if err != nil {
		return err
	}

	// Receives, confirmations, the passive's retention and the actions
	// are counted, so a promotion plan read ahead is known to be current.
	changes := &failover.PoolChanges{}
	rep := &replicator{cfg: cfg, z: z, sec: sec, log: log, locks: &scheduler.Locks{}, changes: changes}
	svc := &failover.Services{ZFS: z, Roots: roots, Final: rep.final, Log: log, PeerTree: rep.peerTree, Changes: changes,
		RejoinSettle: rejoinSettle}
	for _, r := range cfg.Replication.Roots {
		svc.PeerRoots = append(svc.PeerRoots, r.Target)
	}
	if len(cfg.Shares.NFS)+len(cfg.Shares.SMB) > 0 {
		m := &shares.Manager{NFS: cfg.Shares.NFS, SMB: cfg.Shares.SMB, ZFS: z, Log: log, ChildrenReloadAfter: 5 * time.Second}
		if err := m.Validate(); err != nil {
			return err
		}
		if len(cfg.Shares.NFS) > 0 {
			// A short NFSv4 grace period: clients reclaim their state on the
			// new active within seconds (docs/shares.md has the trade-off).
			changed, err := m.WriteNFSConf(nfsGrace, nfsGrace)
			if err != nil {
				return err
			}
			if changed {
				log.Warn("wrote the NFS grace settings; they apply when the NFS server restarts", "grace", nfsGrace)
			}
		}
		svc.Shares = m
	}
	var tickler failover.ConnTickler
	if cfg.VIP.Enabled() {
		v := &vip.VIP{Prefix: cfg.VIP.Prefix(), Interface: cfg.VIP.Interface, Log: log}
		if err := v.Validate(); err != nil {
			return err
		}
		svc.VIP, tickler = v, v
	}

	init := failover.Persisted{State: failover.Passive}
	if cfg.Peer.InitialRole == config.RoleActive {
		init.State = failover.Active
	}
	paths := []failover.PathConfig{{Path: failover.PathLink, Listen: cfg.Node.ListenLink, PeerAddr: cfg.Peer.LinkAddress}}
	if cfg.Node.ListenPublic != "" && cfg.Peer.PublicAddress != "" {
		paths = append(paths, failover.PathConfig{Path: failover.PathPublic, Listen: cfg.Node.ListenPublic, PeerAddr: cfg.Peer.PublicAddress})
	}
	node := &failover.Node{
		Options: failover.Options{Name: cfg.Node.Name, PeerName: cfg.Peer.Name, Timing: failover.Timing{
			Interval: time.Duration(cfg.Heartbeat.Interval), Threshold: time.Duration(cfg.Heartbeat.LossThreshold),
			Margin: time.Duration(cfg.Heartbeat.FenceMargin)}},
		Persist:   failover.StateFile{Path: filepath.Join(cfg.Node.StateDir, "state.json")},
		Initial:   init,
		Paths:     paths,
		Sec:       sec,
		ListenSec: lsec,
		Exec:      svc,
		Tickler:   tickler,
		Data: &zfsrpc.Server{Receiver: changes.Receiver(&zfsrepl.LocalReceiver{ZFS: z, Sender: cfg.Peer.Name}),
			Roots: roots, Log: log, Drill: newDrillResponder(cfg, z)},
		Stall:      time.Duration(cfg.Transport.StallTimeout),
		Epochs:     epochs,
		OnChange:   rep.onChange,
		Newest:     rep.Newest,
		RootStatus: rep.rootStatus,
		Rescues:    rep.rescues,
		Transfers:  rep.transfers,
		Failback:   cfg.Failback == config.FailbackAuto,
		Preferred:  cfg.Peer.InitialRole == config.RoleActive,
		Log:        log,
	}
	if cfg.VIP.Enabled() {
		iface := cfg.VIP.Interface
		node.Carrier = func(ctx context.Context, report func(bool)) error { return vip.WatchCarrier(ctx, iface, report) }
		if cfg.VIP.Routes() {
			gw, err := peerLinkIP(cfg.Peer.LinkAddress)
			if err != nil {
				log.Warn("the VIP cannot be routed through the peer; a node whose public network goes down hands over instead", "err", err)
			} else {
				svc.PeerGateway = gw
				node.Options.Route = true
			}
		}
	}
	if len(cfg.Tiebreaker.Targets) > 0 {
		pr := &probe.Prober{Targets: cfg.Tiebreaker.Targets, Timeout: time.Duration(cfg.Tiebreaker.Timeout), Log: log}
		node.Probe = func(ctx context.Context) error {
			if r := pr.ProbeOnce(ctx); !r.Reachable {
				return errors.New("no tiebreaker target answered")
			}
			return nil
		}
	}
	if wc, ok := witness.FromConfig(cfg); ok {
		w, err := witness.New(wc)
		if err != nil {
			return err
		}
		defer w.Close()
		node.Witness = witnessArbiter{w}
	}
	if cfg.Watchdog.Device != "" {
		wd, err := watchdog.Open(cfg.Watchdog.Device, watchdog.Options{Log: log})
		if err != nil {
			return err
		}
		// Closed (magic close) only on a clean return; a crash leaves the
		// watchdog armed so the node reboots.
		defer wd.Close()
		node.Watchdog = &everyPinger{p: wd, every: time.Duration(cfg.Watchdog.Interval)}
	}
	node.Watchdog = watchdogs(node.Watchdog, sd.pinger())
	serveMetrics := observe(cfg, node, svc, rep, roots, log)
	// The peer handing over to us: its final receive and our promotion
	// follow within seconds, and a retention destroy beside them is a txg
	// both wait for.
	peerHandsOver := func() bool { st, ok := node.PeerState(); return ok && st == failover.Demoting }
	changes.QuietWhen = peerHandsOver
	// Its final receive has just ended: read the promotion plan while its
	// ask is on the way.
	changes.Received = func() {
		if peerHandsOver() {
			go svc.PrepareHandover(ctx)
		}
	}
	if err := node.Init(time.Now()); err != nil {
		return err
	}
	rep.refreshNewest(ctx)
	rep.refreshRescues(ctx)
	rep.onChange(node.State()) // transitions call it from then on
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- failover.ServeControl(ctx, cfg.Node.ControlSocket, node, log) }()
	go newReloader(path, cfg, level, log, sd.notify).watch(ctx)
	go notifyReady(ctx, sd, cfg.Node.ControlSocket, len(paths))
	if serveMetrics != nil {
		go serveMetrics(ctx)
	}
	err = node.Run(ctx)
	sd.notify("STOPPING=1")
	rep.stop()
	cancel()
	if cerr := <-errc; err == nil && cerr != nil && !errors.Is(cerr, context.Canceled) {
		err = cerr
	}
	return err
}

// security returns the dialing and the listening side's protection.
func security(cfg *config.Config, log *slog.Logger) (dial, listen transport.Security, err error) {
	t := cfg.Transport.TLS
	if t.InsecurePlaintext {
		p := transport.Security{Plaintext: true}
		return p, p, nil
	}
	files, err := transport.LoadTLS(t.Cert, t.Key, t.PeerCert)
	if err != nil {
		return dial, listen, err
	}
	log.Info("tls", "fingerprint", files.Fingerprint(), "peer_fingerprint", files.PeerFingerprint())
	return transport.Security{TLS: files.ClientConfig()}, transport.Security{TLS: files.ServerConfig()}, nil
}

// everyPinger pets at most every `every` (watchdog.interval): the node's
// loop ticks far more often, and each pet is a write to the device.
type everyPinger struct {
	p     failover.Pinger
	every time.Duration
	last  time.Time
}

func (e *everyPinger) Pet() error {
	now := time.Now()
	if !e.last.IsZero() && now.Sub(e.last) < e.every {
		return nil
	}
	e.last = now
	return e.p.Pet()
}

// witnessArbiter adapts the etcd witness to the node's Arbiter.
type witnessArbiter struct{ w *witness.Witness }

func (a witnessArbiter) Campaign(ctx context.Context) (int64, error) {
	l, err := a.w.Campaign(ctx)
	if err != nil {
		return 0, err
	}
	return l.Token, nil
}
func (a witnessArbiter) Held() (int64, bool)              { return a.w.Held() }
func (a witnessArbiter) Resign(ctx context.Context) error { return a.w.Resign(ctx) }

// replicator runs the snapshot -> replicate -> prune cycle of every root
// while this node serves.
type replicator struct {
	cfg   *config.Config
	z     zfsrepl.ZFS
	sec   transport.Security
	log   *slog.Logger
	locks *scheduler.Locks

	mu         sync.Mutex
	cancel     context.CancelFunc
	stopFn     func()
	mode       replicatorMode
	eng        *zfsrepl.Engine
	newest     atomic.Value // string
	rescueList atomic.Value // []string
	inflight   sync.Map     // target dataset -> *failover.Transfer, under tmu
	throughput sync.Map     // root source -> float64 bytes/s of its last sending cycle
	lastPrune  sync.Map     // root source -> time.Time its source retention last ran
	// handingOver: this node is demoting; a cycle in flight finishes its
	// transfers without confirming them (the final cycle follows).
	handingOver atomic.Bool
	changes     *failover.PoolChanges
	tmu         sync.Mutex
	stats       *transport.StreamStats // send stream counters for metrics; nil: none
	// peerNotReady: the last cycle's peer refused for now (rejoining);
	// the next lists the peer before it snapshots (Cycle.ReceiverFirst).
	peerNotReady atomic.Bool
	// names carries snapshot names from cycle to cycle while this node
	// serves (scheduler.Cycle.Names); nil until the first cycle of a
	// serving period, and again once the node promotes or turns passive.
	names atomic.Pointer[scheduler.Names]
	// quietUntil (unix ns): the cadence skips its runs until then, after
	// a promotion (servingSettle).
	quietUntil atomic.Int64
	clientOnce sync.Once
	rpc        *zfsrpc.Client
}

func (r *replicator) engine() *zfsrepl.Engine {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.eng == nil {
		r.eng = &zfsrepl.Engine{ZFS: r.z, Peer: r.cfg.Peer.Name, MaxStreamBytes: int64(r.cfg.Replication.MaxStreamSize), Log: r.log,
			OnProgress: r.progress, EstimateAfter: time.Second, HandingOver: r.handingOver.Load,
			Plan: zfsrepl.PlanOptions{InitialAll: r.cfg.Replication.InitialSend == config.InitialSendAll, Raw: rawPolicy[r.cfg.Replication.Raw]}}
	}
	return r.eng
}

var rawPolicy = map[config.RawMode]zfsrepl.RawPolicy{
	config.RawAuto: zfsrepl.RawAuto, config.RawAlways: zfsrepl.RawAlways, config.RawNever: zfsrepl.RawNever}

var compressionMode = map[config.Compression]transport.Mode{
	config.CompressionZstd: transport.ModeZstd, config.CompressionLZ4: transport.ModeLZ4,
	config.CompressionNone: transport.ModeNone, config.CompressionAuto: transport.ModeAuto}

// client reaches the peer's zfsrpc server: the heartbeat link, then the
// public path when data_over_public allows it. One client for the daemon's
// life: it remembers a link that did not answer (zfsrpc.Client.dial).
func (r *replicator) client() *zfsrpc.Client {
	r.clientOnce.Do(func() { r.rpc = r.newClient() })
	return r.rpc
}

func (r *replicator) newClient() *zfsrpc.Client {
	c := &zfsrpc.Client{Addr: r.cfg.Peer.LinkAddress, Local: r.cfg.Node.Name, Peer: r.cfg.Peer.Name, Sec: r.sec, Log: r.log,
		Stream: transport.StreamOptions{Mode: compressionMode[r.cfg.Transport.Compression], Stall: time.Duration(r.cfg.Transport.StallTimeout), Level: r.cfg.Transport.ZstdLevel,
			BytesPerSec: int64(r.cfg.Transport.BandwidthLimit), Stats: r.stats}}
	if r.cfg.Replication.DataOverPublic {
		c.Fallback = r.cfg.Peer.PublicAddress
	}
	return c
}

func (r *replicator) cycles() ([]*scheduler.Cycle, error) {
	src, err := scheduler.NewGrid(r.cfg.Retention.Source)
	if err != nil {
		return nil, err
	}
	rcv := r.client()
	names := r.names.Load()
	if names == nil {
		r.names.CompareAndSwap(nil, &scheduler.Names{})
		names = r.names.Load()
	}
	var out []*scheduler.Cycle
	for _, root := range r.cfg.Replication.Roots {
		out = append(out, &scheduler.Cycle{ZFS: r.z, Engine: r.engine(), Receiver: rcv, SkipPrune: r.handingOver.Load, Names: names,
			Root: zfsrepl.Root{Source: root.Source, Target: root.Target}, Source: src,
			PruneUnreplicatedAbovePoolPercent: r.cfg.Retention.PruneUnreplicatedAbovePoolPercent,
			Clock:                             scheduler.RealClock{}, Locks: r.locks, Log: r.log})
	}
	return out, nil
}

func (r *replicator) runAll(ctx context.Context) error {
	cs, err := r.cycles()
	if err != nil {
		return err
	}
	var errs []error
	for i, c := range cs {
		if r.handingOver.Load() {
			break // the handover's final cycle covers every root
		}
		// Source retention runs every sourcePruneEvery, not every cycle:
		// its listing and destroys would lengthen each cycle, and a longer
		// cycle is more data behind at a fault.
		last, _ := r.lastPrune.Load(c.Root.Source)
		if t, ok := last.(time.Time); ok && time.Since(t) < sourcePruneEvery {
			c.NoPrune = true
		}
		before, start := r.sent(c.Root.Source), time.Now()
		c.ReceiverFirst = r.peerNotReady.Load()
		res, err := c.Run(ctx)
		r.peerNotReady.Store(errors.Is(err, zfsrepl.ErrPeerNotReady))
		if !c.NoPrune && ctx.Err() == nil && !r.handingOver.Load() {
			r.lastPrune.Store(c.Root.Source, start)
		}
		if err != nil {
			errs = append(errs, err)
		}
		if moved := r.sent(c.Root.Source) - before; moved > 0 {
			r.throughput.Store(c.Root.Source, float64(moved)/time.Since(start).Seconds())
		}
		if i == 0 && res.Snapshot != "" {
			r.newest.Store(res.Snapshot)
		}
	}
	return errors.Join(errs...)
}

// peerTree lists a root on the peer (its zfsrpc server answers for its own
// roots), for a rejoin.
func (r *replicator) peerTree(ctx context.Context, root string) ([]zfsrepl.TreeDataset, error) {
	c := r.client()
	return c.Tree(ctx, root)
}

// rescues is the cached list of rescue datasets, for zrepl-ha status.
func (r *replicator) rescues() []string {
	v, _ := r.rescueList.Load().([]string)
	return v
}

func (r *replicator) refreshRescues(ctx context.Context) {
	pools := map[string]bool{}
	var list []string
	for _, root := range r.cfg.Replication.Roots {
		p, _, _ := strings.Cut(root.Source, "/")
		if !pools[p] {
			pools[p] = true
			list = append(list, p)
		}
	}
	if rs, err := failover.Rescues(ctx, r.z, list); err == nil {
		r.rescueList.Store(rs)
	}
}

// progress records the engine's streams in flight for status --watch; it
// is called from the engine's goroutines and must be quick.
func (r *replicator) progress(p zfsrepl.Progress) {
	r.tmu.Lock()
	defer r.tmu.Unlock()
	if p.Done {
		r.inflight.Delete(p.Step.Target)
		return
	}
	now := time.Now()
	v, ok := r.inflight.Load(p.Step.Target)
	if !ok {
		// Not moved yet: the first report may come late (after the size
		// estimate) and says nothing of when its bytes went.
		v = &failover.Transfer{Dataset: p.Step.Target, Kind: p.Step.Kind.String(), Started: now}
		r.inflight.Store(p.Step.Target, v)
	} else if t := v.(*failover.Transfer); p.Bytes > t.Bytes {
		t.Moved = now
	}
	t := v.(*failover.Transfer)
	t.Bytes, t.Total = p.Bytes, p.Total
	if d := time.Since(t.Started).Seconds(); d > 0 {
		t.Rate = float64(p.Bytes) / d
	}
}

func (r *replicator) transfers() []failover.Transfer {
	r.tmu.Lock()
	defer r.tmu.Unlock()
	var out []failover.Transfer
	r.inflight.Range(func(_, v any) bool {
		out = append(out, *v.(*failover.Transfer))
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Dataset < out[j].Dataset })
	return out
}

// rootStatus is the engine's view of each root, for zrepl-ha status.
func (r *replicator) rootStatus() []failover.RootStatus {
	var out []failover.RootStatus
	inflight := r.transfers()
	for _, s := range r.engine().Status() {
		rs := failover.RootStatus{Source: s.Root.Source, Target: s.Root.Target, LatestSnapshot: s.LatestSnapshot,
			LatestConsistent: s.LatestConsistent, Lag: s.Lag, LastCycle: s.LastCycle, LastError: s.LastError,
			PeerNotReady: s.PeerNotReady, Conflicts: s.Conflicts, BytesSent: s.BytesSent}
		for _, t := range inflight {
			if (t.Dataset == s.Root.Target || strings.HasPrefix(t.Dataset, s.Root.Target+"/")) && t.Total > t.Bytes {
				rs.Pending += t.Total - t.Bytes
			}
		}
		if v, ok := r.throughput.Load(s.Root.Source); ok {
			rs.Throughput = v.(float64)
		}
		out = append(out, rs)
	}
	return out
}

// sent is the engine's byte count for a root so far.
func (r *replicator) sent(root string) int64 {
	for _, s := range r.engine().Status() {
		if s.Root.Source == root {
			return s.BytesSent
		}
	}
	return 0
}

// Newest is the newest snapshot of the first root this node knows of, for
// its heartbeats: the last one it took while serving, the latest
// consistent one of its replica otherwise.
func (r *replicator) Newest() string {
	s, _ := r.newest.Load().(string)
	return s
}

func (r *replicator) refreshNewest(ctx context.Context) {
	if len(r.cfg.Replication.Roots) == 0 {
		return
	}
	if tree, err := r.z.Tree(ctx, r.cfg.Replication.Roots[0].Source); err == nil {
		if s := zfsrepl.LatestConsistent(tree); s != "" {
			r.newest.Store(s)
		}
	}
}

// final is the handover's last cycle.
//
// It succeeds when the peer holds each root's newest snapshot: a pruning
// error after the replication (a snapshot that a rescue clone depends on
// cannot be destroyed) must not abort a handover whose data is across.
func (r *replicator) final(ctx context.Context) error {
	cs, err := r.cycles()
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range cs {
		// Writes are stopped: this snapshot is the last state, and written
		// may not show sync writes yet (see Cycle.ForceSnapshot).
		c.ForceSnapshot = true
		c.NoPrune = true
		c.Final = true
		c.SnapshotUnlocked = true
		res, err := c.Run(ctx)
		if err == nil {
			continue
		}
		if rep := res.Report; rep != nil && rep.LatestSnapshot != "" && rep.LatestConsistent == rep.LatestSnapshot {
			r.log.Warn("final cycle: the peer has the newest snapshot; ignoring the error after it", "root", c.Root.Source, "snapshot", rep.LatestSnapshot, "err", err)
			continue
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// onChange runs the snapshot -> replicate -> prune cadence while this node
// serves, and target retention on its own replica roots otherwise. While a
// promotion or a handover runs it runs neither: on a small CPU a listing
// or a prune beside the promotion's zfs commands is failover time, and a
// handover runs its own final cycle. It is called from the failover loop
// and must not block: stopping waits for a running cycle, so it happens in
// the background.
func (r *replicator) onChange(s failover.State, _ uint64) {
	mode := modeFor(s)
	r.handingOver.Store(s == failover.Demoting)
	if s == failover.Promoting || mode == modePrune {
		r.names.Store(nil) // snapshots received as a passive are not in it
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mode == mode && (r.stopFn != nil || mode == modeIdle) {
		return
	}
	if mode == modeServe && r.mode == modeIdle {
		// Promoted (or resumed serving) just now: clients reconnect (NFS mount
		// and lookups, SMB sessions) while its pool is busiest, and a
		// cycle's listing and snapshot would take CPU from them on a small
		// machine. The peer is gone or rejoining, so nothing would be
		// replicated yet anyway.
		r.quietUntil.Store(time.Now().Add(servingSettle).UnixNano())
	}
	if r.stopFn != nil {
		cancel, stop := r.cancel, r.stopFn
		r.cancel, r.stopFn = nil, nil
		if s == failover.Demoting {
			go r.drain(cancel, stop)
		} else {
			cancel()
			go stop()
		}
	}
	r.mode = mode
	if mode == modeIdle {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	spec, job := r.cfg.Snapshots.Cadence, func() {
		if until := r.quietUntil.Load(); time.Now().UnixNano() < until {
			r.log.Debug("replication cycle skipped: the clients of a node that just began serving reconnect first", "until", time.Unix(0, until).Format(time.RFC3339Nano))
			return
		}
		if err := r.runAll(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("replication cycle", "err", err)
		}
	}
	if mode == modePrune {
		spec, job = receiverPruneCadence, func() { r.pruneReplicas(ctx) }
	}
	stop, err := scheduler.Schedule(spec, job, r.log)
	if err != nil {
		cancel()
		r.log.Error("cannot schedule", "cadence", spec, "err", err)
		return
	}
	r.cancel, r.stopFn = cancel, stop
}

// replicatorMode is what the replicator runs in a state.
type replicatorMode int

const (
	modeUnset replicatorMode = iota
	modeServe                // the cadence: snapshot, replicate, prune
	modePrune                // target retention on the replicas
	modeIdle                 // nothing: a promotion or a handover owns the node
)

func modeFor(s failover.State) replicatorMode {
	switch s {
	case failover.Active, failover.Standalone:
		return modeServe
	case failover.Promoting, failover.Demoting:
		return modeIdle
	}
	return modePrune
}

// drain stops the cadence for a handover. A transfer in flight is left to
// finish (without its confirm): cut, it would leave a partial receive the
// final cycle must resume first, one more step on each side. A cycle that
// is only listing or snapshotting is cancelled at once: the final cycle
// does that work again anyway, and the engine starts no new transfer once
// a handover has begun. A transfer that has sent less than drainWorth
// and whose bytes have not grown for drainStill is cut too: it is not
// moving, and it has sent too little to be worth a resume. drainMax is
// only a backstop.
func (r *replicator) drain(cancel context.CancelFunc, stop func()) {
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	defer func() { cancel(); <-done }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(drainMax)
	for {
		select {
		case <-done:
			return
		case <-tick.C:
			if !moving(r.transfers(), time.Now()) {
				return
			}
			if time.Now().After(deadline) {
				r.log.Warn("a transfer in flight did not end for the handover; cancelling it", "waited", drainMax)
				return
			}
		}
	}
}

const drainMax = 5 * time.Minute

// drainStill: a transfer whose bytes have not grown from one progress
// report to the next within this long is not moving, and a handover does
// not wait for it. Lab: a zfs send starved by an SMB copy on the same
// emulated CPU put out 1,396 bytes in 17 s; the handover waited 5 s for it
// until its stall timeout ended it, then 4.8 s when the first report (late,
// after the size estimate) counted as movement. Cutting a transfer that
// has just begun costs little: the final cycle sends its data again.
const drainStill = 3 * time.Second

// drainWorth: a transfer that has sent this much is waited for however
// long it pauses (a zfs recv waiting for a transaction group can hold a
// stream for seconds in a slow guest): cut, it would leave a resume for
// the final cycle. The stall timeout ends one that is really stuck.
const drainWorth = 1 << 20

// moving tells whether any transfer is worth waiting for: it has sent
// drainWorth, or it moved within drainStill.
func moving(ts []failover.Transfer, now time.Time) bool {
	for _, t := range ts {
		if t.Bytes >= drainWorth || now.Sub(t.Moved) < drainStill {
			return true
		}
	}
	return false
}

// sourcePruneEvery: an active applies source retention at most this often
// (at the end of the first cycle after it has passed), so a snapshot may
// outlive its grid slot by this much.
const sourcePruneEvery = 30 * time.Second

// servingSettle: after a promotion the cadence waits this long before its
// first cycle (replicator.onChange). rejoinSettle: the first rejoin after
// this node's handover waits this long before it lists the peer
// (failover.Services.RejoinSettle). Both keep zfs listings off the new
// active's CPU while its clients reconnect: in the lab (one emulated CPU
// per node) two listings of about 2 s each ran there right after the VIP
// came up, and the first client read came about 2 s after it.
const (
	servingSettle = 4 * time.Second
	rejoinSettle  = 3 * time.Second
)

// receiverPruneCadence: a passive prunes its replicas this often; received
// snapshots arrive at the active's cadence, so this need not keep up with
// it snapshot by snapshot.
const receiverPruneCadence = "@every 30s"

func (r *replicator) pruneReplicas(ctx context.Context) {
	grid, err := scheduler.NewGrid(r.cfg.Retention.Target)
	if err != nil {
		r.log.Error("target retention", "err", err)
		return
	}
	r.refreshNewest(ctx)
	r.refreshRescues(ctx)
	// Only destroys count as changes to the pool: a retention run that
	// only lists must not spoil a promotion plan read ahead.
	z := r.z
	if r.changes != nil {
		z = r.changes.ZFS(r.z)
	}
	for _, root := range r.cfg.Replication.Roots {
		unlock := r.locks.Lock(root.Source)
		d, refused, err := scheduler.PruneReceiver(ctx, z, root.Source, grid, time.Now())
		unlock()
		if errors.Is(err, failover.ErrQuiet) {
			r.log.Debug("target retention", "root", root.Source, "err", err)
		} else if err != nil && ctx.Err() == nil {
			r.log.Warn("target retention", "root", root.Source, "err", err)
		}
		if d > 0 {
			r.log.Info("target retention", "root", root.Source, "destroyed", d, "kept_by_guard", refused)
		}
	}
}

func (r *replicator) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopFn != nil {
		r.cancel()
		r.stopFn()
		r.cancel, r.stopFn = nil, nil
	}
}

// peerLinkIP is the peer's address on the heartbeat link, from
// peer.link_address (host:port): the next hop when one node routes the
// VIP for the other. A host name is resolved once, at start.
func peerLinkIP(hostport string) (netip.Addr, error) {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("peer.link_address %q: %w", hostport, err)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a = a.Unmap(); !a.Is4() {
			return netip.Addr{}, fmt.Errorf("peer.link_address %q is not IPv4: the VIP is routed to an IPv4 next hop", hostport)
		}
		return a, nil
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("peer.link_address %q: %w", hostport, err)
	}
	for _, ip := range ips {
		if a, ok := netip.AddrFromSlice(ip); ok && a.Unmap().Is4() {
			return a.Unmap(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("peer.link_address %q has no IPv4 address", hostport)
}
