package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/zrepl-ha/zrepl-ha/internal/config"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

// replicateOptions are the replicate command's flags as given.
type replicateOptions struct {
	Once          bool
	From, To      string
	Snapshot      bool
	Initial       string // "newest" or "all"
	MaxStreamSize string // a size, as config.ParseByteSize reads it
	PeerName      string
	Progress      string // auto, always or never
}

// replicateSettings are replicateOptions checked and parsed.
type replicateSettings struct {
	root      zfsrepl.Root
	snapshot  bool
	plan      zfsrepl.PlanOptions
	maxStream int64
	peer      string
	progress  string
}

// defaultPeerName tags the cursor bookmarks and holds of a local copy.
const defaultPeerName = "local"

// peerNameRE is the rule for node names in the configuration (peer.name):
// no '_', so that one name's cursor prefix is never a prefix of another's.
var peerNameRE = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)

func newReplicateCommand() *cli.Command {
	return &cli.Command{
		Name:      "replicate",
		Usage:     "replicate a dataset tree into another pool of this machine",
		UsageText: "zrepl-ha replicate --once --from SOURCE_ROOT --to TARGET_ROOT [--snapshot] [options]",
		Description: "Brings TARGET_ROOT up to the newest zrepl-ha snapshot of SOURCE_ROOT, recursively,\n" +
			"on pools this machine has: a local pool-to-pool copy, e.g. a backup to a third\n" +
			"pool. With --snapshot it first takes a new zrepl-ha snapshot of SOURCE_ROOT.\n\n" +
			"It works like the replication to the peer: datasets are matched by snapshot guid,\n" +
			"the first run sends full streams and later runs incrementals, received datasets\n" +
			"are readonly=on, canmount=noauto and never mounted, and nothing is ever destroyed\n" +
			"or overwritten: a target dataset that diverged is reported as a conflict (exit\n" +
			"code 1). An interrupted transfer is resumed by running the same command again.\n\n" +
			"--peer-name tags the cursor bookmarks on the source and the holds on the target.\n" +
			"Use one name per target, and never the daemon's peer.name: that replication's\n" +
			"cursor would be moved.\n\n" +
			"Only --once exists for now: continuous replication is the daemon's job.\n\n" +
			"Example:\n" +
			"   zrepl-ha replicate --once --snapshot --from tank/data --to backup/data\n" +
			"   zrepl-ha replicate --once --from tank/data --to backup/data --initial all --progress never",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "once", Usage: "replicate once and exit (required: the only mode for now)"},
			&cli.StringFlag{Name: "from", Usage: "source root `DATASET`, replicated with everything below it"},
			&cli.StringFlag{Name: "to", Usage: "target root `DATASET`; created by the first run"},
			&cli.BoolFlag{Name: "snapshot", Usage: "first take a new zrepl-ha snapshot of --from (recursive, atomic)"},
			&cli.StringFlag{Name: "initial", Value: "newest", Usage: "what the first replication of a dataset sends: `WHICH` is newest (the newest snapshot only) or all (every zrepl-ha snapshot)"},
			&cli.StringFlag{Name: "max-stream-size", Value: config.DefaultMaxStreamSize.String(), Usage: "split catch-up streams larger than `SIZE` (e.g. 4GiB, 500M)"},
			&cli.StringFlag{Name: "peer-name", Value: defaultPeerName, Usage: "`NAME` of the receiving side in cursor bookmarks and hold tags"},
			&cli.StringFlag{Name: "progress", Value: progressAuto, Usage: "`WHEN` to draw progress bars: auto (when stderr is a terminal), always, or never (plain lines every 5s instead)"},
		},
		Action: func(ctx context.Context, c *cli.Command) error {
			if c.Args().Present() {
				return &usageError{fmt.Sprintf("replicate takes no arguments (got %q): use --from and --to; see '%s --help'", c.Args().Slice(), c.FullName())}
			}
			opts := replicateOptions{
				Once: c.Bool("once"), From: c.String("from"), To: c.String("to"), Snapshot: c.Bool("snapshot"),
				Initial: c.String("initial"), MaxStreamSize: c.String("max-stream-size"),
				PeerName: c.String("peer-name"), Progress: c.String("progress"),
			}
			_, err := runReplicate(ctx, stdout(c), stderr(c), opts, transferExec(nil))
			return err
		},
	}
}

func stderr(c *cli.Command) io.Writer {
	if w := c.Root().ErrWriter; w != nil {
		return w
	}
	return os.Stderr
}

// check validates the flags; every problem is a usage error (exit code 2).
func (o replicateOptions) check() (replicateSettings, error) {
	usage := func(format string, args ...any) (replicateSettings, error) {
		return replicateSettings{}, &usageError{fmt.Sprintf(format, args...) + "; see 'zrepl-ha replicate --help'"}
	}
	if !o.Once {
		return usage("replicate needs --once: it replicates once and exits. Continuous replication to the peer is the daemon's job (zrepl-ha run)")
	}
	if o.From == "" || o.To == "" {
		return usage("replicate needs both --from SOURCE_ROOT and --to TARGET_ROOT")
	}
	for _, ds := range []string{o.From, o.To} {
		if err := zfsrepl.ValidateDataset(ds); err != nil {
			return replicateSettings{}, err // a *zfsrepl.NameError: exit code 2
		}
	}
	switch {
	case o.From == o.To:
		return usage("--from and --to are the same dataset %s", o.From)
	case strings.HasPrefix(o.To, o.From+"/"):
		return usage("--to %s is inside --from %s: the copy would be replicated into itself", o.To, o.From)
	case strings.HasPrefix(o.From, o.To+"/"):
		return usage("--from %s is inside --to %s", o.From, o.To)
	}
	s := replicateSettings{root: zfsrepl.Root{Source: o.From, Target: o.To}, snapshot: o.Snapshot, peer: o.PeerName, progress: o.Progress}
	switch o.Initial {
	case "newest":
	case "all":
		s.plan.InitialAll = true
	default:
		return usage("--initial must be newest or all, got %q", o.Initial)
	}
	size, err := config.ParseByteSize(o.MaxStreamSize)
	if err != nil {
		return usage("--max-stream-size %v", err)
	}
	if size < 1<<20 {
		return usage("--max-stream-size must be at least 1MiB, got %s", size)
	}
	s.maxStream = size.Bytes()
	if !peerNameRE.MatchString(o.PeerName) {
		return usage("--peer-name must be 1 to 63 characters of a-z, 0-9 and '-', got %q", o.PeerName)
	}
	switch o.Progress {
	case progressAuto, progressAlways, progressNever:
	default:
		return usage("--progress must be auto, always or never, got %q", o.Progress)
	}
	return s, nil
}

// runReplicate replicates opts.From into opts.To once, on pools z reaches,
// and prints a summary on out; progress goes to errOut as bars when it is a
// terminal, else to out as plain lines. It returns the engine's report (nil
// when it did not get that far) and:
//   - a usage error for bad flags (exit code 2);
//   - an error when the source has no zrepl-ha snapshot and --snapshot was
//     not given (exit code 1);
//   - a *zfsrepl.ResumableError when a transfer was cut (exit code 3): the
//     same command resumes it;
//   - a *conflictsError when a target dataset could not be updated without
//     destroying something (exit code 1); the other datasets were
//     replicated;
//   - any other zfs error as is.
func runReplicate(ctx context.Context, out, errOut io.Writer, opts replicateOptions, z zfsrepl.ZFS) (*zfsrepl.Report, error) {
	s, err := opts.check()
	if err != nil {
		return nil, err
	}
	if s.snapshot {
		name, err := zfsrepl.TakeSnapshot(ctx, z, s.root.Source, time.Now())
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "snapshot %s@%s taken\n", s.root.Source, name)
	} else if err := checkHasSnapshot(ctx, z, s.root.Source); err != nil {
		return nil, err
	}
	sink := newProgressSink(s.progress, out, errOut)
	eng := &zfsrepl.Engine{
		ZFS: z, Peer: s.peer, Plan: s.plan, MaxStreamBytes: s.maxStream,
		OnProgress: sink.Update, EstimateFirst: true,
	}
	rep, err := eng.Replicate(ctx, s.root, &zfsrepl.LocalReceiver{ZFS: z, Sender: s.peer})
	sink.Close()
	if err != nil {
		writeStepTable(out, rep)
		var re *zfsrepl.ResumableError
		if errors.As(err, &re) {
			fmt.Fprintf(out, "the transfer into %s was interrupted; its received part is kept: run the same command again to resume it\n", re.Dataset)
		}
		return rep, err
	}
	return rep, writeReplicateSummary(out, rep)
}

// checkHasSnapshot fails, with a hint, when root has no zrepl-ha snapshot to
// replicate.
func checkHasSnapshot(ctx context.Context, z zfsrepl.ZFS, root string) error {
	vs, err := z.Versions(ctx, root)
	if err != nil {
		return err
	}
	for _, v := range vs {
		if zfsrepl.IsOwned(v) {
			return nil
		}
	}
	return fmt.Errorf("%s has no zrepl-ha snapshot to replicate; add --snapshot to take one first", root)
}

// conflictsError is a run that replicated what it could but found target
// datasets it could not update without destroying something: exit code 1,
// apart from the usage errors' 2.
type conflictsError struct {
	Target string
	N      int
}

func (e *conflictsError) Error() string {
	what := "a replication conflict"
	if e.N != 1 {
		what = fmt.Sprintf("%d replication conflicts", e.N)
	}
	return fmt.Sprintf("%s under %s (listed above); nothing was destroyed", what, e.Target)
}

// Unwrap lets errors.Is(err, zfsrepl.ErrConflict) find it.
func (e *conflictsError) Unwrap() error { return zfsrepl.ErrConflict }

// ExitCode implements the exit code convention.
func (e *conflictsError) ExitCode() int { return exitFailure }

// writeReplicateSummary prints what a completed run did and found, and
// returns a *conflictsError when there were conflicts.
func writeReplicateSummary(out io.Writer, rep *zfsrepl.Report) error {
	root := rep.Root
	switch {
	case len(rep.Steps) == 0 && len(rep.Conflicts) == 0:
		fmt.Fprintf(out, "nothing to do: %s is up to date with %s\n", root.Target, versionOrNone(root.Source, rep.LatestSnapshot))
	case len(rep.Steps) > 0:
		fmt.Fprintf(out, "replicated %s -> %s: %s in %s\n", root.Source, root.Target, humanBytes(rep.BytesSent), plural(len(rep.Steps), "step"))
		writeStepTable(out, rep)
	}
	if n := len(rep.Conflicts); n > 0 {
		fmt.Fprintf(out, "%s (nothing was destroyed; the other datasets were replicated):\n", plural(n, "conflict"))
		for _, c := range rep.Conflicts {
			fmt.Fprintf(out, "  %s: %s\n", c.Dataset, c.Reason)
		}
	}
	if len(rep.OnlyOnReceiver) > 0 {
		fmt.Fprintf(out, "only on the target (gone from the source; kept, never destroyed):\n")
		for _, d := range rep.OnlyOnReceiver {
			fmt.Fprintf(out, "  %s\n", d)
		}
	}
	if len(rep.Waiting) > 0 {
		fmt.Fprintf(out, "waiting for their first zrepl-ha snapshot (--snapshot takes one):\n")
		for _, d := range rep.Waiting {
			fmt.Fprintf(out, "  %s\n", d)
		}
	}
	if rep.LatestConsistent == "" {
		fmt.Fprintf(out, "latest consistent snapshot: none (no snapshot is on every dataset of %s)\n", root.Target)
	} else {
		fmt.Fprintf(out, "latest consistent snapshot: %s@%s", root.Target, rep.LatestConsistent)
		if rep.Lag >= 0 {
			fmt.Fprintf(out, " (lag %s)", rep.Lag.Round(time.Second))
		}
		fmt.Fprintln(out)
	}
	if rep.LatestSnapshot != "" && rep.LatestSnapshot != rep.LatestConsistent {
		fmt.Fprintf(out, "newest source snapshot: %s@%s\n", root.Source, rep.LatestSnapshot)
	}
	if len(rep.Conflicts) > 0 {
		return &conflictsError{Target: root.Target, N: len(rep.Conflicts)}
	}
	return nil
}

// writeStepTable lists the executed steps, one per line.
func writeStepTable(out io.Writer, rep *zfsrepl.Report) {
	if rep == nil || len(rep.Steps) == 0 {
		return
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  KIND\tDATASET\tSNAPSHOT\tBYTES\tTIME\tRATE\tRESULT")
	for _, r := range rep.Steps {
		fmt.Fprintf(tw, "  %s\t%s -> %s\t%s\t%s\t%s\t%s\t%s\n", r.Step.Kind, r.Step.Source, r.Step.Target,
			stepSnapshots(r.Step), humanBytes(r.Bytes), humanDuration(r.Duration), humanRate(rate(r.Bytes, r.Duration)), stepResult(r.Err))
	}
	tw.Flush()
}

// stepSnapshots is what a step sends: "@s1" (full), "@s1..@s3"
// (incremental), "(token)" (resume).
func stepSnapshots(st zfsrepl.Step) string {
	switch {
	case st.Kind == zfsrepl.StepResume:
		return "(resume token)"
	case st.Send.From == "":
		return shortVersion(st.Send.Snapshot)
	}
	return shortVersion(st.Send.From) + ".." + shortVersion(st.Send.Snapshot)
}

func stepResult(err error) string {
	var re *zfsrepl.ResumableError
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, zfsrepl.ErrConflict):
		return "conflict"
	case errors.As(err, &re):
		return "interrupted"
	}
	return "failed"
}

func versionOrNone(ds, short string) string {
	if short == "" {
		return ds + " (which has no zrepl-ha snapshot)"
	}
	return ds + "@" + short
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
