package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/zrepl-ha/zrepl-ha/failover"
)

type statusOptions struct {
	controlOptions
	JSON bool
	// Now and Loc render times ("3s ago", local time); tests fix them so
	// the golden output is stable.
	Now func() time.Time
	Loc *time.Location
}

func newStatusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show this node's role, epoch, heartbeat paths, peer and last decision",
		Description: "Asks the daemon on this machine over its control socket (node.control_socket\n" +
			"in the config, root only). The human form shows the role and epoch, each\n" +
			"heartbeat path with its RTT and p99, the tiebreaker and witness, what the\n" +
			"peer's last heartbeat said, the last decision with its reason, the action in\n" +
			"progress and alerts. --json prints the same as a JSON object (durations in ns).\n" +
			"Exits 1 when no daemon answers.\n\n" +
			"Example:\n" +
			"   zrepl-ha status\n" +
			"   zrepl-ha --config /etc/zrepl-ha/alpha.yaml status --json | jq .role",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the status as JSON"},
			&cli.BoolFlag{Name: "watch", Usage: "redraw every second until interrupted (a terminal), or print the transfers in flight as log lines (no terminal)"},
			socketFlag(),
		},
		Action: func(ctx context.Context, c *cli.Command) error {
			if c.Args().Present() {
				return &usageError{fmt.Sprintf("status takes no arguments, got %q", c.Args().Slice())}
			}
			opts := statusOptions{controlOptions: controlOptionsFrom(c), JSON: c.Bool("json"), Now: time.Now, Loc: time.Local}
			if c.Bool("watch") {
				return runStatusWatch(ctx, c.Root().Writer, opts, isTerminal(c.Root().Writer), time.Second)
			}
			return runStatus(ctx, c.Root().Writer, opts)
		},
	}
}

func runStatus(ctx context.Context, out io.Writer, opts statusOptions) error {
	cl, err := opts.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	st, err := cl.Status(ctx)
	if err != nil {
		return err
	}
	if opts.JSON {
		data, err := json.MarshalIndent(st, "", "  ")
		if err != nil {
			return fmt.Errorf("encoding status: %w", err)
		}
		_, err = fmt.Fprintf(out, "%s\n", data)
		return err
	}
	_, err = io.WriteString(out, renderStatus(st, opts.Now(), opts.Loc))
	return err
}

// runStatusWatch follows a long operation (an initial sync, a catch-up, a
// rejoin): on a terminal it redraws the status every interval; otherwise it
// prints one plain line per transfer in flight, so a log keeps the history.
// It ends when ctx ends (Ctrl-C) or the daemon stops answering.
func runStatusWatch(ctx context.Context, out io.Writer, opts statusOptions, tty bool, every time.Duration) error {
	cl, err := opts.client()
	if err != nil {
		return err
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, controlTimeout)
		st, err := cl.Status(cctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		now := opts.Now()
		if tty {
			fmt.Fprint(out, "\033[H\033[2J"+renderStatus(st, now, opts.Loc))
		} else {
			for _, tr := range st.Transfers {
				fmt.Fprintf(out, "%s %s\n", now.In(opts.Loc).Format(time.RFC3339), transferLine(tr, now))
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// renderStatus is the human table: a label column, then the value; the
// paths and alerts continue on indented lines.
func renderStatus(st failover.Status, now time.Time, loc *time.Location) string {
	var b strings.Builder
	line := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "%-12s%s\n", label, fmt.Sprintf(format, args...))
	}
	const indent = "            "
	at := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return fmt.Sprintf("%s (%s ago)", t.In(loc).Format("2006-01-02 15:04:05 MST"), ago(now, t))
	}

	if st.Peer != "" {
		line("node", "%s (peer %s)", st.Node, st.Peer)
	} else {
		line("node", "%s", st.Node)
	}
	line("role", "%s, epoch %d", st.Role, st.Epoch)
	line("since", "%s", at(st.Since))
	line("uptime", "%s", st.Uptime.Round(time.Second))

	if len(st.Paths) == 0 {
		line("paths", "none")
	} else {
		var tb bytes.Buffer
		tw := tabwriter.NewWriter(&tb, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PATH\tSTATE\tRTT\tP99\tLAST ACK")
		for _, p := range st.Paths {
			state := "down"
			if p.Up {
				state = "up"
			}
			lastAck := "never"
			if !p.LastAck.IsZero() {
				lastAck = ago(now, p.LastAck) + " ago"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Path, state, rtt(p.RTT), rtt(p.RTTP99), lastAck)
		}
		tw.Flush()
		for i, l := range strings.Split(strings.TrimSuffix(tb.String(), "\n"), "\n") {
			if i == 0 {
				line("paths", "%s", strings.TrimRight(l, " "))
			} else {
				b.WriteString(indent + strings.TrimRight(l, " ") + "\n")
			}
		}
	}

	line("tiebreaker", "%s", arbiter(st.Tiebreaker, "reachable", "unreachable"))
	line("witness", "%s", arbiter(st.Witness, "holds the lease", "does not hold the lease"))

	if pv := st.PeerView; pv != nil {
		public := "public network ok"
		if !pv.PublicOK {
			public = "public network DOWN"
		}
		newest := pv.Newest
		if newest == "" {
			newest = "none"
		}
		line("peer", "%s, epoch %d, %s, newest snapshot %s", pv.Role, pv.Epoch, public, newest)
		b.WriteString(indent + "heard " + at(pv.Heard) + "\n")
	} else {
		line("peer", "not heard from since start")
	}

	if d := st.Decision; d.At.IsZero() {
		line("decision", "none yet")
	} else {
		line("decision", "%s -> %s at epoch %d, %s", d.From, d.To, d.Epoch, at(d.At))
		b.WriteString(indent + "reason: " + d.Reason + "\n")
	}

	for i, r := range st.Roots {
		label := ""
		if i == 0 {
			label = "roots"
		}
		lag := "nothing received yet"
		if r.Lag >= 0 {
			lag = "lag " + r.Lag.Round(time.Second).String()
		}
		line(label, "%s -> %s: %s, newest %s, peer has %s, %s sent, last cycle %s", r.Source, r.Target, lag,
			orDash(r.LatestSnapshot), orDash(r.LatestConsistent), humanBytes(r.BytesSent), at(r.LastCycle))
		if r.Pending > 0 || r.Throughput > 0 {
			b.WriteString(fmt.Sprintf("%s%s pending, %s/s last cycle\n", indent, humanBytes(r.Pending), humanBytes(int64(r.Throughput))))
		}
		if r.LastError != "" {
			b.WriteString(indent + "last error: " + r.LastError + "\n")
		}
		if r.PeerNotReady != "" {
			b.WriteString(indent + "waiting: " + r.PeerNotReady + "\n")
		}
	}
	for i, tr := range st.Transfers {
		label := ""
		if i == 0 {
			label = "transfers"
		}
		line(label, "%s", transferLine(tr, now))
	}
	for i, r := range st.Rescues {
		label := ""
		if i == 0 {
			label = "rescues"
		}
		line(label, "%s", r)
	}

	busy := st.Busy
	if busy == "" {
		busy = "idle"
	}
	line("busy", "%s", busy)
	switch st.Routing {
	case failover.RoutingViaPeer:
		line("routing", "serving through the peer over the heartbeat link (our public network is down)")
	case failover.RoutingForPeer:
		line("routing", "routing the peer's VIP to it over the heartbeat link (its public network is down)")
	}

	if len(st.Alerts) == 0 {
		line("alerts", "none")
	} else {
		for i, a := range st.Alerts {
			if i == 0 {
				line("alerts", "%s", a)
			} else {
				b.WriteString(indent + a + "\n")
			}
		}
	}
	return b.String()
}

// transferLine is one stream in flight: bytes, rate and, with an
// estimate, the share done and the time left.
func transferLine(t failover.Transfer, now time.Time) string {
	s := fmt.Sprintf("%s (%s): %s", t.Dataset, t.Kind, humanBytes(t.Bytes))
	if t.Total > 0 {
		s += fmt.Sprintf(" of %s (%d%%)", humanBytes(t.Total), min(100, t.Bytes*100/t.Total))
	}
	s += fmt.Sprintf(", %s/s", humanBytes(int64(t.Rate)))
	if t.Total > t.Bytes && t.Rate > 0 {
		s += ", ETA " + (time.Duration(float64(t.Total-t.Bytes)/t.Rate) * time.Second).Round(time.Second).String()
	}
	return s + ", for " + now.Sub(t.Started).Round(time.Second).String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func arbiter(a *failover.ArbiterState, ok, notOK string) string {
	switch {
	case a == nil:
		return "not configured"
	case a.OK:
		return ok
	}
	return notOK
}

// ago rounds the time since t for reading: milliseconds under a second,
// tenths under a minute, whole seconds after.
func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// rtt prints a round trip in milliseconds; "-" before the first sample.
func rtt(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}
