package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v3"
)

type versionOptions struct {
	Version string // from -ldflags -X main.version
	// BuildInfo is debug.ReadBuildInfo; tests substitute it.
	BuildInfo func() (*debug.BuildInfo, bool)
}

func newVersionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version, Go version and source revision",
		Description: "Prints \"zrepl-ha VERSION (GO VERSION, GIT REVISION)\"; the revision is there when\n" +
			"the binary was built from a git checkout, with -dirty for uncommitted changes.\n\n" +
			"Example:\n" +
			"   zrepl-ha version",
		Action: func(ctx context.Context, c *cli.Command) error {
			opts := versionOptions{Version: version, BuildInfo: debug.ReadBuildInfo}
			return runVersion(ctx, c.Root().Writer, opts, c.Args().Slice())
		},
	}
}

func runVersion(_ context.Context, out io.Writer, opts versionOptions, args []string) error {
	if len(args) > 0 {
		return &usageError{fmt.Sprintf("version takes no arguments, got %q", args)}
	}
	_, err := fmt.Fprintln(out, versionString(opts))
	return err
}

// versionString renders "zrepl-ha <version> (<go version>[, <revision>])".
// The revision is what the go tool stamps when building from a git checkout
// (absent with -buildvcs=false), with "-dirty" for uncommitted changes.
func versionString(opts versionOptions) string {
	v := opts.Version
	details := []string{runtime.Version()}
	if opts.BuildInfo != nil {
		if bi, ok := opts.BuildInfo(); ok && bi != nil {
			// `go install module@vX` stamps the module version; use it
			// when no -X version was given.
			if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
				v = bi.Main.Version
			}
			var rev, modified string
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					modified = s.Value
				}
			}
			if rev != "" {
				if modified == "true" {
					rev += "-dirty"
				}
				details = append(details, rev)
			}
		}
	}
	return fmt.Sprintf("zrepl-ha %s (%s)", v, strings.Join(details, ", "))
}
