package shares

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"
)

const exportsHeader = "# Written by zrepl-ha: rewritten on every export, emptied on demotion. Do not edit;\n" +
	"# change shares.nfs in zrepl-ha's config instead (docs/shares.md).\n"

// nfsEntry is one line of the exports file.
type nfsEntry struct {
	Path    string
	Clients []string
	Options []string // fsid= included
}

// FSID is the fsid= zrepl-ha gives a dataset's export: a UUID derived from
// the dataset's name. Both nodes export the same dataset name under the
// same fsid, so NFS file handles (fsid + inode + generation, and send/recv
// keeps inode and generation) stay valid on the new active and clients do
// not get ESTALE. The dataset's own guid would not do: a received dataset
// has a guid of its own. A share whose options set fsid= keeps that.
func FSID(dataset string) string {
	h := sha256.Sum256([]byte("zrepl-ha nfs fsid\x00" + dataset))
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// nfsEntries resolves every NFS share to its exports line.
func (m *Manager) nfsEntries(ctx context.Context, known map[string]map[string]string) ([]nfsEntry, error) {
	var out []nfsEntry
	for _, s := range m.NFS {
		mp, err := m.mountpoint(ctx, s.Dataset, known)
		if err != nil {
			return nil, err
		}
		opts, err := nfsOptions(s)
		if err != nil {
			return nil, err
		}
		hasFSID := false
		for _, o := range opts {
			if strings.HasPrefix(o, "fsid=") {
				hasFSID = true
			}
		}
		if !hasFSID {
			opts = append(opts, "fsid="+FSID(s.Dataset))
		}
		out = append(out, nfsEntry{Path: mp, Clients: strings.Fields(s.Clients), Options: opts})
	}
	return out, nil
}

// exportsFile renders the exports file: the header, then one line per
// share: PATH CLIENT(OPTIONS) CLIENT(OPTIONS)...
func exportsFile(entries []nfsEntry) []byte {
	var b bytes.Buffer
	b.WriteString(exportsHeader)
	for _, e := range entries {
		b.WriteString(exportsPath(e.Path))
		opts := strings.Join(e.Options, ",")
		for _, c := range e.Clients {
			fmt.Fprintf(&b, " %s(%s)", c, opts)
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// exportsPath escapes a path for exports(5): characters other than
// letters, digits and a few safe punctuation marks become a backslash and
// three octal digits, which exportfs decodes.
func exportsPath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			strings.IndexByte("/._-+:@,=~", c) >= 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "\\%03o", c)
		}
	}
	return b.String()
}

// parseExports returns the export paths (still escaped) of an exports
// file: the first field of every line that is not a comment or blank.
func parseExports(b []byte) []string {
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		out = append(out, f[0])
	}
	return out
}

// applyNFS writes the exports file and runs exportfs -r, which makes the
// kernel's export table match /etc/exports plus /etc/exports.d: lines
// removed from our file are unexported, other files are untouched.
func (m *Manager) applyNFS(ctx context.Context, p Paths, content []byte) error {
	changed, err := writeFile(p.Exports, content, 0o644)
	if err != nil {
		return err
	}
	if _, err := m.exec().Output(ctx, p.Exportfs, "-r"); err != nil {
		return fmt.Errorf("apply %s: %w", p.Exports, err)
	}
	m.log().Debug("nfs exports applied", "file", p.Exports, "changed", changed, "exports", len(parseExports(content)))
	return nil
}

// nfsdRunning: the kernel server has threads. exportfs succeeds without
// it, and the exports would then silently serve nobody.
func (m *Manager) nfsdRunning(p Paths) error {
	b, err := os.ReadFile(p.NFSDThreads)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("the NFS server is not running (%s does not exist): install nfs-kernel-server and start it (systemctl enable --now nfs-server)", p.NFSDThreads)
	}
	if err != nil {
		return fmt.Errorf("the NFS server's state: %w", err)
	}
	if n := strings.TrimSpace(string(b)); n == "" || n == "0" {
		return fmt.Errorf("the NFS server is not running (%s is %q): start it (systemctl start nfs-server)", p.NFSDThreads, n)
	}
	return nil
}

// NFSConf renders the nfs.conf drop-in that sets the NFSv4 grace and lease
// times. rpc.nfsd reads them when the NFS server starts (nfs.conf(5),
// section [nfsd], keys grace-time and lease-time, in seconds); the kernel
// accepts 10 to 3600 s.
func NFSConf(grace, lease time.Duration) ([]byte, error) {
	for _, v := range []struct {
		name string
		d    time.Duration
	}{{"grace", grace}, {"lease", lease}} {
		if v.d < 10*time.Second || v.d > time.Hour || v.d%time.Second != 0 {
			return nil, fmt.Errorf("%w: NFSv4 %s time %s: the kernel accepts whole seconds from 10s to 1h", ErrInvalid, v.name, v.d)
		}
	}
	return fmt.Appendf(nil, "# Written by zrepl-ha (docs/shares.md): the NFSv4 grace and lease times.\n"+
		"# rpc.nfsd reads them when the NFS server starts. Do not edit.\n"+
		"[nfsd]\ngrace-time=%d\nlease-time=%d\n", int(grace/time.Second), int(lease/time.Second)), nil
}

// WriteNFSConf writes the nfs.conf drop-in (Paths.NFSConf) with the given
// NFSv4 grace and lease times. It takes effect at the NFS server's next
// start (systemctl restart nfs-server), not on exportfs -r. It reports
// whether the file changed, so a caller can tell the admin to restart.
func (m *Manager) WriteNFSConf(grace, lease time.Duration) (bool, error) {
	b, err := NFSConf(grace, lease)
	if err != nil {
		return false, err
	}
	return writeFile(m.paths().NFSConf, b, 0o644)
}
