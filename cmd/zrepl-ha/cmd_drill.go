package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/zrepl-ha/zrepl-ha/failover"
	"github.com/zrepl-ha/zrepl-ha/failover/drill"
	"github.com/zrepl-ha/zrepl-ha/failover/shares"
	"github.com/zrepl-ha/zrepl-ha/failover/vip"
	"github.com/zrepl-ha/zrepl-ha/internal/config"
	"github.com/zrepl-ha/zrepl-ha/transport/zfsrpc"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

type drillOptions struct {
	ConfigPath string
	Socket     string // the daemon's control socket, for the role; "" = the config's
	JSON       bool
	MaxLag     time.Duration
	Files      int
	MountDir   string
}

// drillMountDir holds the clones' mountpoints: on tmpfs, so a reboot
// leaves no directories behind (leftover clones are destroyed by the next
// drill).
const drillMountDir = "/run/zrepl-ha/drill"

func newDrillCommand() *cli.Command {
	return &cli.Command{
		Name:  "drill",
		Usage: "test on the passive that a failover would work, without one",
		Description: "Run on the passive while the pair runs. It clones the latest consistent\n" +
			"snapshot of each replicated root, mounts the clone read-only under\n" +
			drillMountDir + ", compares its file count and the checksums of a sample\n" +
			"of files with the active's copy of the same snapshot, and destroys the\n" +
			"clone; it checks that the shares would apply, that the tiebreaker and the\n" +
			"VIP answer, and that the nodes are compatible (OpenZFS version, pool\n" +
			"features, space, share and VIP config). It prints every check and\n" +
			"\"failover ready: yes\" or \"no\". Nothing the pair serves changes.\n" +
			"Exits 0 when ready, 1 when not (or when the drill cannot run). See the\n" +
			"Drill section of docs/operability.md.\n\n" +
			"Example:\n" +
			"   zrepl-ha drill\n" +
			"   zrepl-ha --config /etc/zrepl-ha/beta.yaml drill --json | jq .failover_ready",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
			&cli.DurationFlag{Name: "max-lag", Value: drill.DefaultMaxLag, Usage: "the oldest snapshot of the active the passive may lack"},
			&cli.IntFlag{Name: "files", Value: drill.DefaultSampleFiles, Usage: fmt.Sprintf("files sampled per dataset (at most %d)", zfsrpc.MaxDrillPaths)},
			socketFlag(),
		},
		Action: func(ctx context.Context, c *cli.Command) error {
			if c.Args().Present() {
				return &usageError{fmt.Sprintf("drill takes no arguments, got %q", c.Args().Slice())}
			}
			opts := drillOptions{ConfigPath: c.String("config"), Socket: c.String("socket"), JSON: c.Bool("json"),
				MaxLag: c.Duration("max-lag"), Files: int(c.Int("files")), MountDir: drillMountDir}
			return runDrill(ctx, c.Root().Writer, c.Root().ErrWriter, opts)
		},
	}
}

// errNotReady is the drill's "no": the report is printed, the exit code 1.
type errNotReady struct{ failed int }

func (e *errNotReady) Error() string {
	return fmt.Sprintf("failover ready: no (%d checks failed)", e.failed)
}
func (e *errNotReady) ExitCode() int { return exitFailure }

func runDrill(ctx context.Context, out, errw io.Writer, o drillOptions) error {
	cfg, err := config.Load(o.ConfigPath)
	if err != nil {
		return err
	}
	if o.Files < 1 || o.Files > zfsrpc.MaxDrillPaths {
		return &usageError{fmt.Sprintf("--files %d: want 1..%d", o.Files, zfsrpc.MaxDrillPaths)}
	}
	log, _ := newLevelLogger(cfg, errw)
	z := transferExec(log)
	sec, _, err := security(cfg, log)
	if err != nil {
		return err
	}
	peer := &zfsrpc.Client{Addr: cfg.Peer.LinkAddress, Local: cfg.Node.Name, Peer: cfg.Peer.Name, Sec: sec, Log: log}
	if cfg.Replication.DataOverPublic {
		peer.Fallback = cfg.Peer.PublicAddress
	}
	socket := o.Socket
	if socket == "" {
		socket = cfg.Node.ControlSocket
	}
	opts := drillOptionsFromConfig(cfg, z, peer)
	opts.MountDir, opts.MaxLag, opts.Log = o.MountDir, o.MaxLag, log
	opts.Sample.Files = o.Files
	opts.Role = func(ctx context.Context) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, controlTimeout)
		defer cancel()
		st, err := failover.ControlClient{Path: socket}.Status(ctx)
		return st.Role, err
	}
	rep, err := drill.Run(ctx, opts)
	if err != nil {
		return err
	}
	return printDrill(out, rep, o.JSON)
}

// drillOptionsFromConfig builds what the drill checks from the config;
// the caller adds the role, the mount directory and the bounds.
func drillOptionsFromConfig(cfg *config.Config, z zfsrepl.ZFS, peer drill.Peer) drill.Options {
	o := drill.Options{Roots: cfg.Replication.Roots, ZFS: z, Peer: peer, Local: newDrillResponder(cfg, z)}
	if len(cfg.Shares.NFS)+len(cfg.Shares.SMB) > 0 {
		m := &shares.Manager{NFS: cfg.Shares.NFS, SMB: cfg.Shares.SMB, ZFS: z}
		o.Shares = drill.SharesCheck(m, sourceRoots(cfg), nil)
	}
	if len(cfg.Tiebreaker.Targets) > 0 {
		o.Tiebreaker = drill.TiebreakerCheck(cfg.Tiebreaker.Targets, time.Duration(cfg.Tiebreaker.Timeout))
	}
	if cfg.VIP.Enabled() {
		v := &vip.VIP{Prefix: cfg.VIP.Prefix(), Interface: cfg.VIP.Interface}
		o.VIP = drill.VIPCheck(cfg.VIP.Prefix().Addr(), time.Duration(cfg.Tiebreaker.Timeout), v.Held)
	}
	return o
}

func sourceRoots(cfg *config.Config) []string {
	var roots []string
	for _, r := range cfg.Replication.Roots {
		roots = append(roots, r.Source)
	}
	return roots
}

// newDrillResponder answers the peer's drill calls in the daemon
// (zfsrpc.Server.Drill) and gives the local facts to `zrepl-ha drill`.
func newDrillResponder(cfg *config.Config, z zfsrepl.ZFS) *drill.Responder {
	sh, vp := drill.Fingerprints(cfg)
	return &drill.Responder{Node: cfg.Node.Name, ZFS: z, Roots: sourceRoots(cfg), System: drill.Host{}, Shares: sh, VIP: vp}
}

func printDrill(out io.Writer, rep drill.Report, asJSON bool) error {
	if asJSON {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return fmt.Errorf("encoding the drill report: %w", err)
		}
		if _, err := fmt.Fprintf(out, "%s\n", data); err != nil {
			return err
		}
	} else if _, err := io.WriteString(out, renderDrill(rep)); err != nil {
		return err
	}
	if !rep.Ready {
		return &errNotReady{failed: len(rep.Failed())}
	}
	return nil
}

// renderDrill is the human report: one line per check, then the verdict.
func renderDrill(rep drill.Report) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, c := range rep.Checks {
		mark := "ok"
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", mark, c.Name, c.Reason)
	}
	tw.Flush()
	verdict := "yes"
	if !rep.Ready {
		verdict = "no"
	}
	fmt.Fprintf(&b, "failover ready: %s\n", verdict)
	return b.String()
}
