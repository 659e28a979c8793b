package failover

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// JournalFile is the events journal's name in the node's state dir.
const JournalFile = "events.jsonl"

// DefaultJournalMax is the size at which the journal rotates. Failovers
// are rare: 4 MiB holds tens of thousands of entries, years of a healthy
// pair and weeks of a flapping one.
const DefaultJournalMax = 4 << 20

// maxPendingSteps bounds the steps held for the next action entry: a
// promotion of many roots has five steps per root, and a step reported with
// no action after it (the clean-up at start) must not pile up.
const maxPendingSteps = 256

// Journal is the events journal: every transition of the machine (failover,
// fence, switchover, rejoin, admin demote, ...) and every long action
// (serve, unserve, handover, rejoin) with its steps and durations, as one
// JSON object per line appended to Path. It is an Observer; `zrepl-ha
// events` reads the file directly, so it works without the daemon.
//
// Each entry is written and fsynced before the call returns: the journal is
// read after incidents, power cuts included, and entries are rare enough
// (a few per failover) that the cost does not matter. A write error is
// logged and never stops the node. When the file would grow past MaxBytes
// it is renamed to Path+".1" (replacing the older one), so the journal
// keeps between MaxBytes and twice that of the newest entries.
type Journal struct {
	Path     string
	MaxBytes int64 // 0: DefaultJournalMax
	Log      *slog.Logger
	Now      func() time.Time // nil: time.Now; tests fix it

	mu    sync.Mutex
	steps []JournalStep
}

var _ Observer = (*Journal)(nil)

// JournalEntry is one line of the journal. Durations are in nanoseconds,
// as in `zrepl-ha status --json`.
type JournalEntry struct {
	Time time.Time `json:"time"`
	// Kind is "decision" (a transition of the machine) or "action".
	Kind string `json:"kind"`
	// Event is the decision's class (ClassifyDecision: promotion, fence,
	// switchover, rejoin, demote, ...) or the action (serve, unserve,
	// handover, rejoin).
	Event string `json:"event"`
	From  string `json:"from,omitempty"`
	To    string `json:"to,omitempty"`
	Epoch uint64 `json:"epoch"`
	// Reason is the machine's reason in full; Class its bounded class.
	Reason string        `json:"reason,omitempty"`
	Class  string        `json:"class,omitempty"`
	Took   time.Duration `json:"took_ns,omitempty"`
	Error  string        `json:"error,omitempty"`
	Steps  []JournalStep `json:"steps,omitempty"`
}

// JournalStep is one step of an action.
type JournalStep struct {
	Step  string        `json:"step"`
	Took  time.Duration `json:"took_ns"`
	Error string        `json:"error,omitempty"`
	end   time.Time
}

func (j *Journal) now() time.Time {
	if j.Now != nil {
		return j.Now()
	}
	return time.Now()
}

func (j *Journal) max() int64 {
	if j.MaxBytes > 0 {
		return j.MaxBytes
	}
	return DefaultJournalMax
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// Decision implements Observer.
func (j *Journal) Decision(d Decision) {
	c := ClassifyDecision(d)
	at := d.At
	if at.IsZero() {
		at = j.now()
	}
	j.write(JournalEntry{Time: at, Kind: "decision", Event: c.Event, From: stateOrNone(d.From), To: d.To.String(),
		Epoch: d.Epoch, Reason: d.Reason, Class: c.Reason})
}

// Action implements Observer: the entry carries the steps that ran while
// the action did.
func (j *Journal) Action(a Action, took time.Duration, err error) {
	now := j.now()
	start := now.Add(-took)
	j.mu.Lock()
	var steps []JournalStep
	for _, s := range j.steps {
		// Steps that ended before this action started belong to something
		// unobserved (the clean-up at start); they are dropped.
		if !s.end.Before(start) {
			steps = append(steps, s)
		}
	}
	j.steps = nil
	j.mu.Unlock()
	j.write(JournalEntry{Time: now, Kind: "action", Event: a.Kind.String(), Epoch: a.Epoch, Took: took,
		Error: errString(err), Steps: steps})
}

// Step implements Observer: steps are held until their action finishes.
func (j *Journal) Step(step string, took time.Duration, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.steps) >= maxPendingSteps {
		j.steps = j.steps[1:]
	}
	j.steps = append(j.steps, JournalStep{Step: step, Took: took, Error: errString(err), end: j.now()})
}

// Heartbeat implements Observer; heartbeats are metrics, not events.
func (j *Journal) Heartbeat(Path, time.Duration) {}

func (j *Journal) write(e JournalEntry) {
	if err := j.Append(e); err != nil {
		log := j.Log
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		log.Error("cannot write the events journal; the event is only in this log", "err", err, "event", e.Event, "reason", e.Reason)
	}
}

// Append writes one entry, rotating first if it would pass MaxBytes.
func (j *Journal) Append(e JournalEntry) error {
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode journal entry: %w", err)
	}
	line = append(line, '\n')
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(j.Path), 0o700); err != nil {
		return fmt.Errorf("events journal dir (node.state_dir): %w", err)
	}
	if fi, err := os.Stat(j.Path); err == nil && fi.Size() > 0 && fi.Size()+int64(len(line)) > j.max() {
		if err := os.Rename(j.Path, j.Path+".1"); err != nil {
			return fmt.Errorf("rotate events journal: %w", err)
		}
	}
	f, err := os.OpenFile(j.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open events journal: %w", err)
	}
	// One write of a whole line: O_APPEND keeps lines whole even if an
	// admin's tool appends too.
	if _, err := f.Write(line); err != nil {
		f.Close()
		return fmt.Errorf("write events journal %s: %w", j.Path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync events journal %s: %w", j.Path, err)
	}
	return f.Close()
}

// ReadJournal returns the entries of the journal at path, oldest first:
// the rotated file (path+".1") and then path. A missing file is an empty
// journal. Lines that do not decode (a line torn by a crash mid-write) are
// skipped and counted in skipped.
func ReadJournal(path string) (entries []JournalEntry, skipped int, err error) {
	for _, p := range []string{path + ".1", path} {
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, 0, fmt.Errorf("read events journal: %w", err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			if len(sc.Bytes()) == 0 {
				continue
			}
			var e JournalEntry
			if json.Unmarshal(sc.Bytes(), &e) != nil || e.Kind == "" {
				skipped++
				continue
			}
			entries = append(entries, e)
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, 0, fmt.Errorf("read events journal %s: %w", p, err)
		}
	}
	return entries, skipped, nil
}
