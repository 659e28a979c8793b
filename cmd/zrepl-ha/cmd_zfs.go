package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

// newZFSCommand groups the read-mostly ZFS helpers an admin uses to see what
// replication sees: guids, resume tokens, holds and send sizes.
func newZFSCommand() *cli.Command {
	z := func() zfsrepl.ZFS { return zfsrepl.NewExec(zfsrepl.Binaries{}, nil) }
	jsonFlag := &cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table"}
	return &cli.Command{
		Name:  "zfs",
		Usage: "inspect ZFS state the way replication sees it",
		Description: "Example:\n" +
			"   zrepl-ha zfs versions tank/data\n" +
			"   zrepl-ha zfs estimate tank/data@zrepl-ha_20261126T120000Z_000042 --from @zrepl-ha_20261126T115955Z_000041",
		Commands: []*cli.Command{
			{
				Name:        "list",
				Usage:       "list a root's filesystems and volumes",
				ArgsUsage:   "ROOT",
				Description: "Example:\n   zrepl-ha zfs list tank/data",
				Flags:       []cli.Flag{jsonFlag},
				Action: func(ctx context.Context, c *cli.Command) error {
					arg, err := oneArg(c, "ROOT")
					if err != nil {
						return err
					}
					return runZFSList(ctx, stdout(c), z(), arg, c.Bool("json"))
				},
			},
			{
				Name:        "versions",
				Usage:       "list a dataset's snapshots and bookmarks with guid and createtxg",
				ArgsUsage:   "DATASET",
				Description: "Replication matches snapshots by guid, never by name.\n\nExample:\n   zrepl-ha zfs versions tank/data --json",
				Flags:       []cli.Flag{jsonFlag},
				Action: func(ctx context.Context, c *cli.Command) error {
					arg, err := oneArg(c, "DATASET")
					if err != nil {
						return err
					}
					return runZFSVersions(ctx, stdout(c), z(), arg, c.Bool("json"))
				},
			},
			{
				Name:      "estimate",
				Usage:     "estimate the size of a send stream (zfs send -nvP)",
				ArgsUsage: "SNAPSHOT",
				Description: "Example:\n   zrepl-ha zfs estimate tank/data@s2 --from @s1\n" +
					"   zrepl-ha zfs estimate tank/data@s2 --from '#zrepl-ha_cursor_beta' --raw",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "from", Usage: "incremental base: snapshot or bookmark, full or short (@s1, #b1)"},
					&cli.BoolFlag{Name: "intermediates", Aliases: []string{"I"}, Usage: "include every snapshot between --from and SNAPSHOT (-I)"},
					&cli.BoolFlag{Name: "raw", Aliases: []string{"w"}, Usage: "raw send (-w)"},
					&cli.BoolFlag{Name: "compressed", Usage: "compressed send (-c)"},
				},
				Action: func(ctx context.Context, c *cli.Command) error {
					arg, err := oneArg(c, "SNAPSHOT")
					if err != nil {
						return err
					}
					return runZFSEstimate(ctx, stdout(c), z(), zfsrepl.SendOptions{
						Snapshot: arg, From: c.String("from"), Intermediates: c.Bool("intermediates"),
						Raw: c.Bool("raw"), Compressed: c.Bool("compressed"),
					})
				},
			},
			{
				Name:        "resume-token",
				Usage:       "print a dataset's receive_resume_token (an interrupted receive)",
				ArgsUsage:   "DATASET",
				Description: "Prints \"none\" when no receive is half done.\n\nExample:\n   zrepl-ha zfs resume-token backup/data",
				Action: func(ctx context.Context, c *cli.Command) error {
					arg, err := oneArg(c, "DATASET")
					if err != nil {
						return err
					}
					return runZFSResumeToken(ctx, stdout(c), z(), arg)
				},
			},
			{
				Name:      "abort-receive",
				Usage:     "discard a half-done resumable receive (zfs receive -A)",
				ArgsUsage: "DATASET",
				Description: "The partial data is lost and the next transfer starts that stream again.\n\n" +
					"Example:\n   zrepl-ha zfs abort-receive backup/data --yes",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "yes", Usage: "confirm discarding the partial receive"}},
				Action: func(ctx context.Context, c *cli.Command) error {
					arg, err := oneArg(c, "DATASET")
					if err != nil {
						return err
					}
					return runZFSAbortReceive(ctx, stdout(c), z(), arg, c.Bool("yes"))
				},
			},
			{
				Name:        "holds",
				Usage:       "list the user holds on a snapshot",
				ArgsUsage:   "SNAPSHOT",
				Description: "Example:\n   zrepl-ha zfs holds backup/data@zrepl-ha_20261126T120000Z_000042",
				Flags:       []cli.Flag{jsonFlag},
				Action: func(ctx context.Context, c *cli.Command) error {
					arg, err := oneArg(c, "SNAPSHOT")
					if err != nil {
						return err
					}
					return runZFSHolds(ctx, stdout(c), z(), arg, c.Bool("json"))
				},
			},
		},
	}
}

func stdout(c *cli.Command) io.Writer {
	if w := c.Root().Writer; w != nil {
		return w
	}
	return os.Stdout
}

func oneArg(c *cli.Command, what string) (string, error) {
	if c.Args().Len() != 1 {
		return "", &usageError{fmt.Sprintf("%s takes exactly one %s argument (got %d); see '%s --help'", c.FullName(), what, c.Args().Len(), c.FullName())}
	}
	return c.Args().First(), nil
}

func writeJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runZFSList(ctx context.Context, out io.Writer, z zfsrepl.ZFS, root string, asJSON bool) error {
	ds, err := z.List(ctx, root, true)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(out, ds)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTYPE\tUSED\tAVAIL\tMOUNTPOINT")
	for _, d := range ds {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Name, d.Type, humanBytes(int64(d.Used)), humanBytes(int64(d.Avail)), d.Mountpoint)
	}
	return tw.Flush()
}

func runZFSVersions(ctx context.Context, out io.Writer, z zfsrepl.ZFS, dataset string, asJSON bool) error {
	vs, err := z.Versions(ctx, dataset)
	if err != nil {
		return err
	}
	if asJSON {
		if vs == nil {
			vs = []zfsrepl.Version{}
		}
		return writeJSON(out, vs)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTYPE\tGUID\tCREATETXG\tCREATED")
	for _, v := range vs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", v.Name, v.Type, v.GUID, v.CreateTXG, time.Unix(v.Creation, 0).UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

func runZFSEstimate(ctx context.Context, out io.Writer, z zfsrepl.ZFS, o zfsrepl.SendOptions) error {
	n, err := z.SendSize(ctx, o)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "%d\t%s\n", n, humanBytes(n))
	return err
}

func runZFSResumeToken(ctx context.Context, out io.Writer, z zfsrepl.ZFS, dataset string) error {
	tok, err := z.ResumeToken(ctx, dataset)
	if err != nil {
		return err
	}
	if tok == "" {
		tok = "none"
	}
	_, err = fmt.Fprintln(out, tok)
	return err
}

func runZFSAbortReceive(ctx context.Context, out io.Writer, z zfsrepl.ZFS, dataset string, yes bool) error {
	tok, err := z.ResumeToken(ctx, dataset)
	if err != nil {
		return err
	}
	if tok == "" {
		_, err = fmt.Fprintf(out, "%s: no partial receive to abort\n", dataset)
		return err
	}
	if !yes {
		return &usageError{fmt.Sprintf("%s has a partial receive; discarding it loses the transferred part. Re-run with --yes to confirm", dataset)}
	}
	if err := z.AbortResumable(ctx, dataset); err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "%s: partial receive discarded\n", dataset)
	return err
}

func runZFSHolds(ctx context.Context, out io.Writer, z zfsrepl.ZFS, snapshot string, asJSON bool) error {
	hs, err := z.Holds(ctx, snapshot)
	if err != nil {
		return err
	}
	if asJSON {
		if hs == nil {
			hs = []zfsrepl.Hold{}
		}
		return writeJSON(out, hs)
	}
	if len(hs) == 0 {
		_, err = fmt.Fprintf(out, "%s: no holds\n", snapshot)
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SNAPSHOT\tTAG")
	for _, h := range hs {
		fmt.Fprintf(tw, "%s\t%s\n", h.Snapshot, h.Tag)
	}
	return tw.Flush()
}

// humanBytes renders sizes in binary units, as zfs does.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
