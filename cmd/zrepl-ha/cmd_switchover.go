package main

import (
	"context"
	"fmt"
	"io"

	"github.com/urfave/cli/v3"

	"github.com/zrepl-ha/zrepl-ha/failover"
)

func newSwitchoverCommand() *cli.Command {
	return &cli.Command{
		Name:  "switchover",
		Usage: "hand the active role over to the peer without losing data",
		Description: "Run on the active node: it demotes itself, sends a final incremental to the\n" +
			"peer and asks it to promote. The peer must be a passive in contact. A refusal\n" +
			"exits 1 with the daemon's reason; follow the handover with 'zrepl-ha status'.\n\n" +
			"Example:\n" +
			"   zrepl-ha switchover\n" +
			"   zrepl-ha switchover --socket /run/zrepl-ha/control.sock",
		Flags: []cli.Flag{socketFlag()},
		Action: func(ctx context.Context, c *cli.Command) error {
			if c.Args().Present() {
				return &usageError{fmt.Sprintf("switchover takes no arguments, got %q", c.Args().Slice())}
			}
			return runSwitchover(ctx, c.Root().Writer, controlOptionsFrom(c))
		},
	}
}

func runSwitchover(ctx context.Context, out io.Writer, opts controlOptions) error {
	return runAdmin(ctx, out, opts, "switchover", failover.ControlClient.Switchover)
}
