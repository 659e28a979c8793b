package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/urfave/cli/v3"

	"github.com/zrepl-ha/zrepl-ha/failover"
)

func newDemoteCommand() *cli.Command {
	return &cli.Command{
		Name:  "demote",
		Usage: "stop serving on this node and make it passive",
		Description: "Asks the daemon on this node to demote it: it drops the VIP, unexports the\n" +
			"shares and becomes passive at its epoch. The peer does not take over by itself\n" +
			"while it hears this node (use 'switchover' on the active for a handover, or\n" +
			"'failover --force' on the peer). Also clears a fenced node. A refusal exits 1\n" +
			"with the daemon's reason.\n\n" +
			"Example:\n" +
			"   zrepl-ha demote\n" +
			"   zrepl-ha --config /etc/zrepl-ha/alpha.yaml demote",
		Flags: []cli.Flag{socketFlag()},
		Action: func(ctx context.Context, c *cli.Command) error {
			if c.Args().Present() {
				return &usageError{fmt.Sprintf("demote takes no arguments, got %q", c.Args().Slice())}
			}
			return runDemote(ctx, c.Root().Writer, controlOptionsFrom(c))
		},
	}
}

func runDemote(ctx context.Context, out io.Writer, opts controlOptions) error {
	return runAdmin(ctx, out, opts, "demote", failover.ControlClient.Demote)
}

// runAdmin sends one admin request without arguments and reports the role
// it led to; a refusal names the request so the daemon's reason reads well.
func runAdmin(ctx context.Context, out io.Writer, opts controlOptions, name string, do func(failover.ControlClient, context.Context) error) error {
	cl, err := opts.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	if err := do(cl, ctx); err != nil {
		if errors.Is(err, failover.ErrRefused) {
			return fmt.Errorf("%s refused: %w", name, err)
		}
		return err
	}
	_, err = fmt.Fprintf(out, "%s accepted; %s\n", name, roleLine(ctx, cl))
	return err
}
