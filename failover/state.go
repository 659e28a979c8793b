package failover

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// StateFile persists a node's state and epoch so a restart never serves
// under an older epoch or as active without consent. Writes are atomic
// (temporary file, fsync, rename, fsync of the directory): a power cut
// leaves either the old or the new state, never a torn one.
type StateFile struct {
	Path string // e.g. /var/lib/zrepl-ha/state.json
}

type stateJSON struct {
	State   string    `json:"state"`
	Epoch   uint64    `json:"epoch"`
	Updated time.Time `json:"updated"`
}

// Load reads the persisted state. ok is false when the file does not exist
// (a first start).
func (f StateFile) Load() (p Persisted, ok bool, err error) {
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return Persisted{}, false, nil
	}
	if err != nil {
		return Persisted{}, false, fmt.Errorf("read state file: %w", err)
	}
	var j stateJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return Persisted{}, false, fmt.Errorf("state file %s is corrupt (%v): restore it from the other node's epoch, or remove it to start as passive", f.Path, err)
	}
	s, err := ParseState(j.State)
	if err != nil {
		return Persisted{}, false, fmt.Errorf("state file %s: %w", f.Path, err)
	}
	return Persisted{State: s, Epoch: j.Epoch}, true, nil
}

// Save writes p atomically.
func (f StateFile) Save(p Persisted, now time.Time) error {
	b, err := json.MarshalIndent(stateJSON{State: p.State.String(), Epoch: p.Epoch, Updated: now.UTC()}, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(f.Path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".state-*.json")
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write state file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync state file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write state file: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.Path); err != nil {
		return fmt.Errorf("replace state file: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync state dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync state dir: %w", err)
	}
	return nil
}
