package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/urfave/cli/v3"

	"github.com/zrepl-ha/zrepl-ha/internal/config"
)

const (
	exampleConfig = "../../internal/config/testdata/example.yaml"
	badConfig     = "../../internal/config/testdata/bad.yaml"
)

// runMain runs the whole binary in-process.
func runMain(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(append([]string{"zrepl-ha"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

type codedError struct{ code int }

func (e codedError) Error() string { return fmt.Sprintf("coded %d", e.code) }
func (e codedError) ExitCode() int { return e.code }

func TestExitCode(t *testing.T) {
	cfgErrs := &config.Errors{{File: "a.yaml", Line: 1, Column: 1, Path: "node.name", Msg: "is required"}}
	cases := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, exitOK},
		{"plain", errors.New("boom"), exitFailure},
		{"canceled", context.Canceled, exitFailure},
		{"config errors", cfgErrs, exitUsage},
		{"wrapped config errors", fmt.Errorf("start: %w", cfgErrs), exitUsage},
		{"usage", &usageError{"bad"}, exitUsage},
		{"zfs", codedError{exitZFS}, exitZFS},
		{"not found wrapped", fmt.Errorf("x: %w", codedError{exitNotFound}), exitNotFound},
		{"coder saying 0", codedError{0}, exitFailure},
		{"cli help topic", cli.Exit("No help topic for 'x'", 3), exitUsage},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := exitCode(tc.err); got != tc.want {
				t.Fatalf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}

func TestReportError(t *testing.T) {
	var b bytes.Buffer
	reportError(&b, errors.New("boom"))
	if b.String() != "zrepl-ha: boom\n" {
		t.Fatalf("got %q", b.String())
	}
	b.Reset()
	reportError(&b, &config.Errors{
		{File: "a.yaml", Line: 2, Column: 9, Path: "node.name", Msg: "m1"},
		{File: "a.yaml", Line: 5, Column: 3, Path: "peer", Msg: "m2"},
	})
	want := "a.yaml:2:9: node.name: m1\na.yaml:5:3: peer: m2\nzrepl-ha: configuration rejected (2 problems)\n"
	if b.String() != want {
		t.Fatalf("got %q, want %q", b.String(), want)
	}
}

func TestRunUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"nope"}, `unknown command "nope"; see 'zrepl-ha --help'`},
		{[]string{"config", "nope"}, `unknown command "nope"; see 'zrepl-ha config --help'`},
		{[]string{"--nope"}, "invalid usage: flag provided but not defined: -nope"},
		{[]string{"config", "check", "--nope"}, "see 'zrepl-ha config check --help'"},
		{[]string{"help", "nope"}, "No help topic for 'nope'"},
		{[]string{"version", "extra"}, "version takes no arguments"},
		{[]string{"config", "show", "a", "b"}, "config show takes at most one FILE argument, got 2"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, stderr := runMain(t, tc.args...)
			if code != exitUsage || !strings.Contains(stderr, tc.want) || !strings.HasPrefix(stderr, "zrepl-ha: ") {
				t.Fatalf("code %d, stderr %q; want %d and %q", code, stderr, exitUsage, tc.want)
			}
		})
	}
}

// TestRunHelp: help and bare command groups print help and succeed.
func TestRunHelp(t *testing.T) {
	for _, args := range [][]string{{}, {"--help"}, {"config"}, {"help", "config"}, {"config", "check", "--help"}} {
		code, stdout, stderr := runMain(t, args...)
		if code != exitOK || !strings.Contains(stdout, "USAGE:") || stderr != "" {
			t.Errorf("%v: code %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
	_, stdout, _ := runMain(t, "--help")
	if !strings.Contains(stdout, "2  usage error or invalid configuration") {
		t.Errorf("root help lacks the exit codes:\n%s", stdout)
	}
}
