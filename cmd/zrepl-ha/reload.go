package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"

	"github.com/zrepl-ha/zrepl-ha/internal/config"
)

// SIGHUP reloads the config. Only what can change without touching the
// failover machine, the listeners or replication in flight is applied: the
// log level. Everything else is read at start into long-lived parts (the
// node's timing and paths, TLS, the replication schedule, the VIP, the
// metrics listener), and changing it under a running pair would be a
// partial, untested state; the daemon says which sections need a restart
// and keeps running as before.

// reloadPlan is what a new config changes relative to the running one.
type reloadPlan struct {
	// Level is the new log level, set when log.level changed.
	Level *slog.Level
	// Restart lists the config sections (as written in the file: "peer",
	// "log.format", ...) that changed but apply only after a restart.
	Restart []string
}

// planReload compares the running config with a new, already validated one.
func planReload(running, next *config.Config) reloadPlan {
	var p reloadPlan
	if running.Log.Level != next.Log.Level {
		lvl := parseLevel(next.Log.Level)
		p.Level = &lvl
	}
	if running.Log.Format != next.Log.Format {
		p.Restart = append(p.Restart, "log.format")
	}
	rv, nv := reflect.ValueOf(*running), reflect.ValueOf(*next)
	t := rv.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Name == "Log" {
			continue // handled field by field above
		}
		if !reflect.DeepEqual(rv.Field(i).Interface(), nv.Field(i).Interface()) {
			p.Restart = append(p.Restart, yamlName(f))
		}
	}
	return p
}

func yamlName(f reflect.StructField) string {
	if n, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); n != "" {
		return n
	}
	return f.Name
}

func parseLevel(l config.LogLevel) slog.Level {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(l)) // validated by config.Load; unknown stays info
	return lvl
}

// newLevelLogger is newLogger with the level in a LevelVar, so a reload
// can change it while every holder of the logger keeps its pointer.
func newLevelLogger(cfg *config.Config, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	lv := &slog.LevelVar{}
	lv.Set(parseLevel(cfg.Log.Level))
	o := &slog.HandlerOptions{Level: lv}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, o)), lv
	}
	return slog.New(slog.NewTextHandler(w, o)), lv
}

// reloader applies SIGHUP reloads to the running daemon.
type reloader struct {
	path    string
	running config.Config // a copy: what this process actually runs with
	level   *slog.LevelVar
	log     *slog.Logger
	// notify tells systemd (RELOADING=1, then READY=1); nil skips.
	notify func(state string)
}

func newReloader(path string, cfg *config.Config, level *slog.LevelVar, log *slog.Logger, notify func(string)) *reloader {
	return &reloader{path: path, running: *cfg, level: level, log: log, notify: notify}
}

// reload reads and validates the file and applies what it can. An invalid
// file changes nothing: the error is logged with every problem found, and
// returned.
func (r *reloader) reload() error {
	next, err := config.Load(r.path)
	if err != nil {
		r.log.Error("config reload refused: the file is invalid; the daemon keeps running with the config it started with. "+
			"Fix the file (zrepl-ha config check "+r.path+") and send SIGHUP again", "file", r.path, "err", err)
		return err
	}
	p := planReload(&r.running, next)
	if p.Level != nil {
		r.level.Set(*p.Level)
		r.running.Log.Level = next.Log.Level
		r.log.Info("config reloaded: log level changed", "level", next.Log.Level)
	}
	if len(p.Restart) > 0 {
		// The running config is not updated for these, so the next reload
		// still reports them until the restart.
		r.log.Warn("config reloaded, but these sections changed and apply only after a restart (systemctl restart zrepl-ha)",
			"sections", strings.Join(p.Restart, ", "))
	}
	if p.Level == nil && len(p.Restart) == 0 {
		r.log.Info("config reloaded: nothing changed", "file", r.path)
	}
	return nil
}

// watch reloads on every SIGHUP until ctx ends. Without it, SIGHUP would
// kill the daemon (its default action).
func (r *reloader) watch(ctx context.Context) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	defer signal.Stop(ch)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			r.notifyState(sdReloading())
			_ = r.reload() // logged by reload
			r.notifyState("READY=1")
		}
	}
}

func (r *reloader) notifyState(s string) {
	if r.notify != nil {
		r.notify(s)
	}
}
