package zfsrepl

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"

	gozfs "github.com/mistifyio/go-zfs/v3"

	"github.com/zrepl-ha/zrepl-ha/internal/command"
)

// Binaries are the paths of the programs Exec runs itself. go-zfs always
// runs "zfs" from PATH; these apply to the exec-wrapper operations.
type Binaries struct {
	ZFS   string // default "zfs"
	Zpool string // default "zpool"
}

// Exec is the real ZFS implementation.
type Exec struct {
	Bin    Binaries
	Runner *command.Runner
	// Threads, when set, raises the kernel threads of every Send and Recv
	// while it runs (OpenZFS starts them at nice 19).
	Threads *ThreadRaiser
}

// NewExec returns an Exec that logs commands to log (nil discards).
func NewExec(bin Binaries, log *slog.Logger) *Exec {
	if bin.ZFS == "" {
		bin.ZFS = "zfs"
	}
	if bin.Zpool == "" {
		bin.Zpool = "zpool"
	}
	return &Exec{Bin: bin, Runner: &command.Runner{Logger: log}}
}

var _ ZFS = (*Exec)(nil)

// zfs runs our own zfs command and returns stdout.
func (z *Exec) zfs(ctx context.Context, stdin io.Reader, args ...string) ([]byte, error) {
	c := z.Runner.Command(ctx, z.Bin.ZFS, args...)
	c.Stdin = stdin
	out, err := c.Output()
	return out, wrapExec(err)
}

// zpool runs our own zpool command and returns stdout.
func (z *Exec) zpool(ctx context.Context, args ...string) ([]byte, error) {
	out, err := z.Runner.Command(ctx, z.Bin.Zpool, args...).Output()
	return out, wrapExec(err)
}

// wrapExec turns a command failure into *Error with a kind.
func wrapExec(err error) error {
	if err == nil {
		return nil
	}
	var ce *command.Error
	if errors.As(err, &ce) {
		return &Error{Cmd: command.Line(ce.Path, ce.Args), Stderr: ce.Stderr, Kind: classify(ce.Stderr), Err: err}
	}
	return err
}

// wrapGoZFS turns a go-zfs failure into *Error with a kind.
func wrapGoZFS(err error) error {
	if err == nil {
		return nil
	}
	var ge *gozfs.Error
	if errors.As(err, &ge) {
		return &Error{Cmd: ge.Debug, Stderr: strings.TrimSpace(ge.Stderr), Kind: classify(ge.Stderr), Err: ge.Err}
	}
	return err
}

// List uses go-zfs.
func (z *Exec) List(ctx context.Context, root string, recursive bool) ([]Dataset, error) {
	if err := ValidateDataset(root); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var ds []*gozfs.Dataset
	if recursive {
		fs, err := gozfs.Filesystems(root)
		if err != nil {
			return nil, wrapGoZFS(err)
		}
		vols, err := gozfs.Volumes(root)
		if err != nil {
			return nil, wrapGoZFS(err)
		}
		ds = append(fs, vols...)
	} else {
		d, err := gozfs.GetDataset(root)
		if err != nil {
			return nil, wrapGoZFS(err)
		}
		ds = []*gozfs.Dataset{d}
	}
	out := make([]Dataset, 0, len(ds))
	for _, d := range ds {
		out = append(out, Dataset{Name: d.Name, Type: DatasetType(d.Type), Used: d.Used, Avail: d.Avail, Mountpoint: d.Mountpoint})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Versions lists with our own command: go-zfs reports neither guid nor
// createtxg, which the planner matches on.
func (z *Exec) Versions(ctx context.Context, dataset string) ([]Version, error) {
	if err := ValidateDataset(dataset); err != nil {
		return nil, err
	}
	out, err := z.zfs(ctx, nil, "list", "-H", "-p", "-t", "snapshot,bookmark", "-d", "1",
		"-o", versionColumns, "-s", "createtxg", dataset)
	if err != nil {
		return nil, err
	}
	return parseVersions(out)
}

const versionColumns = "name,type,guid,createtxg,creation,userrefs"

// Tree lists the datasets and all their versions in one command: under a
// 1 s cadence every zfs invocation counts. (A read-only channel program
// doing the same was measured and was slower in the lab: docs/zfs-layer.md.)
func (z *Exec) Tree(ctx context.Context, root string) ([]TreeDataset, error) {
	if err := ValidateDataset(root); err != nil {
		return nil, err
	}
	out, err := z.zfs(ctx, nil, "list", "-H", "-p", "-r", "-t", "filesystem,volume,snapshot,bookmark",
		"-o", versionColumns+",encryption,receive_resume_token,written,readonly,mounted", "-s", "createtxg", root)
	if err != nil {
		return nil, err
	}
	return parseTree(out)
}

func parseTree(out []byte) ([]TreeDataset, error) {
	var tree []TreeDataset
	idx := map[string]int{}
	var versions [][]string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 11 {
			return nil, fmt.Errorf("zfs list: unexpected line %q", sc.Text())
		}
		switch DatasetType(f[1]) {
		case Filesystem, Volume:
			td := TreeDataset{Name: f[0], Type: DatasetType(f[1]), Encrypted: f[6] != "off" && f[6] != "-"}
			if f[7] != "-" {
				td.ResumeToken = f[7]
			}
			td.Written, _ = strconv.ParseUint(f[8], 10, 64)
			td.ReadOnly, td.Mounted = f[9] == "on", f[10] == "yes"
			idx[td.Name] = len(tree)
			tree = append(tree, td)
		default:
			versions = append(versions, f[:6])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	var b strings.Builder
	for _, f := range versions {
		b.WriteString(strings.Join(f, "\t"))
		b.WriteByte('\n')
	}
	vs, err := parseVersions([]byte(b.String()))
	if err != nil {
		return nil, err
	}
	for _, v := range vs {
		if i, ok := idx[v.Dataset()]; ok {
			tree[i].Versions = append(tree[i].Versions, v)
		}
	}
	sort.Slice(tree, func(i, j int) bool { return tree[i].Name < tree[j].Name })
	return tree, nil
}

func parseVersions(out []byte) ([]Version, error) {
	var vs []Version
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 6 {
			return nil, fmt.Errorf("zfs list: unexpected line %q", sc.Text())
		}
		var refs uint64
		if f[5] != "-" {
			refs, _ = strconv.ParseUint(f[5], 10, 64)
		}
		guid, err1 := strconv.ParseUint(f[2], 10, 64)
		txg, err2 := strconv.ParseUint(f[3], 10, 64)
		creation, err3 := strconv.ParseInt(f[4], 10, 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("zfs list: bad numbers in %q: %w", sc.Text(), err)
		}
		vs = append(vs, Version{Name: f[0], Type: DatasetType(f[1]), GUID: guid, CreateTXG: txg, Creation: creation, UserRefs: refs})
	}
	// Bookmarks and their snapshots share a createtxg: put the snapshot first.
	sort.SliceStable(vs, func(i, j int) bool {
		if vs[i].CreateTXG != vs[j].CreateTXG {
			return vs[i].CreateTXG < vs[j].CreateTXG
		}
		return vs[i].Type == Snapshot && vs[j].Type != Snapshot
	})
	return vs, sc.Err()
}

// Create uses go-zfs.
func (z *Exec) Create(ctx context.Context, name string, props map[string]string) error {
	if err := ValidateDataset(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err := gozfs.CreateFilesystem(name, props)
	return wrapGoZFS(err)
}

// Snapshot runs zfs snapshot [-r] root@short.
func (z *Exec) Snapshot(ctx context.Context, root, short string, recursive bool) error {
	if err := ValidateDataset(root); err != nil {
		return err
	}
	if err := ValidateShortName(short); err != nil {
		return err
	}
	// Not go-zfs: its Snapshot lists the new snapshot with every property
	// afterwards (a second zfs command per cycle, 0.3-0.6 s in a slow VM,
	// that nobody reads) and cannot be cancelled.
	args := []string{"snapshot"}
	if recursive {
		args = append(args, "-r")
	}
	_, err := z.zfs(ctx, nil, append(args, root+"@"+short)...)
	return err
}

// SnapshotAtomic runs one `zfs snapshot a@x b@y ...`: ZFS takes all of them
// in one transaction group. go-zfs only takes one name.
func (z *Exec) SnapshotAtomic(ctx context.Context, snapshots []string) error {
	if len(snapshots) == 0 {
		return errors.New("SnapshotAtomic: no snapshots given")
	}
	for _, s := range snapshots {
		if err := ValidateSnapshot(s); err != nil {
			return err
		}
	}
	_, err := z.zfs(ctx, nil, append([]string{"snapshot"}, snapshots...)...)
	return err
}

// Rollback uses go-zfs. destroyRecent is -r: without it, rolling back past
// a newer snapshot fails.
func (z *Exec) Rollback(ctx context.Context, snapshot string, destroyRecent bool) error {
	if err := ValidateSnapshot(snapshot); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return wrapGoZFS((&gozfs.Dataset{Name: snapshot, Type: gozfs.DatasetSnapshot}).Rollback(destroyRecent))
}

// Destroy uses go-zfs for datasets and snapshots, our own command for
// bookmarks (go-zfs has no bookmark type).
func (z *Exec) Destroy(ctx context.Context, name string, flags DestroyFlags) error {
	ds, sep, _, isVersion := SplitVersion(name)
	switch {
	case isVersion && sep == '#':
		if err := ValidateBookmark(name); err != nil {
			return err
		}
		_, err := z.zfs(ctx, nil, "destroy", name)
		return err
	case isVersion:
		if err := ValidateSnapshot(name); err != nil {
			return err
		}
	default:
		if err := ValidateDataset(ds); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	f := gozfs.DestroyDefault
	if flags.Recursive {
		f |= gozfs.DestroyRecursive
	}
	if flags.Defer {
		f |= gozfs.DestroyDeferDeletion
	}
	return wrapGoZFS((&gozfs.Dataset{Name: name}).Destroy(f))
}

// DestroySnapshots destroys snapshots of one dataset in one zfs destroy
// (dataset@a,b,c): one process and one transaction group for all of them.
// The kernel checks them all before it destroys any, so a held or cloned
// one fails the command with the others intact.
func (z *Exec) DestroySnapshots(ctx context.Context, dataset string, shorts []string) error {
	if err := ValidateDataset(dataset); err != nil {
		return err
	}
	if len(shorts) == 0 {
		return nil
	}
	for _, s := range shorts {
		if err := ValidateSnapshot(dataset + "@" + s); err != nil {
			return err
		}
	}
	_, err := z.zfs(ctx, nil, "destroy", dataset+"@"+strings.Join(shorts, ","))
	return err
}

func validateAny(name string) error {
	if _, _, _, ok := SplitVersion(name); ok {
		return ValidateSnapshotOrBookmark(name)
	}
	return ValidateDataset(name)
}

// GetProperty uses go-zfs. A property that is not set reads as "-".
func (z *Exec) GetProperty(ctx context.Context, name, prop string) (string, error) {
	if err := validateAny(name); err != nil {
		return "", err
	}
	if err := validateProp(prop); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	v, err := (&gozfs.Dataset{Name: name}).GetProperty(prop)
	return v, wrapGoZFS(err)
}

// GetProperties reads several properties of several datasets in one zfs
// get: promotion reads mountpoint and mounted of every shared dataset, and
// under a slow CPU each zfs process costs a few hundred milliseconds of
// failover time. The result is dataset -> property -> value.
func (z *Exec) GetProperties(ctx context.Context, datasets []string, props ...string) (map[string]map[string]string, error) {
	if len(datasets) == 0 || len(props) == 0 {
		return map[string]map[string]string{}, nil
	}
	for _, ds := range datasets {
		if err := validateAny(ds); err != nil {
			return nil, err
		}
	}
	for _, p := range props {
		if err := validateProp(p); err != nil {
			return nil, err
		}
		if strings.Contains(p, ",") {
			return nil, &NameError{p, "property", "must not contain ','"}
		}
	}
	args := append([]string{"get", "-H", "-p", "-o", "name,property,value", strings.Join(props, ",")}, datasets...)
	out, err := z.zfs(ctx, nil, args...)
	if err != nil {
		return nil, err
	}
	return parseGet(out)
}

func parseGet(out []byte) (map[string]map[string]string, error) {
	res := map[string]map[string]string{}
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		f := strings.SplitN(line, "\t", 3)
		if len(f) != 3 {
			return nil, fmt.Errorf("zfs get: unexpected line %q", line)
		}
		if res[f[0]] == nil {
			res[f[0]] = map[string]string{}
		}
		res[f[0]][f[1]] = f[2]
	}
	return res, nil
}

// SetProperty uses go-zfs.
func (z *Exec) SetProperty(ctx context.Context, name, prop, value string) error {
	if err := validateAny(name); err != nil {
		return err
	}
	if err := validateProp(prop); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return wrapGoZFS((&gozfs.Dataset{Name: name}).SetProperty(prop, value))
}

func validateProp(prop string) error {
	if prop == "" || strings.HasPrefix(prop, "-") || strings.ContainsAny(prop, "= \t\n") {
		return &NameError{prop, "property", "must be a non-empty property name without '=', spaces or a leading '-'"}
	}
	return nil
}

// PoolCapacity reads the capacity of dataset's pool with zpool get -p (a
// plain number; go-zfs reads it through zpool list and parses the
// human-readable form).
func (z *Exec) PoolCapacity(ctx context.Context, dataset string) (int, error) {
	if err := ValidateDataset(dataset); err != nil {
		return 0, err
	}
	pool, _, _ := strings.Cut(dataset, "/")
	out, err := z.zpool(ctx, "get", "-H", "-p", "-o", "value", "capacity", pool)
	if err != nil {
		return 0, err
	}
	v := strings.TrimSuffix(strings.TrimSpace(string(out)), "%")
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("zpool get capacity %s: unexpected value %q: %w", pool, v, err)
	}
	return n, nil
}

// ResumeToken reads receive_resume_token.
func (z *Exec) ResumeToken(ctx context.Context, dataset string) (string, error) {
	v, err := z.GetProperty(ctx, dataset, "receive_resume_token")
	if err != nil || v == "-" {
		return "", err
	}
	return v, nil
}

// Bookmark creates bookmark (ds#name, or short "#name") from a snapshot or
// another bookmark.
func (z *Exec) Bookmark(ctx context.Context, snapshot, bookmark string) error {
	if err := ValidateSnapshotOrBookmark(snapshot); err != nil {
		return err
	}
	if strings.HasPrefix(bookmark, "#") {
		ds, _, _, _ := SplitVersion(snapshot)
		bookmark = ds + bookmark
	}
	if err := ValidateBookmark(bookmark); err != nil {
		return err
	}
	_, err := z.zfs(ctx, nil, "bookmark", snapshot, bookmark)
	return err
}

// Hold places tag on each snapshot (atomically, in one command).
func (z *Exec) Hold(ctx context.Context, tag string, snapshots ...string) error {
	return z.holdCmd(ctx, "hold", tag, snapshots)
}

// Release removes tag from each snapshot.
func (z *Exec) Release(ctx context.Context, tag string, snapshots ...string) error {
	return z.holdCmd(ctx, "release", tag, snapshots)
}

func (z *Exec) holdCmd(ctx context.Context, verb, tag string, snapshots []string) error {
	if err := ValidateHoldTag(tag); err != nil {
		return err
	}
	if len(snapshots) == 0 {
		return fmt.Errorf("zfs %s: no snapshots given", verb)
	}
	for _, s := range snapshots {
		if err := ValidateSnapshot(s); err != nil {
			return err
		}
	}
	_, err := z.zfs(ctx, nil, append([]string{verb, tag}, snapshots...)...)
	return err
}

// Holds lists the user holds on one snapshot.
func (z *Exec) Holds(ctx context.Context, snapshot string) ([]Hold, error) {
	if err := ValidateSnapshot(snapshot); err != nil {
		return nil, err
	}
	out, err := z.zfs(ctx, nil, "holds", "-H", "-p", snapshot)
	if err != nil {
		return nil, err
	}
	var hs []Hold
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) < 2 {
			return nil, fmt.Errorf("zfs holds: unexpected line %q", line)
		}
		hs = append(hs, Hold{Snapshot: f[0], Tag: f[1]})
	}
	return hs, nil
}

// Clone uses go-zfs.
func (z *Exec) Clone(ctx context.Context, snapshot, target string, props map[string]string) error {
	if err := ValidateSnapshot(snapshot); err != nil {
		return err
	}
	if err := ValidateDataset(target); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err := (&gozfs.Dataset{Name: snapshot, Type: gozfs.DatasetSnapshot}).Clone(target, props)
	return wrapGoZFS(err)
}

// Promote makes a clone independent of its origin (zfs promote).
func (z *Exec) Promote(ctx context.Context, clone string) error {
	if err := ValidateDataset(clone); err != nil {
		return err
	}
	_, err := z.zfs(ctx, nil, "promote", clone)
	return err
}
