// Package command runs external programs (zfs, zpool, exportfs, arping, ...)
// without a shell. It is shaped like os/exec with a context: every run is
// logged and timed, stderr is captured (bounded), and a failure comes back
// as *Error carrying the full command line and the program's own message,
// never a bare "exit status 1".
//
// Binary paths are passed in by callers (see zfsrepl.Binaries), never read
// from a mutable package global, so tests can run in parallel.
//
// This package must not import any other zrepl-ha package.
package command
