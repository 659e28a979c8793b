package zfsrepl

import (
	"context"
	"io"
)

// DatasetType is a ZFS object type.
type DatasetType string

const (
	Filesystem DatasetType = "filesystem"
	Volume     DatasetType = "volume"
	Snapshot   DatasetType = "snapshot"
	Bookmark   DatasetType = "bookmark"
)

// Dataset is a filesystem or volume.
type Dataset struct {
	Name       string
	Type       DatasetType
	Used       uint64
	Avail      uint64
	Mountpoint string
}

// Version is a snapshot or a bookmark of one dataset. Replication compares
// versions by GUID, never by name: a snapshot and its bookmark share a GUID,
// and a same-named snapshot on the other side may be a different one.
type Version struct {
	Name      string // full name: ds@snap or ds#bm
	Type      DatasetType
	GUID      uint64
	CreateTXG uint64
	Creation  int64  // unix seconds
	UserRefs  uint64 // number of user holds (snapshots only)
}

// Short is the part after '@' or '#'.
func (v Version) Short() string {
	_, _, s, _ := SplitVersion(v.Name)
	return s
}

// Dataset is the part before '@' or '#'.
func (v Version) Dataset() string {
	d, _, _, _ := SplitVersion(v.Name)
	return d
}

// TreeDataset is one filesystem or volume of a replicated root, with what
// the replication engine needs to plan: its versions, whether it is
// encrypted (raw send), and a pending resume token.
type TreeDataset struct {
	Name        string
	Type        DatasetType
	Encrypted   bool
	ResumeToken string
	// Written is the bytes written since the dataset's newest snapshot (the
	// written property): 0 means a new snapshot would be empty.
	Written uint64
	// ReadOnly and Mounted are the readonly and mounted properties: a
	// replica is readonly, and promotion needs to know what to change.
	ReadOnly bool      `json:",omitempty"`
	Mounted  bool      `json:",omitempty"`
	Versions []Version // oldest first
}

// DestroyFlags select destroy's recursion.
type DestroyFlags struct {
	Recursive bool // -r: children and snapshots
	Defer     bool // -d: destroy a held snapshot once released
}

// Hold is one user hold on a snapshot.
type Hold struct {
	Snapshot string
	Tag      string
}

// SendOptions describe one zfs send. Exactly one of Snapshot (optionally with
// From) or ResumeToken is set.
type SendOptions struct {
	// Snapshot is the snapshot to send (the "to" side).
	Snapshot string
	// From is the incremental base: a snapshot or a bookmark, given either
	// in full ("tank/a@s1", "tank/a#b1") or short ("@s1", "#b1"). Empty for a
	// full send.
	From string
	// Intermediates sends every snapshot between From and Snapshot (-I)
	// instead of one delta (-i). Not allowed with a bookmark base.
	Intermediates bool
	Raw           bool // -w: encrypted blocks as they are on disk
	Compressed    bool // -c
	LargeBlocks   bool // -L
	Embedded      bool // -e
	Props         bool // -p: include dataset properties (user properties too)
	// ResumeToken continues an interrupted receive (-t).
	ResumeToken string
}

// RecvOptions describe one zfs receive.
type RecvOptions struct {
	Resumable bool // -s: keep a resumable state when interrupted
	NoMount   bool // -u
	// Force is -F: roll back the destination and destroy snapshots that are
	// not in the stream. Only ever set where a caller asks for it explicitly;
	// the replication engine never uses it to paper over divergence.
	Force   bool
	Set     map[string]string // -o prop=value
	Exclude []string          // -x prop
}

// ZFS is the seam between zrepl-ha's logic and the real ZFS. Exec is the real
// implementation; tests of pure logic use fakes.
type ZFS interface {
	// List returns root and, when recursive, all filesystems and volumes
	// below it.
	List(ctx context.Context, root string, recursive bool) ([]Dataset, error)
	// Versions returns the snapshots and bookmarks of one dataset, oldest
	// (lowest createtxg) first.
	Versions(ctx context.Context, dataset string) ([]Version, error)
	// Tree returns root and every filesystem and volume below it, sorted by
	// name (parents first), each with its versions; two zfs commands in all,
	// however many datasets and snapshots there are.
	Tree(ctx context.Context, root string) ([]TreeDataset, error)
	Create(ctx context.Context, name string, props map[string]string) error
	// Snapshot takes one atomic snapshot: of root and everything below it when
	// recursive (zfs snapshot -r), so all datasets get the same cut.
	Snapshot(ctx context.Context, root, short string, recursive bool) error
	// SnapshotAtomic snapshots several datasets in one command, atomically.
	SnapshotAtomic(ctx context.Context, snapshots []string) error
	Rollback(ctx context.Context, snapshot string, destroyRecent bool) error
	Destroy(ctx context.Context, name string, flags DestroyFlags) error
	GetProperty(ctx context.Context, name, prop string) (string, error)
	// PoolCapacity is the percentage of the pool's space in use (the zpool
	// capacity property) of the pool that holds dataset.
	PoolCapacity(ctx context.Context, dataset string) (int, error)
	SetProperty(ctx context.Context, name, prop, value string) error

	Send(ctx context.Context, opts SendOptions, w io.Writer) error
	// SendSize estimates a send's stream size (zfs send -nvP).
	SendSize(ctx context.Context, opts SendOptions) (int64, error)
	Recv(ctx context.Context, target string, opts RecvOptions, r io.Reader) error
	// AbortResumable discards a partial receive's state (zfs recv -A).
	AbortResumable(ctx context.Context, dataset string) error
	// ResumeToken is the dataset's receive_resume_token, "" when none.
	ResumeToken(ctx context.Context, dataset string) (string, error)
	Bookmark(ctx context.Context, snapshot, bookmark string) error
	Hold(ctx context.Context, tag string, snapshots ...string) error
	Release(ctx context.Context, tag string, snapshots ...string) error
	Holds(ctx context.Context, snapshot string) ([]Hold, error)
	Clone(ctx context.Context, snapshot, target string, props map[string]string) error
	Promote(ctx context.Context, clone string) error
}
