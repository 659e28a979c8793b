package failover

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fakeClock is advanced by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time      { return c.t }
func (c *fakeClock) Add(d time.Duration) { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock           { return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }
func journalIn(t *testing.T) (*Journal, *fakeClock) {
	c := newFakeClock()
	return &Journal{Path: filepath.Join(t.TempDir(), "state", JournalFile), Now: c.Now}, c
}

func TestJournalRecordsAFailover(t *testing.T) {
	j, clock := journalIn(t)
	var o Observer = j

	// A step reported before the action started (the clean-up at start)
	// must not be attributed to the promotion.
	o.Step("drop the VIP", 10*time.Millisecond, nil)
	clock.Add(time.Minute)
	o.Decision(Decision{At: clock.Now(), From: Passive, To: Promoting, Epoch: 7,
		Reason: "peer silent for 5.2s on every path and the tiebreaker answers: promote"})
	o.Heartbeat(PathLink, time.Millisecond) // not an event
	clock.Add(400 * time.Millisecond)
	o.Step("roll back tank/data to zrepl-ha_1", 300*time.Millisecond, nil)
	clock.Add(200 * time.Millisecond)
	o.Step("bring up the VIP", 150*time.Millisecond, errors.New("arping failed"))
	o.Action(Action{Kind: ActServe, Epoch: 7}, 600*time.Millisecond, errors.New("bring up the VIP: arping failed"))
	o.Decision(Decision{At: clock.Now(), From: Promoting, To: Fenced, Epoch: 7, Reason: "promotion failed: bring up the VIP: arping failed"})

	got, skipped, err := ReadJournal(j.Path)
	if err != nil || skipped != 0 {
		t.Fatalf("ReadJournal: %v (skipped %d)", err, skipped)
	}
	if len(got) != 3 {
		t.Fatalf("want 3 entries (decision, action, decision), got %d: %+v", len(got), got)
	}
	d := got[0]
	if d.Kind != "decision" || d.Event != EventPromotion || d.Class != "silence" || d.From != "passive" || d.To != "promoting" || d.Epoch != 7 {
		t.Errorf("promotion entry: %+v", d)
	}
	a := got[1]
	if a.Kind != "action" || a.Event != "serve" || a.Took != 600*time.Millisecond || a.Error == "" {
		t.Errorf("action entry: %+v", a)
	}
	if len(a.Steps) != 2 || a.Steps[0].Step != "roll back tank/data to zrepl-ha_1" || a.Steps[1].Error != "arping failed" {
		t.Errorf("action steps: %+v", a.Steps)
	}
	if f := got[2]; f.Event != EventFence || f.Class != "promotion_failed" {
		t.Errorf("fence entry: %+v", f)
	}
	fi, err := os.Stat(j.Path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("journal mode: %v %v", fi, err)
	}
}

func TestJournalRotationKeepsTheNewest(t *testing.T) {
	j, clock := journalIn(t)
	j.MaxBytes = 2000
	const n = 100
	for i := range n {
		clock.Add(time.Second)
		j.Decision(Decision{At: clock.Now(), From: Active, To: Fenced, Epoch: uint64(i), Reason: "peer is also active at epoch 3"})
	}
	var total int64
	for _, p := range []string{j.Path, j.Path + ".1"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("after rotation: %v", err)
		}
		if fi.Size() > j.MaxBytes {
			t.Errorf("%s is %d bytes, over MaxBytes %d", p, fi.Size(), j.MaxBytes)
		}
		total += fi.Size()
	}
	got, _, err := ReadJournal(j.Path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || len(got) >= n {
		t.Fatalf("got %d entries of %d: rotation kept nothing or dropped nothing", len(got), n)
	}
	if last := got[len(got)-1]; last.Epoch != n-1 {
		t.Errorf("newest entry lost: last epoch %d", last.Epoch)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Epoch != got[i-1].Epoch+1 {
			t.Fatalf("entries out of order or missing at %d: %d after %d", i, got[i].Epoch, got[i-1].Epoch)
		}
	}
}

func TestReadJournalSkipsTornLines(t *testing.T) {
	j, clock := journalIn(t)
	j.Decision(Decision{At: clock.Now(), From: Active, To: Passive, Epoch: 2, Reason: "admin: demote"})
	f, err := os.OpenFile(j.Path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(f, `{"time":"2026-03-01T12:00:01Z","kind":"deci`) // a crash mid-write
	f.Close()
	got, skipped, err := ReadJournal(j.Path)
	if err != nil || len(got) != 1 || skipped != 1 {
		t.Fatalf("got %d entries, %d skipped, err %v; want 1, 1, nil", len(got), skipped, err)
	}
	if got[0].Event != EventDemote {
		t.Errorf("event %q, want %q", got[0].Event, EventDemote)
	}
}

func TestReadJournalMissingIsEmpty(t *testing.T) {
	got, skipped, err := ReadJournal(filepath.Join(t.TempDir(), JournalFile))
	if err != nil || len(got) != 0 || skipped != 0 {
		t.Fatalf("%v %d %v", got, skipped, err)
	}
}

func TestJournalWriteErrorDoesNotPanic(t *testing.T) {
	dir := t.TempDir()
	// The state dir is a file: every write fails, and the node goes on.
	blocker := filepath.Join(dir, "state")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	j := &Journal{Path: filepath.Join(blocker, JournalFile)}
	if err := j.Append(JournalEntry{Kind: "decision"}); err == nil {
		t.Fatal("Append into a file-as-directory succeeded")
	}
	j.Decision(Decision{To: Fenced, Reason: "x"}) // logged, not fatal
}

func TestPingersPetsAllAndJoinsErrors(t *testing.T) {
	var a, b countPinger
	b.err = errors.New("systemd socket gone")
	err := Pingers{&a, nil, &b}.Pet()
	if a.n != 1 || b.n != 1 {
		t.Fatalf("pets: %d %d", a.n, b.n)
	}
	if !errors.Is(err, b.err) {
		t.Fatalf("err %v", err)
	}
}

type countPinger struct {
	n   int
	err error
}

func (p *countPinger) Pet() error { p.n++; return p.err }
