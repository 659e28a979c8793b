package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/zrepl-ha/zrepl-ha/internal/config"
)

func TestRunConfigCheck(t *testing.T) {
	ctx := context.Background()
	t.Run("valid", func(t *testing.T) {
		var out bytes.Buffer
		if err := runConfigCheck(ctx, &out, configOptions{}, []string{exampleConfig}); err != nil {
			t.Fatal(err)
		}
		if out.String() != exampleConfig+": ok\n" {
			t.Fatalf("got %q", out.String())
		}
	})
	t.Run("falls back to --config", func(t *testing.T) {
		var out bytes.Buffer
		if err := runConfigCheck(ctx, &out, configOptions{ConfigPath: exampleConfig}, nil); err != nil {
			t.Fatal(err)
		}
		if out.String() != exampleConfig+": ok\n" {
			t.Fatalf("got %q", out.String())
		}
	})
	t.Run("invalid", func(t *testing.T) {
		var out bytes.Buffer
		err := runConfigCheck(ctx, &out, configOptions{}, []string{badConfig})
		var errs *config.Errors
		if !errors.As(err, &errs) || len(*errs) < 10 {
			t.Fatalf("want many *config.Errors, got %v", err)
		}
		if exitCode(err) != exitUsage {
			t.Fatalf("exit code %d, want %d", exitCode(err), exitUsage)
		}
		if out.Len() != 0 {
			t.Fatalf("printed %q for an invalid file", out.String())
		}
	})
	t.Run("missing file", func(t *testing.T) {
		err := runConfigCheck(ctx, &bytes.Buffer{}, configOptions{}, []string{filepath.Join(t.TempDir(), "none.yaml")})
		if !errors.Is(err, fs.ErrNotExist) || exitCode(err) != exitUsage {
			t.Fatalf("got %v (code %d)", err, exitCode(err))
		}
	})
	t.Run("too many arguments", func(t *testing.T) {
		err := runConfigCheck(ctx, &bytes.Buffer{}, configOptions{}, []string{"a", "b"})
		if exitCode(err) != exitUsage {
			t.Fatalf("got %v (code %d)", err, exitCode(err))
		}
	})
}

// TestConfigCheckCommand runs `zrepl-ha config check` end to end: the
// problems go to stderr one per line, exactly as config.FieldError renders
// them, and the exit code is 2.
func TestConfigCheckCommand(t *testing.T) {
	code, stdout, stderr := runMain(t, "config", "check", badConfig)
	if code != exitUsage || stdout != "" {
		t.Fatalf("code %d stdout %q", code, stdout)
	}
	_, err := config.Load(badConfig)
	var errs *config.Errors
	if !errors.As(err, &errs) {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if len(lines) != len(*errs)+1 {
		t.Fatalf("want %d lines, got %d:\n%s", len(*errs)+1, len(lines), stderr)
	}
	for i, fe := range *errs {
		if lines[i] != fe.Error() {
			t.Errorf("line %d = %q, want %q", i, lines[i], fe.Error())
		}
	}
	if !strings.HasPrefix(lines[0], badConfig+":3:9: node.name: ") {
		t.Errorf("first line %q is not file:line:col: path: msg", lines[0])
	}
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "zrepl-ha: configuration rejected (") {
		t.Errorf("summary line %q", last)
	}

	for _, args := range [][]string{
		{"config", "check", exampleConfig},
		{"-c", exampleConfig, "config", "check"},
		{"config", "check", "--config", exampleConfig},
	} {
		code, stdout, stderr := runMain(t, args...)
		if code != exitOK || stdout != exampleConfig+": ok\n" || stderr != "" {
			t.Errorf("%v: code %d stdout %q stderr %q", args, code, stdout, stderr)
		}
	}
}

func TestRunConfigShow(t *testing.T) {
	ctx := context.Background()
	var out bytes.Buffer
	if err := runConfigShow(ctx, &out, configOptions{ConfigPath: exampleConfig}, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "# effective configuration of "+exampleConfig) {
		t.Fatalf("no header: %q", out.String()[:40])
	}
	// The output is a config file equal to the input.
	shown, err := config.Parse("shown.yaml", out.Bytes())
	if err != nil {
		t.Fatalf("show output does not parse: %v\n%s", err, out.String())
	}
	orig, err := config.Load(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(shown, orig) {
		t.Fatalf("show output differs from the file:\n%s", out.String())
	}

	// Defaults appear even when the file leaves them out.
	minFile := filepath.Join(t.TempDir(), "min.yaml")
	data := "node: {name: a, listen_link: '198.18.1.1:7701'}\npeer: {name: b, link_address: '198.18.1.2:7701'}\n" +
		"replication: {roots: [{source: tank/data}]}\ntransport: {tls: {insecure_plaintext: true}}\n"
	if err := os.WriteFile(minFile, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := runConfigShow(ctx, &out, configOptions{}, []string{minFile}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"state_dir: /var/lib/zrepl-ha", "loss_threshold: 3s", "target: tank/data", "compression: zstd"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("show output lacks %q", want)
		}
	}

	out.Reset()
	err = runConfigShow(ctx, &out, configOptions{}, []string{badConfig})
	if exitCode(err) != exitUsage || out.Len() != 0 {
		t.Fatalf("invalid file: %v (code %d), printed %q", err, exitCode(err), out.String())
	}
}

func TestConfigShowCommand(t *testing.T) {
	code, stdout, stderr := runMain(t, "config", "show", exampleConfig)
	if code != exitOK || stderr != "" || !strings.Contains(stdout, "name: alpha") {
		t.Fatalf("code %d stderr %q stdout %q", code, stderr, stdout)
	}
	code, stdout, stderr = runMain(t, "config", "show", badConfig)
	if code != exitUsage || stdout != "" || !strings.Contains(stderr, "configuration rejected") {
		t.Fatalf("code %d stdout %q stderr %q", code, stdout, stderr)
	}
}
