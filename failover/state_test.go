package failover

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStateFile(t *testing.T) {
	f := StateFile{Path: filepath.Join(t.TempDir(), "sub", "state.json")}
	if _, ok, err := f.Load(); ok || err != nil {
		t.Fatalf("missing file: ok=%v err=%v", ok, err)
	}
	want := Persisted{State: Standalone, Epoch: 42}
	if err := f.Save(want, time.Now()); err != nil {
		t.Fatal(err)
	}
	got, ok, err := f.Load()
	if err != nil || !ok || got != want {
		t.Fatalf("got %+v ok=%v err=%v, want %+v", got, ok, err, want)
	}
	entries, _ := os.ReadDir(filepath.Dir(f.Path))
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	for _, bad := range []string{"{", `{"state":"leader","epoch":1}`} {
		os.WriteFile(f.Path, []byte(bad), 0o600)
		if _, _, err := f.Load(); err == nil || !strings.Contains(err.Error(), f.Path) {
			t.Errorf("%q: err %v, want one naming the file", bad, err)
		}
	}
}
