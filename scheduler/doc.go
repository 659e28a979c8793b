// Package scheduler owns the active node's continuous loop: a cron cadence
// (robfig/cron/v3, down to one second) that runs, per replicated root,
// snapshot -> replicate -> prune, and the retention grid that decides what
// pruning asks for. Time is injected (Clock) so the grid and the loop's
// decisions are tested without sleeping.
//
// Safety is not decided here: zfsrepl.Prune refuses to destroy the last
// common base, held, unreplicated or foreign snapshots whatever the grid
// asks.
//
// scheduler may import zfsrepl and internal/config; it must not import
// transport or failover.
package scheduler
