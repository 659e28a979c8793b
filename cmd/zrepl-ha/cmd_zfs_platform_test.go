//go:build platform

package main

// The zfs commands against real OpenZFS in the lab VM, through the real
// command tree (flags and argument parsing included).

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/fixtures/testpool"
)

func labPool(t *testing.T) string {
	t.Helper()
	name := testpool.New(t, "ztcli", 256<<20).Name
	for _, args := range [][]string{
		{"zfs", "create", name + "/a"},
		{"zfs", "snapshot", name + "/a@s1"},
		{"zfs", "bookmark", name + "/a@s1", name + "/a#b1"},
		{"zfs", "hold", "zrepl-ha:test", name + "/a@s1"},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	// Cleanups run last-in first-out: the hold goes before the pool.
	t.Cleanup(func() { exec.Command("zfs", "release", "zrepl-ha:test", name+"/a@s1").Run() })
	return name
}

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	app := newApp()
	app.Writer = &out
	app.ErrWriter = &out
	err := app.Run(ctx, append([]string{"zrepl-ha"}, args...))
	return out.String(), err
}

func TestPlatformCLIZFSCommands(t *testing.T) {
	p := labPool(t)
	cases := []struct {
		args []string
		want []string
		code int
	}{
		{[]string{"zfs", "list", p}, []string{p + "/a", "filesystem"}, 0},
		{[]string{"zfs", "versions", p + "/a"}, []string{p + "/a@s1", p + "/a#b1", "bookmark"}, 0},
		{[]string{"zfs", "estimate", p + "/a@s1"}, []string{"iB"}, 0},
		{[]string{"zfs", "resume-token", p + "/a"}, []string{"none"}, 0},
		{[]string{"zfs", "holds", p + "/a@s1"}, []string{"zrepl-ha:test"}, 0},
		{[]string{"zfs", "abort-receive", p + "/a", "--yes"}, []string{"no partial receive"}, 0},
		{[]string{"zfs", "versions", p + "/missing"}, []string{"does not exist"}, 4},
		{[]string{"zfs", "versions", "-x"}, []string{"invalid"}, 2},
		{[]string{"zfs", "versions"}, []string{"exactly one DATASET"}, 2},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, "_"), func(t *testing.T) {
			out, err := runCLI(t, c.args...)
			text := out
			if err != nil {
				text += err.Error()
			}
			for _, w := range c.want {
				if !strings.Contains(text, w) {
					t.Errorf("output lacks %q:\n%s", w, text)
				}
			}
			if got := exitCode(err); got != c.code {
				t.Errorf("exit code %d, want %d (err %v)", got, c.code, err)
			}
		})
	}
}
