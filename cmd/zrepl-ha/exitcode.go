package main

import (
	"errors"
	"fmt"
	"io"
	"reflect"

	"github.com/urfave/cli/v3"

	"github.com/zrepl-ha/zrepl-ha/internal/config"
)

// Exit codes of zrepl-ha. They are part of the interface (scripts and the
// systemd unit rely on them) and listed in the root command's help.
const (
	exitOK       = 0 // success
	exitFailure  = 1 // any failure without a more specific code
	exitUsage    = 2 // bad command line or invalid configuration
	exitZFS      = 3 // a zfs or zpool command failed
	exitNotFound = 4 // a dataset, snapshot or bookmark does not exist
)

// exitCodeHelp is the exit code table for help texts.
var exitCodeHelp = fmt.Sprintf(`Exit codes:
   %d  success
   %d  failure
   %d  usage error or invalid configuration
   %d  zfs error
   %d  dataset not found`, exitOK, exitFailure, exitUsage, exitZFS, exitNotFound)

// exitCode maps an error returned by the command tree to the process exit
// code. An error decides its own code by implementing ExitCode() int
// (zfsrepl.Error, usageError, ...); add a case here only for error types that
// cannot, like those of other libraries.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var cfgErrs *config.Errors
	if errors.As(err, &cfgErrs) {
		return exitUsage
	}
	if fromCLIExit(err) {
		return exitUsage
	}
	var coder interface{ ExitCode() int }
	if errors.As(err, &coder) {
		// An error must never look like success.
		if c := coder.ExitCode(); c > 0 {
			return c
		}
	}
	return exitFailure
}

// cliExitType is the type of the errors urfave/cli makes with cli.Exit.
var cliExitType = reflect.TypeOf(cli.Exit("", 0))

// fromCLIExit reports whether err was made by urfave/cli itself with
// cli.Exit. The library does that only for command-line mistakes ("No help
// topic for 'x'" from `zrepl-ha help x`), with code 3, which would read as a
// zfs error here. Our own code never uses cli.Exit: it returns typed errors.
func fromCLIExit(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if reflect.TypeOf(e) == cliExitType {
			return true
		}
	}
	return false
}

// reportError prints err for a human. A rejected configuration prints one
// problem per line as file:line:col: path: msg, unprefixed so that editors
// can jump to them, then a summary; anything else is one line.
func reportError(w io.Writer, err error) {
	var cfgErrs *config.Errors
	if errors.As(err, &cfgErrs) {
		for _, fe := range *cfgErrs {
			fmt.Fprintln(w, fe)
		}
		n := len(*cfgErrs)
		plural := "s"
		if n == 1 {
			plural = ""
		}
		fmt.Fprintf(w, "zrepl-ha: configuration rejected (%d problem%s)\n", n, plural)
		return
	}
	fmt.Fprintf(w, "zrepl-ha: %v\n", err)
}

// usageError is a command-line mistake: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }
func (e *usageError) ExitCode() int { return 2 }
