package shares

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zrepl-ha/zrepl-ha/internal/config"
)

// Props reads a dataset property; zfsrepl.ZFS satisfies it. shares reads
// "mountpoint" (where the dataset is, altroot included) and "mounted".
type Props interface {
	GetProperty(ctx context.Context, dataset, prop string) (string, error)
}

// batchProps is what zfsrepl.Exec also offers: many properties of many
// datasets in one zfs get. Export uses it when present, because every zfs
// process on the promotion path is failover time.
type batchProps interface {
	GetProperties(ctx context.Context, datasets []string, props ...string) (map[string]map[string]string, error)
}

// Paths are the files zrepl-ha owns and the programs it runs. Empty fields
// take the production defaults (DefaultPaths); tests point them elsewhere.
type Paths struct {
	Exports     string // the exports(5) file zrepl-ha owns
	NFSConf     string // the nfs.conf drop-in zrepl-ha owns (WriteNFSConf)
	NFSDThreads string // the kernel server's thread count: 0 or missing = not running
	SMBInclude  string // the smb.conf include file zrepl-ha owns
	SMBConf     string // Samba's main config; read by Check, never written
	Exportfs    string
	Smbcontrol  string
	// Proc is where process information is read (/proc): Export finds the
	// smbd parent through its pid file and checks its name there.
	Proc string
}

// DefaultPaths are the locations on a Debian host.
func DefaultPaths() Paths {
	return Paths{
		Exports:     "/etc/exports.d/zrepl-ha.exports",
		NFSConf:     "/etc/nfs.conf.d/zrepl-ha.conf",
		NFSDThreads: "/proc/fs/nfsd/threads",
		SMBInclude:  "/etc/samba/zrepl-ha.conf",
		SMBConf:     "/etc/samba/smb.conf",
		Exportfs:    "exportfs",
		Smbcontrol:  "smbcontrol",
		Proc:        "/proc",
	}
}

func (p Paths) withDefaults() Paths {
	d := DefaultPaths()
	for _, f := range []struct{ v, def *string }{
		{&p.Exports, &d.Exports}, {&p.NFSConf, &d.NFSConf}, {&p.NFSDThreads, &d.NFSDThreads},
		{&p.SMBInclude, &d.SMBInclude}, {&p.SMBConf, &d.SMBConf},
		{&p.Exportfs, &d.Exportfs}, {&p.Smbcontrol, &d.Smbcontrol}, {&p.Proc, &d.Proc},
	} {
		if *f.v == "" {
			*f.v = *f.def
		}
	}
	return p
}

// Manager exports and unexports one node's shares. It holds no state
// between calls: the files it owns are the state, so every method can run
// again after a crash.
type Manager struct {
	NFS   []config.NFSShare
	SMB   []config.SMBShare
	ZFS   Props
	Paths Paths
	// Exec runs exportfs and smbcontrol; nil uses internal/command.
	Exec Execer
	Log  *slog.Logger
	// ChildrenReloadAfter delays the background smbcontrol reload-config
	// that follows a SIGHUP to the smbd parent. It only brings smbd
	// children that were already connected up to date (new connections
	// fork from the reloaded parent), and smbcontrol costs seconds of CPU
	// on a small machine just when the clients of a promotion reconnect,
	// or a handover's final incremental runs. 0 runs it at once.
	ChildrenReloadAfter time.Duration
}

func (m *Manager) paths() Paths { return m.Paths.withDefaults() }

func (m *Manager) exec() Execer {
	if m.Exec == nil {
		return Runner{}
	}
	return m.Exec
}

func (m *Manager) log() *slog.Logger {
	if m.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return m.Log
}

// Validate checks the share definitions without touching anything.
func (m *Manager) Validate() error {
	return errors.Join(validateNFS(m.NFS), validateSMB(m.SMB))
}

// nfsActive: NFS needs attention when shares are configured or our file
// exists (shares removed from the config must still be unexported).
func (m *Manager) nfsActive(p Paths) bool {
	return len(m.NFS) > 0 || exists(p.Exports)
}

func (m *Manager) smbActive(p Paths) bool {
	return len(m.SMB) > 0 || exists(p.SMBInclude)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// Export writes both files and makes the servers apply them. It checks
// everything it can before writing anything: invalid shares or a dataset
// that is not mounted leave the files as they were. Running it again is
// harmless, and repairs a half-done earlier run.
func (m *Manager) Export(ctx context.Context) error {
	p := m.paths()
	if err := m.Validate(); err != nil {
		return err
	}
	mps := m.prefetch(ctx)
	nfs, err := m.nfsEntries(ctx, mps)
	if err != nil {
		return err
	}
	smb, err := m.smbSections(ctx, mps)
	if err != nil {
		return err
	}
	if m.nfsActive(p) && len(nfs) > 0 {
		if err := m.nfsdRunning(p); err != nil {
			return err
		}
	}
	// The two servers are independent, and both reloads are on the
	// failover path: run them side by side.
	var nfsErr, smbErr error
	var wg sync.WaitGroup
	if m.nfsActive(p) {
		wg.Add(1)
		go func() { defer wg.Done(); nfsErr = m.applyNFS(ctx, p, exportsFile(nfs)) }()
	}
	if m.smbActive(p) {
		smbErr = m.applySMB(ctx, p, includeFile(p.SMBInclude, smb), len(smb) > 0)
	}
	wg.Wait()
	if err := errors.Join(nfsErr, smbErr); err != nil {
		return err
	}
	m.log().Info("shares exported", "nfs", len(nfs), "smb", len(smb))
	return nil
}

// prefetch finds where every shared dataset is mounted without a zfs
// process when it can: a mounted ZFS dataset is a line of
// /proc/self/mountinfo (source = the dataset, root = /). For datasets that
// are not there it reads mountpoint and mounted in one zfs get when the ZFS
// offers it. It returns nil when it cannot; mountpoint then reads the
// properties one by one and reports any error itself.
func (m *Manager) prefetch(ctx context.Context) map[string]map[string]string {
	want := m.datasets()
	got := map[string]map[string]string{}
	if b, err := os.ReadFile(filepath.Join(m.paths().Proc, "self", "mountinfo")); err == nil {
		mounts := zfsMounts(b)
		for _, ds := range want {
			if mp, ok := mounts[ds]; ok {
				got[ds] = map[string]string{"mountpoint": mp, "mounted": "yes"}
			}
		}
	}
	if len(got) == len(want) {
		return got
	}
	b, ok := m.ZFS.(batchProps)
	if !ok {
		return got
	}
	props, err := b.GetProperties(ctx, want, "mountpoint", "mounted")
	if err != nil {
		return got
	}
	return props
}

// zfsMounts reads mountinfo(5): dataset -> mount point of each ZFS
// filesystem mounted at its own root (bind mounts of a subdirectory are
// skipped). The first mount of a dataset wins.
func zfsMounts(mountinfo []byte) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(string(mountinfo), "\n") {
		f := strings.Fields(line)
		sep := slices.Index(f, "-")
		if sep < 6 || len(f) < sep+3 || f[sep+1] != "zfs" || f[3] != "/" {
			continue
		}
		ds := unescapeMount(f[sep+2])
		if _, seen := out[ds]; !seen {
			out[ds] = unescapeMount(f[4])
		}
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Unexport empties both files and makes the servers apply that; SMB
// clients connected to a share zrepl-ha served are disconnected. It works
// from the files, not the config, so shares removed from the config since
// the last Export go too. A server that is not running serves nothing, so
// for Unexport it is not an error.
func (m *Manager) Unexport(ctx context.Context) error {
	p := m.paths()
	var nfsErr, smbErr error
	var wg sync.WaitGroup
	if m.nfsActive(p) {
		wg.Add(1)
		go func() { defer wg.Done(); nfsErr = m.applyNFS(ctx, p, exportsFile(nil)) }()
	}
	if m.smbActive(p) {
		smbErr = m.applySMB(ctx, p, includeFile(p.SMBInclude, nil), false)
	}
	wg.Wait()
	if err := errors.Join(nfsErr, smbErr); err != nil {
		return err
	}
	m.log().Info("shares unexported")
	return nil
}

// Exported reports whether either file zrepl-ha owns lists a share: what
// this node last told its servers to serve. After a successful Unexport it
// is false; after a successful Export it is true when any share is
// configured. Check tells whether the servers themselves are up.
func (m *Manager) Exported(ctx context.Context) (bool, error) {
	p := m.paths()
	b, err := readFile(p.Exports)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", p.Exports, err)
	}
	if len(parseExports(b)) > 0 {
		return true, nil
	}
	b, err = readFile(p.SMBInclude)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", p.SMBInclude, err)
	}
	return len(sectionNames(b)) > 0, nil
}

// Check reports every problem that would make Export fail or serve the
// wrong thing, for `config check` and the daemon's start: invalid shares,
// a server not installed or not running, smb.conf not including zrepl-ha's
// file (the message gives the line to add), and datasets that do not exist
// or are not mounted. It changes nothing.
func (m *Manager) Check(ctx context.Context) error {
	p := m.paths()
	var errs []error
	if err := m.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(m.NFS) > 0 {
		if _, err := m.exec().Output(ctx, p.Exportfs, "-s"); err != nil {
			errs = append(errs, fmt.Errorf("the NFS server's exportfs does not run (install nfs-kernel-server): %w", err))
		}
		errs = append(errs, m.nfsdRunning(p))
	}
	if len(m.SMB) > 0 {
		conf, err := os.ReadFile(p.SMBConf)
		if err != nil {
			errs = append(errs, fmt.Errorf("read Samba's config (install samba): %w", err))
		} else if err := checkInclude(p.SMBConf, conf, p.SMBInclude); err != nil {
			errs = append(errs, err)
		}
		if _, err := m.exec().Output(ctx, p.Smbcontrol, "-s", p.SMBConf, "smbd", "ping"); err != nil {
			errs = append(errs, fmt.Errorf("smbd is not running or not reachable (start it: systemctl start smbd): %w", err))
		}
	}
	for _, ds := range m.datasets() {
		if _, err := m.mountpoint(ctx, ds, nil); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// datasets lists every shared dataset once, NFS first.
func (m *Manager) datasets() []string {
	var out []string
	seen := map[string]bool{}
	add := func(ds string) {
		if !seen[ds] {
			seen[ds] = true
			out = append(out, ds)
		}
	}
	for _, s := range m.NFS {
		add(s.Dataset)
	}
	for _, s := range m.SMB {
		add(s.Dataset)
	}
	return out
}

// mountpoint returns where a dataset is mounted. A dataset that is not
// mounted is an error: exporting its mountpoint would export the empty
// directory underneath, and clients would write to the wrong filesystem.
func (m *Manager) mountpoint(ctx context.Context, ds string, known map[string]map[string]string) (string, error) {
	if m.ZFS == nil {
		return "", fmt.Errorf("shares: no ZFS to read the mountpoint of %s", ds)
	}
	get := func(prop string) (string, error) {
		if v, ok := known[ds][prop]; ok {
			return v, nil
		}
		return m.ZFS.GetProperty(ctx, ds, prop)
	}
	mp, err := get("mountpoint")
	if err != nil {
		return "", fmt.Errorf("mountpoint of %s: %w", ds, err)
	}
	if !strings.HasPrefix(mp, "/") {
		return "", fmt.Errorf("%w: %s has mountpoint=%s; a shared dataset needs a path (zfs set mountpoint=/PATH %s)", ErrNotMounted, ds, mp, ds)
	}
	if strings.ContainsAny(mp, "\n\r\x00%") || strings.TrimSpace(mp) != mp || strings.HasSuffix(mp, `\`) {
		return "", fmt.Errorf("%w: the mountpoint %q of %s cannot be written into exports(5) or smb.conf (no newlines, '%%', surrounding spaces or a trailing '\\'); change it with zfs set mountpoint", ErrInvalid, mp, ds)
	}
	mounted, err := get("mounted")
	if err != nil {
		return "", fmt.Errorf("mounted of %s: %w", ds, err)
	}
	if mounted != "yes" {
		return "", fmt.Errorf("%w: %s is not mounted at %s (zfs mount %s)", ErrNotMounted, ds, mp, ds)
	}
	return mp, nil
}

// ErrNotMounted: a shared dataset has no mounted filesystem to export.
var ErrNotMounted = errors.New("dataset not mounted")
