package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v3"

	"github.com/zrepl-ha/zrepl-ha/failover"
	"github.com/zrepl-ha/zrepl-ha/internal/config"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

func newPromoteCommand() *cli.Command {
	return &cli.Command{
		Name:  "promote",
		Usage: "show what promoting this node would do now (--dry-run)",
		Description: "Lists, for each replicated root, the snapshot promotion would serve (the latest\n" +
			"consistent one), the partial receives it would abort and the space they hold,\n" +
			"and the datasets it would roll back with the snapshots and bytes that would be\n" +
			"discarded. It reads ZFS only and changes nothing; the daemon's promotion runs\n" +
			"the same plan. To promote, use 'zrepl-ha failover --force'.\n\n" +
			"Example:\n" +
			"   zrepl-ha --config /etc/zrepl-ha/beta.yaml promote --dry-run\n" +
			"   zrepl-ha promote --dry-run --json",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "dry-run", Usage: "required: only show the plan"},
			&cli.BoolFlag{Name: "json", Usage: "print the plan as JSON"},
		},
		Action: func(ctx context.Context, c *cli.Command) error {
			if !c.Bool("dry-run") {
				return &usageError{"promote only shows a plan and needs --dry-run; to promote this node, run 'zrepl-ha failover --force'"}
			}
			cfg, err := config.Load(c.String("config"))
			if err != nil {
				return err
			}
			return runPromoteDryRun(ctx, c.Root().Writer, cfg, zfsrepl.NewExec(zfsrepl.Binaries{}, nil), c.Bool("json"))
		},
	}
}

func runPromoteDryRun(ctx context.Context, out io.Writer, cfg *config.Config, z zfsrepl.ZFS, asJSON bool) error {
	svc := &failover.Services{ZFS: z}
	for _, r := range cfg.Replication.Roots {
		svc.Roots = append(svc.Roots, r.Source)
	}
	plan, err := svc.Plan(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(plan)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "promotion plan for %s (dry run: nothing changed)\n", cfg.Node.Name)
	for _, r := range plan.Roots {
		if !r.Replica {
			fmt.Fprintf(&b, "root %s: writable, this node has been serving it: no rollback; newest consistent snapshot %s\n", r.Root, orNone(r.Snapshot))
		} else {
			fmt.Fprintf(&b, "root %s: replica of the peer; serve @%s on all %d datasets\n", r.Root, r.Snapshot, r.Datasets)
		}
		for _, a := range r.Aborts {
			fmt.Fprintf(&b, "  abort the partial receive into %s (%s discarded)\n", a.Dataset, humanBytes(a.Bytes))
		}
		for _, rb := range r.Rollbacks {
			fmt.Fprintf(&b, "  roll back %s to @%s", rb.Dataset, rb.To)
			if len(rb.Destroy) > 0 {
				fmt.Fprintf(&b, ", destroying @%s", strings.Join(rb.Destroy, ", @"))
			}
			fmt.Fprintf(&b, " (%s written after it discarded)\n", humanBytes(rb.Bytes))
		}
		if r.Replica && len(r.Aborts)+len(r.Rollbacks) == 0 {
			b.WriteString("  nothing to abort or roll back\n")
		}
		b.WriteString("  then: readonly=off, canmount=on, mount, record the new epoch\n")
	}
	if cfg.VIP.Enabled() {
		fmt.Fprintf(&b, "bring up the VIP %s on %s\n", cfg.VIP.Address, cfg.VIP.Interface)
	}
	_, err = io.WriteString(out, b.String())
	return err
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return "@" + s
}
