package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/zrepl-ha/zrepl-ha/failover"
	"github.com/zrepl-ha/zrepl-ha/internal/config"
)

type eventsOptions struct {
	ConfigPath string // the global --config, read for node.state_dir
	File       string // --file; overrides the config when set
	JSON       bool
	Since      time.Duration // 0: no limit
	Last       int           // 0: all
	// Now and Loc render times; tests fix them.
	Now func() time.Time
	Loc *time.Location
	// Warn receives notes that are not events (skipped torn lines); nil
	// discards them.
	Warn io.Writer
}

func newEventsCommand() *cli.Command {
	return &cli.Command{
		Name:  "events",
		Usage: "show the events journal: failovers, fences, switchovers, rejoins and admin actions",
		Description: "Reads the journal the daemon keeps in node.state_dir (events.jsonl, and\n" +
			"events.jsonl.1 after a rotation) directly, so it works while the daemon is\n" +
			"down. Each transition shows its time, from -> to, epoch and reason; each\n" +
			"action (serve, unserve, handover, rejoin) shows how long it and each of its\n" +
			"steps took. --json prints the entries as JSON lines, as stored (durations\n" +
			"in ns).\n\n" +
			"Example:\n" +
			"   zrepl-ha events --since 24h\n" +
			"   zrepl-ha events -n 20\n" +
			"   zrepl-ha --config /etc/zrepl-ha/alpha.yaml events --json | jq 'select(.event == \"fence\")'",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the entries as JSON lines"},
			&cli.DurationFlag{Name: "since", Usage: "only entries of the last `DURATION` (e.g. 1h, 168h)"},
			&cli.IntFlag{Name: "lines", Aliases: []string{"n"}, Usage: "only the last `N` entries (0: all)"},
			&cli.StringFlag{Name: "file", Usage: "journal `FILE` to read (default: events.jsonl in node.state_dir of --config)", TakesFile: true},
		},
		Action: func(ctx context.Context, c *cli.Command) error {
			if c.Args().Present() {
				return &usageError{fmt.Sprintf("events takes no arguments, got %q", c.Args().Slice())}
			}
			if c.Duration("since") < 0 || c.Int("lines") < 0 {
				return &usageError{"--since and -n must not be negative"}
			}
			opts := eventsOptions{ConfigPath: c.String("config"), File: c.String("file"), JSON: c.Bool("json"),
				Since: c.Duration("since"), Last: int(c.Int("lines")), Now: time.Now, Loc: time.Local, Warn: c.Root().ErrWriter}
			return runEvents(ctx, c.Root().Writer, opts)
		},
	}
}

func (o eventsOptions) path() (string, error) {
	if o.File != "" {
		return o.File, nil
	}
	cfg, err := config.Load(o.ConfigPath)
	if err != nil {
		return "", fmt.Errorf("finding the events journal (node.state_dir), or pass --file: %w", err)
	}
	return filepath.Join(cfg.Node.StateDir, failover.JournalFile), nil
}

func runEvents(ctx context.Context, out io.Writer, opts eventsOptions) error {
	path, err := opts.path()
	if err != nil {
		return err
	}
	entries, skipped, err := failover.ReadJournal(path)
	if err != nil {
		return err
	}
	if skipped > 0 && opts.Warn != nil {
		fmt.Fprintf(opts.Warn, "zrepl-ha: skipped %d malformed line(s) in %s (a write cut by a crash)\n", skipped, path)
	}
	if opts.Since > 0 {
		from := opts.Now().Add(-opts.Since)
		i := 0
		for i < len(entries) && entries[i].Time.Before(from) {
			i++
		}
		entries = entries[i:]
	}
	if opts.Last > 0 && len(entries) > opts.Last {
		entries = entries[len(entries)-opts.Last:]
	}
	if opts.JSON {
		enc := json.NewEncoder(out)
		for _, e := range entries {
			if err := enc.Encode(e); err != nil {
				return fmt.Errorf("writing events: %w", err)
			}
		}
		return nil
	}
	if len(entries) == 0 {
		_, err := fmt.Fprintf(out, "no events recorded in %s%s\n", path, sinceNote(opts.Since))
		return err
	}
	_, err = io.WriteString(out, renderEvents(entries, opts.Loc))
	return err
}

func sinceNote(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return " in the last " + d.String()
}

// renderEvents is one line per entry, with an action's steps indented
// below it.
func renderEvents(entries []failover.JournalEntry, loc *time.Location) string {
	var b strings.Builder
	for _, e := range entries {
		ts := e.Time.In(loc).Format("2006-01-02 15:04:05.000")
		switch e.Kind {
		case "decision":
			fmt.Fprintf(&b, "%s  %-11s %s -> %s  epoch %d  (%s) %s\n", ts, e.Event, e.From, e.To, e.Epoch, e.Class, e.Reason)
		default:
			result := "ok"
			if e.Error != "" {
				result = "FAILED: " + e.Error
			}
			fmt.Fprintf(&b, "%s  %-11s epoch %d  took %s  %s\n", ts, e.Event, e.Epoch, roundDuration(e.Took), result)
			for _, s := range e.Steps {
				fmt.Fprintf(&b, "%25s%s  %s", "", s.Step, roundDuration(s.Took))
				if s.Error != "" {
					fmt.Fprintf(&b, "  FAILED: %s", s.Error)
				}
				b.WriteByte('\n')
			}
		}
	}
	return b.String()
}

func roundDuration(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}
