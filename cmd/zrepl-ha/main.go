// Command zrepl-ha is the zrepl-ha daemon and its administration tool.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is the release version, set at build time with
//
//	go build -ldflags "-X main.version=1.2.3" ./cmd/zrepl-ha
//
// It is a package variable only because -X can set nothing else; the
// version command is its one reader and tests pass their own value.
var version = "dev"

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run is main without os.Exit, so tests can drive the whole binary: it runs
// the command tree with a context cancelled on SIGINT or SIGTERM, reports
// an error on stderr and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := newApp()
	app.Writer, app.ErrWriter = stdout, stderr
	err := app.Run(ctx, args)
	if err != nil {
		reportError(stderr, err)
	}
	return exitCode(err)
}
