package main

import (
	"context"
	"fmt"
	"io"

	"github.com/urfave/cli/v3"

	"github.com/zrepl-ha/zrepl-ha/internal/config"
)

type configOptions struct {
	// ConfigPath is the global --config value, used when no FILE is given.
	ConfigPath string
}

func newConfigCommand() *cli.Command {
	opts := func(c *cli.Command) configOptions {
		return configOptions{ConfigPath: c.String("config")}
	}
	return &cli.Command{
		Name:  "config",
		Usage: "check or show a configuration file",
		Description: "The schema and every key are described in docs/config.md.\n\n" +
			"Example:\n" +
			"   zrepl-ha config check /etc/zrepl-ha/alpha.yaml\n" +
			"   zrepl-ha --config /etc/zrepl-ha/alpha.yaml config show",
		Commands: []*cli.Command{
			{
				Name:      "check",
				Usage:     "validate a configuration file and list every problem",
				ArgsUsage: "[FILE]",
				Description: "Checks syntax, types, values and consistency between keys, without touching\n" +
					"the system. FILE defaults to --config. Problems are printed one per line as\n" +
					"file:line:column: key: message, and the exit code is 2.\n\n" +
					"Example:\n" +
					"   zrepl-ha config check /etc/zrepl-ha/alpha.yaml\n" +
					"   zrepl-ha -c /etc/zrepl-ha/alpha.yaml config check",
				Action: func(ctx context.Context, c *cli.Command) error {
					return runConfigCheck(ctx, c.Root().Writer, opts(c), c.Args().Slice())
				},
			},
			{
				Name:      "show",
				Usage:     "print the effective configuration, defaults included",
				ArgsUsage: "[FILE]",
				Description: "Prints the configuration as YAML with every default filled in; the output is\n" +
					"itself a valid configuration file. FILE defaults to --config. An invalid file is\n" +
					"reported as by 'config check'.\n\n" +
					"Example:\n" +
					"   zrepl-ha config show /etc/zrepl-ha/alpha.yaml\n" +
					"   zrepl-ha -c /etc/zrepl-ha/alpha.yaml config show > effective.yaml",
				Action: func(ctx context.Context, c *cli.Command) error {
					return runConfigShow(ctx, c.Root().Writer, opts(c), c.Args().Slice())
				},
			},
		},
	}
}

// configFile picks the file to read: the one FILE argument, else --config.
func configFile(cmd string, opts configOptions, args []string) (string, error) {
	switch len(args) {
	case 0:
		return opts.ConfigPath, nil
	case 1:
		return args[0], nil
	}
	return "", &usageError{fmt.Sprintf("config %s takes at most one FILE argument, got %d", cmd, len(args))}
}

// runConfigCheck prints "FILE: ok" for a valid file and otherwise returns
// the *config.Errors, which main prints one per line with exit code 2.
func runConfigCheck(_ context.Context, out io.Writer, opts configOptions, args []string) error {
	path, err := configFile("check", opts, args)
	if err != nil {
		return err
	}
	if _, err := config.Load(path); err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "%s: ok\n", path)
	return err
}

// runConfigShow prints the effective configuration of a valid file.
func runConfigShow(_ context.Context, out io.Writer, opts configOptions, args []string) error {
	path, err := configFile("show", opts, args)
	if err != nil {
		return err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	data, err := cfg.YAML()
	if err != nil {
		return err
	}
	// A comment, so the output stays a valid config file.
	if _, err := fmt.Fprintf(out, "# effective configuration of %s, defaults included\n", path); err != nil {
		return err
	}
	_, err = out.Write(data)
	return err
}
