package main

import (
	"bytes"
	"context"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestRunVersion(t *testing.T) {
	info := func(mainVersion string, settings ...debug.BuildSetting) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{Main: debug.Module{Version: mainVersion}, Settings: settings}, true
		}
	}
	rev := debug.BuildSetting{Key: "vcs.revision", Value: "4ddb6aa52c1e0c6f3b8a9d2e1f0a7b6c5d4e3f21"}
	cases := []struct {
		name string
		opts versionOptions
		want string
	}{
		{"no build info", versionOptions{Version: "1.2.3"}, "zrepl-ha 1.2.3 (" + runtime.Version() + ")"},
		{"build info unavailable", versionOptions{Version: "dev", BuildInfo: func() (*debug.BuildInfo, bool) { return nil, false }},
			"zrepl-ha dev (" + runtime.Version() + ")"},
		{"revision", versionOptions{Version: "1.2.3", BuildInfo: info("(devel)", rev)},
			"zrepl-ha 1.2.3 (" + runtime.Version() + ", 4ddb6aa52c1e0c6f3b8a9d2e1f0a7b6c5d4e3f21)"},
		{"dirty", versionOptions{Version: "1.2.3", BuildInfo: info("", rev, debug.BuildSetting{Key: "vcs.modified", Value: "true"})},
			"zrepl-ha 1.2.3 (" + runtime.Version() + ", 4ddb6aa52c1e0c6f3b8a9d2e1f0a7b6c5d4e3f21-dirty)"},
		{"module version when dev", versionOptions{Version: "dev", BuildInfo: info("v0.3.0")},
			"zrepl-ha v0.3.0 (" + runtime.Version() + ")"},
		{"ldflags version wins", versionOptions{Version: "0.4.0", BuildInfo: info("v0.3.0")},
			"zrepl-ha 0.4.0 (" + runtime.Version() + ")"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := runVersion(context.Background(), &out, tc.opts, nil); err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSuffix(out.String(), "\n"); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	err := runVersion(context.Background(), &bytes.Buffer{}, versionOptions{Version: "x"}, []string{"extra"})
	if exitCode(err) != exitUsage {
		t.Fatalf("extra argument: %v (code %d)", err, exitCode(err))
	}
}

func TestVersionCommand(t *testing.T) {
	code, stdout, stderr := runMain(t, "version")
	if code != exitOK || stderr != "" || !strings.HasPrefix(stdout, "zrepl-ha "+version+" ("+runtime.Version()) {
		t.Fatalf("code %d stdout %q stderr %q", code, stdout, stderr)
	}
}
