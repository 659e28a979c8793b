package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/urfave/cli/v3"
)

// exampleRE requires an "Example:" heading followed by at least one indented
// zrepl-ha invocation.
var exampleRE = regexp.MustCompile(`(?m)^Example:\n(   zrepl-ha .+\n?)+`)

// TestEveryCommandHasExample walks the whole tree, so a command added later
// cannot ship without an example in its help.
func TestEveryCommandHasExample(t *testing.T) {
	n := 0
	_ = newApp().Walk(func(c *cli.Command) error {
		n++
		if !exampleRE.MatchString(c.Description) && !exampleRE.MatchString(c.UsageText) {
			t.Errorf("command %q has no \"Example:\" section with a zrepl-ha invocation in Description or UsageText", c.Name)
		}
		if c.Usage == "" {
			t.Errorf("command %q has no Usage line", c.Name)
		}
		return nil
	})
	if n < 5 {
		t.Fatalf("walked only %d commands", n)
	}
}

// TestConventionsApplied: every command gets the usage-error handler and
// every group rejects unknown subcommands.
func TestConventionsApplied(t *testing.T) {
	_ = newApp().Walk(func(c *cli.Command) error {
		if c.OnUsageError == nil {
			t.Errorf("command %q has no OnUsageError", c.Name)
		}
		if len(c.Commands) > 0 && c.Action == nil {
			t.Errorf("group %q has no action", c.Name)
		}
		return nil
	})
}

// TestNewAppIsFresh: newApp shares nothing between calls (no globals), so
// running one tree does not leak flag values into another.
func TestNewAppIsFresh(t *testing.T) {
	code, _, _ := runMain(t, "-c", exampleConfig, "config", "check")
	if code != exitOK {
		t.Fatalf("code %d", code)
	}
	code, _, stderr := runMain(t, "config", "check")
	if code != exitUsage || !strings.Contains(stderr, "/etc/zrepl-ha/zrepl-ha.yaml") {
		t.Fatalf("second run did not use the default --config: %d %q", code, stderr)
	}
}
