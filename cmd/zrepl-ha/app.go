package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v3"

	"github.com/zrepl-ha/zrepl-ha/internal/config"
)

// newApp builds the command tree. Each command comes from its own
// constructor (newXCommand in cmd_x.go) whose action parses flags and
// arguments and calls a plain runX function that tests call directly. No
// package globals, no init(): every call returns a fresh tree, so tests can
// run it in parallel.
func newApp() *cli.Command {
	app := &cli.Command{
		Name:      "zrepl-ha",
		Usage:     "high availability for ZFS across two servers",
		UsageText: "zrepl-ha [--config FILE] COMMAND [options] [arguments...]",
		Description: "zrepl-ha snapshots datasets on the active node, replicates them to the passive\n" +
			"node over a heartbeat link, and promotes the passive when the active is lost.\n\n" +
			exitCodeHelp + "\n\n" +
			"Example:\n" +
			"   zrepl-ha config check /etc/zrepl-ha/zrepl-ha.yaml\n" +
			"   zrepl-ha version",
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:      "config",
				Aliases:   []string{"c"},
				Usage:     "configuration `FILE` of this node",
				Value:     config.DefaultPath,
				TakesFile: true,
			},
		},
		Commands: []*cli.Command{
			newVersionCommand(),
			newConfigCommand(),
			newZFSCommand(),
			newReplicateCommand(),
			newCertCommand(),
			newStatusCommand(),
			newEventsCommand(),
			newFailoverCommand(),
			newDemoteCommand(),
			newSwitchoverCommand(),
			newDrillCommand(),
			newRunCommand(),
			newPromoteCommand(),
		},
		// main prints errors and picks the exit code; without this handler
		// cli would print some errors itself and call os.Exit.
		ExitErrHandler: func(context.Context, *cli.Command, error) {},
	}
	applyConventions(app)
	return app
}

// applyConventions sets what every command shares, so that a new command
// cannot forget it: a usage error exits 2 with a pointer to --help, and a
// command group given an unknown subcommand fails instead of printing help
// and exiting 0.
func applyConventions(root *cli.Command) {
	_ = root.Walk(func(c *cli.Command) error {
		c.OnUsageError = onUsageError
		if len(c.Commands) > 0 && c.Action == nil {
			c.Action = groupAction
		}
		return nil
	})
}

func onUsageError(_ context.Context, c *cli.Command, err error, _ bool) error {
	return &usageError{fmt.Sprintf("invalid usage: %v; see '%s --help'", err, c.FullName())}
}

// groupAction runs for a command that only groups others ("zrepl-ha",
// "zrepl-ha config") when no subcommand matched.
func groupAction(_ context.Context, c *cli.Command) error {
	if c.Args().Present() {
		return &usageError{fmt.Sprintf("unknown command %q; see '%s --help'", c.Args().First(), c.FullName())}
	}
	if c.Root() == c {
		return cli.ShowRootCommandHelp(c)
	}
	return cli.ShowSubcommandHelp(c)
}
