package scheduler

import (
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

func TestNeedSnapshot(t *testing.T) {
	owned := zfsrepl.Version{Name: "p/a@zrepl-ha_20261126T120000Z_000001", Type: zfsrepl.Snapshot}
	foreign := zfsrepl.Version{Name: "p/a@manual", Type: zfsrepl.Snapshot}
	cases := []struct {
		name string
		tree []zfsrepl.TreeDataset
		want bool
	}{
		{"idle", []zfsrepl.TreeDataset{{Name: "p/a", Versions: []zfsrepl.Version{owned}}}, false},
		{"written", []zfsrepl.TreeDataset{{Name: "p/a", Written: 4096, Versions: []zfsrepl.Version{owned}}}, true},
		{"never snapshotted", []zfsrepl.TreeDataset{{Name: "p/a", Versions: []zfsrepl.Version{foreign}}}, true},
		{"new child", []zfsrepl.TreeDataset{{Name: "p/a", Versions: []zfsrepl.Version{owned}}, {Name: "p/a/new"}}, true},
		{"empty", nil, true},
	}
	for _, c := range cases {
		if got := needSnapshot(c.tree); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestLocksSerialiseARoot(t *testing.T) {
	var l Locks
	unlock := l.Lock("tank/a")
	other := l.Lock("tank/b") // another root is independent
	other()
	done := make(chan struct{})
	go func() { l.Lock("tank/a")(); close(done) }()
	select {
	case <-done:
		t.Fatal("a second lock on the same root did not wait")
	case <-time.After(100 * time.Millisecond):
	}
	unlock()
	<-done
}
