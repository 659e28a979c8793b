package drill

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/zrepl-ha/zrepl-ha/transport/zfsrpc"
)

// SampleOptions bound what the drill reads. Zero fields take the defaults.
type SampleOptions struct {
	Files     int   // files sampled per dataset (DefaultSampleFiles)
	FileBytes int64 // bytes hashed per file, from its start (DefaultSampleFileBytes)
	MaxCount  int   // stop counting files here (DefaultMaxCount)
}

// Defaults: 20 files of up to 1 MiB is at most 20 MiB read on each node
// per dataset, seconds on any disk, and enough to catch a replica that is
// not the snapshot it claims to be.
const (
	DefaultSampleFiles     = 20
	DefaultSampleFileBytes = 1 << 20
	DefaultMaxCount        = 1_000_000
)

func (o SampleOptions) withDefaults() SampleOptions {
	if o.Files <= 0 {
		o.Files = DefaultSampleFiles
	}
	if o.Files > zfsrpc.MaxDrillPaths {
		o.Files = zfsrpc.MaxDrillPaths
	}
	if o.FileBytes <= 0 {
		o.FileBytes = DefaultSampleFileBytes
	}
	if o.FileBytes > zfsrpc.MaxDrillFileBytes {
		o.FileBytes = zfsrpc.MaxDrillFileBytes
	}
	if int64(o.Files)*o.FileBytes > zfsrpc.MaxDrillTotalBytes {
		o.FileBytes = zfsrpc.MaxDrillTotalBytes / int64(o.Files)
	}
	if o.MaxCount <= 0 || o.MaxCount > zfsrpc.MaxDrillCount {
		o.MaxCount = DefaultMaxCount
	}
	return o
}

// walkResult is a directory tree's regular-file count and a sample spread
// over it.
type walkResult struct {
	Count    int
	Complete bool     // false when the walk stopped at maxCount
	Sample   []string // slash paths relative to the walked directory
}

// walk counts the regular files under dir in lexical order (the same order
// on both nodes, so both count alike) and keeps n paths spread over the
// whole tree. It holds O(n) paths however large the tree: it keeps every
// stride-th file and, whenever it holds 2n, drops every other one and
// doubles the stride. Directories named .zfs are skipped.
func walk(ctx context.Context, dir string, n, maxCount int) (walkResult, error) {
	var res walkResult
	stride := 1
	errStop := errors.New("stop")
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if d.IsDir() {
			if d.Name() == ".zfs" && p != dir {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if res.Count >= maxCount {
			return errStop
		}
		if n > 0 && res.Count%stride == 0 {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			res.Sample = append(res.Sample, filepath.ToSlash(rel))
			if len(res.Sample) >= 2*n {
				kept := res.Sample[:0]
				for i := 0; i < len(res.Sample); i += 2 {
					kept = append(kept, res.Sample[i])
				}
				res.Sample, stride = kept, stride*2
			}
		}
		res.Count++
		return nil
	})
	res.Complete = err == nil
	if errors.Is(err, errStop) {
		err = nil
	}
	if err != nil {
		return res, fmt.Errorf("walking %s: %w", dir, err)
	}
	res.Sample = spread(res.Sample, n)
	return res, nil
}

// spread picks n elements evenly from s (all of them when there are fewer).
func spread(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	out := make([]string, 0, n)
	for i := 0; i < n; i++ {
		out = append(out, s[i*len(s)/n])
	}
	return out
}

// hashFiles hashes the first fileBytes bytes of each path under dir. The
// files are opened through an os.Root, so neither ".." nor a symlink can
// lead outside dir; only regular files are read. A file that cannot be
// read carries its error, so the caller can tell which one.
func hashFiles(ctx context.Context, dir string, paths []string, fileBytes int64) ([]zfsrpc.DrillFile, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	defer root.Close()
	out := make([]zfsrpc.DrillFile, len(paths))
	for i, p := range paths {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out[i] = hashFile(root, p, fileBytes)
	}
	return out, nil
}

func hashFile(root *os.Root, p string, fileBytes int64) zfsrpc.DrillFile {
	f := zfsrpc.DrillFile{Path: p}
	if err := zfsrpc.CheckDrillPath(p); err != nil {
		f.Error = err.Error()
		return f
	}
	name := filepath.FromSlash(p)
	fi, err := root.Lstat(name)
	if err != nil {
		f.Error = err.Error()
		return f
	}
	if !fi.Mode().IsRegular() {
		f.Error = fmt.Sprintf("%s is not a regular file (%s)", p, fi.Mode().Type())
		return f
	}
	f.Size = fi.Size()
	r, err := root.Open(name)
	if err != nil {
		f.Error = err.Error()
		return f
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(r, fileBytes)); err != nil {
		f.Error = err.Error()
		return f
	}
	f.SHA256 = hex.EncodeToString(h.Sum(nil))
	return f
}
