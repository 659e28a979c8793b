package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/zrepl-ha/zrepl-ha/internal/config"
)

func loadExample(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Load(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestPlanReload(t *testing.T) {
	debug := slog.LevelDebug
	tests := []struct {
		name        string
		edit        func(*config.Config)
		wantLevel   *slog.Level
		wantRestart []string
	}{
		{"unchanged", func(*config.Config) {}, nil, nil},
		{"log level applies", func(c *config.Config) { c.Log.Level = config.LogDebug }, &debug, nil},
		{"log format needs a restart", func(c *config.Config) { c.Log.Format = "json" }, nil, []string{"log.format"}},
		{"peer address needs a restart", func(c *config.Config) { c.Peer.LinkAddress = "198.18.1.9:7701" }, nil, []string{"peer"}},
		{"heartbeat and metrics", func(c *config.Config) {
			c.Heartbeat.Interval *= 2
			c.Metrics.Listen = "127.0.0.1:9999"
		}, nil, []string{"heartbeat", "metrics"}},
		{"level and a retention change", func(c *config.Config) {
			c.Log.Level = config.LogDebug
			c.Retention.Source = append(c.Retention.Source[:0:0], c.Retention.Source...)
			c.Snapshots.Cadence = "@every 1m"
		}, &debug, []string{"snapshots"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			running, next := loadExample(t), loadExample(t)
			tt.edit(next)
			p := planReload(running, next)
			if (p.Level == nil) != (tt.wantLevel == nil) || (p.Level != nil && *p.Level != *tt.wantLevel) {
				t.Errorf("level %v, want %v", p.Level, tt.wantLevel)
			}
			if !reflect.DeepEqual(p.Restart, tt.wantRestart) {
				t.Errorf("restart %q, want %q", p.Restart, tt.wantRestart)
			}
		})
	}
}

// writeConfig writes the example config with the edits applied to text.
func writeConfig(t *testing.T, path string, replace ...string) {
	t.Helper()
	data, err := os.ReadFile(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for i := 0; i+1 < len(replace); i += 2 {
		if !strings.Contains(s, replace[i]) {
			t.Fatalf("example config has no %q", replace[i])
		}
		s = strings.Replace(s, replace[i], replace[i+1], 1)
	}
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestReloaderKeepsTheOldConfigWhenInvalid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zrepl-ha.yaml")
	writeConfig(t, path)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log, level := newLevelLogger(cfg, &logs)
	var states []string
	r := newReloader(path, cfg, level, log, func(s string) { states = append(states, s) })

	// An invalid file: nothing changes, the error names the file and says
	// what to do.
	writeConfig(t, path, "level: info", "level: debug", "format: text", "format: xml")
	if err := r.reload(); err == nil {
		t.Fatal("reload of an invalid config succeeded")
	}
	if level.Level() != slog.LevelInfo {
		t.Errorf("level changed to %v by an invalid config", level.Level())
	}
	if !strings.Contains(logs.String(), "config reload refused") || !strings.Contains(logs.String(), "zrepl-ha config check") {
		t.Errorf("log does not explain the refusal:\n%s", logs.String())
	}

	// A valid file that changes the level and the peer: the level applies,
	// the peer is reported as needing a restart, again on the next reload.
	logs.Reset()
	writeConfig(t, path, "level: info", "level: debug", "198.18.1.2:7701", "198.18.1.9:7701")
	if err := r.reload(); err != nil {
		t.Fatalf("valid reload: %v", err)
	}
	if level.Level() != slog.LevelDebug {
		t.Errorf("level %v after reload, want debug", level.Level())
	}
	if !strings.Contains(logs.String(), "sections=peer") {
		t.Errorf("log does not name the section needing a restart:\n%s", logs.String())
	}
	logs.Reset()
	if err := r.reload(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "log level changed") || !strings.Contains(logs.String(), "sections=peer") {
		t.Errorf("second reload:\n%s", logs.String())
	}
	if cfg.Log.Level != config.LogInfo {
		t.Errorf("the daemon's own config was modified: %q", cfg.Log.Level)
	}
}
