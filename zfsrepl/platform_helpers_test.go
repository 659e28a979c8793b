//go:build platform

package zfsrepl

// Helpers for the platform tests: real OpenZFS in the lab VM (make
// platform-test). Under this build tag a missing zfs is a failure, never a
// skip: the tier exists to run against the real thing.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"

	"github.com/zrepl-ha/zrepl-ha/fixtures/testpool"
	"time"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// pool is one file-backed test pool with a unique name, destroyed at cleanup.
type pool struct {
	Name string
	Root string // altroot: mountpoints live below it
	z    *Exec
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	return testpool.Run(t, name, args...)
}

func newPool(t *testing.T) *pool {
	t.Helper()
	tp := testpool.New(t, "zt", 512<<20, "-O", "compression=off")
	return &pool{Name: tp.Name, Root: tp.Root, z: NewExec(Binaries{}, nil)}
}

// ds returns the pool-qualified dataset name.
func (p *pool) ds(rel string) string {
	if rel == "" {
		return p.Name
	}
	return p.Name + "/" + rel
}

func (p *pool) create(t *testing.T, rel string) string {
	t.Helper()
	if err := p.z.Create(testCtx(t), p.ds(rel), nil); err != nil {
		t.Fatal(err)
	}
	return p.ds(rel)
}

func (p *pool) mountpoint(t *testing.T, ds string) string {
	t.Helper()
	mp, err := p.z.GetProperty(testCtx(t), ds, "mountpoint")
	if err != nil {
		t.Fatal(err)
	}
	return mp
}

// writeFiles writes n files of size bytes (half random, half text-like) into
// the dataset's mountpoint.
func (p *pool) writeFiles(t *testing.T, ds, prefix string, n, size int) {
	t.Helper()
	mp := p.mountpoint(t, ds)
	for i := 0; i < n; i++ {
		buf := make([]byte, size)
		rand.Read(buf[:size/2])
		for j := size / 2; j < size; j++ {
			buf[j] = "zrepl-ha lab data "[j%18]
		}
		if err := os.WriteFile(filepath.Join(mp, fmt.Sprintf("%s-%03d", prefix, i)), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run(t, "sync")
}

// checksums maps relative path to sha256 for every regular file below dir,
// staying on dir's filesystem (child datasets are compared on their own).
func checksums(t *testing.T, dir string) map[string]string {
	t.Helper()
	sums := map[string]string{}
	var root syscall.Stat_t
	if err := syscall.Stat(dir, &root); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			var st syscall.Stat_t
			if syscall.Stat(path, &st) == nil && st.Dev != root.Dev {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		io.Copy(h, f)
		rel, _ := filepath.Rel(dir, path)
		sums[rel] = hex.EncodeToString(h.Sum(nil))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sums
}

func sameChecksums(t *testing.T, a, b map[string]string) {
	t.Helper()
	if len(a) == 0 {
		t.Fatal("no files to compare")
	}
	if len(a) != len(b) {
		t.Fatalf("file count differs: %d vs %d", len(a), len(b))
	}
	for k, v := range a {
		if b[k] != v {
			t.Fatalf("file %s differs", k)
		}
	}
}

// stream captures a send into memory.
func (p *pool) stream(t *testing.T, o SendOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := p.z.Send(testCtx(t), o, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func (p *pool) recv(t *testing.T, target string, o RecvOptions, data []byte) {
	t.Helper()
	if err := p.z.Recv(testCtx(t), target, o, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
}

func (p *pool) shorts(t *testing.T, ds string) []string {
	t.Helper()
	vs, err := p.z.Versions(testCtx(t), ds)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, v := range vs {
		out = append(out, string(v.Name[len(ds)])+v.Short())
	}
	sort.Strings(out)
	return out
}
