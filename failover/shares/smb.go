package shares

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zrepl-ha/zrepl-ha/internal/command"
)

// smbSection is one [share] of the include file.
type smbSection struct {
	Name    string
	Path    string
	Options [][2]string // key, value; sorted by smb.conf parameter name
}

func (m *Manager) smbSections(ctx context.Context, known map[string]map[string]string) ([]smbSection, error) {
	var out []smbSection
	for _, s := range m.SMB {
		mp, err := m.mountpoint(ctx, s.Dataset, known)
		if err != nil {
			return nil, err
		}
		sec := smbSection{Name: s.Name, Path: mp}
		for k, v := range s.Options {
			sec.Options = append(sec.Options, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
		}
		slices.SortFunc(sec.Options, func(a, b [2]string) int { return strings.Compare(normKey(a[0]), normKey(b[0])) })
		out = append(out, sec)
	}
	return out, nil
}

// includeFile renders the Samba include file. Samba reads an include as if
// its text stood in place of the include line, so the file is only share
// sections; Check makes sure nothing in smb.conf follows the include line
// inside [global], where it would land in the last of these sections.
func includeFile(self string, secs []smbSection) []byte {
	var b bytes.Buffer
	b.WriteString("# Written by zrepl-ha: rewritten on every export, emptied on demotion. Do not edit;\n")
	b.WriteString("# change shares.smb in zrepl-ha's config instead (docs/shares.md).\n")
	fmt.Fprintf(&b, "# smb.conf reads it through the last line of its [global] section: include = %s\n", self)
	for _, s := range secs {
		fmt.Fprintf(&b, "\n[%s]\n\tpath = %s\n", s.Name, s.Path)
		for _, kv := range s.Options {
			fmt.Fprintf(&b, "\t%s = %s\n", kv[0], kv[1])
		}
	}
	return b.Bytes()
}

// sectionNames lists the [section] names of an smb.conf-style file.
func sectionNames(b []byte) []string {
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		l := strings.TrimSpace(line)
		if strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]") {
			out = append(out, strings.TrimSpace(l[1:len(l)-1]))
		}
	}
	return out
}

// applySMB writes the include file and has smbd reload its config. Shares
// that the previous file served and the new one does not are closed, so
// their clients are disconnected rather than left on a share that is gone.
// smbd not running is an error when the new file serves something (must
// tell the admin) and fine when it serves nothing.
func (m *Manager) applySMB(ctx context.Context, p Paths, content []byte, serving bool) error {
	old, err := readFile(p.SMBInclude)
	if err != nil {
		return fmt.Errorf("read %s: %w", p.SMBInclude, err)
	}
	changed, err := writeFile(p.SMBInclude, content, 0o644)
	if err != nil {
		return err
	}
	if serving {
		// On the failover path: SIGHUP to the smbd parent makes every new
		// connection see the shares at once, without starting smbcontrol
		// (a Samba client that loads its whole stack: one to several
		// seconds on a slow CPU). The parent does not pass a SIGHUP on to
		// its children, so smbcontrol still tells them, in the background;
		// clients reconnecting after a failover are new connections.
		pid, err := m.hupSMBD(p)
		if err == nil {
			m.log().Debug("smbd reloaded by SIGHUP", "pid", pid, "file", p.SMBInclude, "changed", changed)
			go m.reloadChildren(p)
			return nil
		}
		m.log().Debug("no SIGHUP for smbd; using smbcontrol", "err", err)
	}
	if !serving {
		return m.unshareSMB(ctx, p, old, content, changed)
	}
	if _, err := m.exec().Output(ctx, p.Smbcontrol, "-s", p.SMBConf, "smbd", "reload-config"); err != nil {
		if smbdNotRunning(err) {
			return fmt.Errorf("%w: wrote %s, but smbd is not running to serve it; start Samba (systemctl start smbd): %w", ErrSMBDNotRunning, p.SMBInclude, err)
		}
		return fmt.Errorf("apply %s: %w", p.SMBInclude, err)
	}
	for _, n := range goneSections(old, content) {
		if _, err := m.exec().Output(ctx, p.Smbcontrol, "-s", p.SMBConf, "smbd", "close-share", n); err != nil && !smbdNotRunning(err) {
			return fmt.Errorf("disconnect the clients of share %s: %w", n, err)
		}
	}
	m.log().Debug("smb shares applied", "file", p.SMBInclude, "changed", changed, "shares", len(sectionNames(content)))
	return nil
}

// goneSections are the share sections of old that content no longer has
// (share names are case-insensitive).
func goneSections(old, content []byte) []string {
	now := map[string]bool{}
	for _, n := range sectionNames(content) {
		now[strings.ToLower(n)] = true
	}
	var gone []string
	for _, n := range sectionNames(old) {
		if !now[strings.ToLower(n)] {
			gone = append(gone, n)
		}
	}
	return gone
}

// unshareSMB takes shares away: a SIGHUP to the smbd parent (new
// connections no longer see them), then close-share for each share gone,
// side by side, and reload-config for the children in the background. A
// handover waits for this before its final snapshot (close-share makes
// smbd close the share's files, which writes their last metadata), and
// each smbcontrol run is a second or more on a slow CPU. A child could take
// a new tree connect to a closed share until its reload lands; on the
// failover path the VIP is already down, so no client reaches it. Without
// the SIGHUP (no pid file), reload-config is waited for, as the parent
// needs it.
func (m *Manager) unshareSMB(ctx context.Context, p Paths, old, content []byte, changed bool) error {
	pid, herr := m.hupSMBD(p)
	if herr == nil {
		m.log().Debug("smbd reloaded by SIGHUP", "pid", pid, "file", p.SMBInclude, "changed", changed)
	}
	gone := goneSections(old, content)
	errs := make([]error, len(gone)+1)
	var wg sync.WaitGroup
	if herr == nil {
		go m.reloadChildren(p)
	} else {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := m.exec().Output(ctx, p.Smbcontrol, "-s", p.SMBConf, "smbd", "reload-config"); err != nil {
				if smbdNotRunning(err) {
					m.log().Info("smbd is not running; nothing to reload", "file", p.SMBInclude)
					return
				}
				errs[0] = fmt.Errorf("apply %s: %w", p.SMBInclude, err)
			}
		}()
	}
	for i, n := range gone {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := m.exec().Output(ctx, p.Smbcontrol, "-s", p.SMBConf, "smbd", "close-share", n); err != nil && !smbdNotRunning(err) {
				errs[i+1] = fmt.Errorf("disconnect the clients of share %s: %w", n, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	m.log().Debug("smb shares applied", "file", p.SMBInclude, "changed", changed, "shares", len(sectionNames(content)))
	return nil
}

// ErrSMBDNotRunning: Export wrote the SMB shares but no smbd serves them.
var ErrSMBDNotRunning = errors.New("smbd is not running")

// smbdNotRunning recognises smbcontrol's message for a destination with no
// process: "Can't find pid for destination 'smbd'".
func smbdNotRunning(err error) bool {
	var ce *command.Error
	if errors.As(err, &ce) {
		return strings.Contains(ce.Stderr, "Can't find pid")
	}
	return strings.Contains(err.Error(), "Can't find pid")
}

// checkInclude verifies that smb.conf's [global] section includes file as
// its last parameter. It returns an error that names the line to add, or
// what follows the include line and would end up inside zrepl-ha's last
// share. zrepl-ha never edits smb.conf.
func checkInclude(confPath string, conf []byte, file string) error {
	want := "include = " + file
	section := ""
	found := 0        // line of our include in [global], 0 = none
	trailing := false // between our include and the next section header
	var elsewhere []int
	lines := strings.Split(string(conf), "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		// A trailing backslash continues the line.
		for strings.HasSuffix(line, `\`) && i+1 < len(lines) {
			i++
			line = strings.TrimSuffix(line, `\`) + strings.TrimSpace(lines[i])
		}
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") {
			section = strings.ToLower(strings.TrimSpace(strings.Trim(line, "[]")))
			trailing = false
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		isOurs := normKey(k) == "include" && strings.TrimSpace(v) == file
		switch {
		case isOurs && section == "global":
			found, trailing = i+1, true
		case isOurs:
			elsewhere = append(elsewhere, i+1)
		case trailing:
			return fmt.Errorf("%s:%d: %q follows %q (line %d) in [global]; Samba reads the include as if its text stood there, so this line would land in zrepl-ha's last share: move the include line to the end of [global]",
				confPath, i+1, line, want, found)
		}
	}
	if found > 0 {
		return nil
	}
	if len(elsewhere) > 0 {
		return fmt.Errorf("%s:%d: %q is outside [global]; move it to the end of the [global] section", confPath, elsewhere[0], want)
	}
	return fmt.Errorf("%s does not include zrepl-ha's shares: add the line %q as the last line of its [global] section, then run 'smbcontrol smbd reload-config' (zrepl-ha never edits smb.conf)", confPath, want)
}

// hupSMBD sends SIGHUP to the smbd parent named by the pid file in smb.conf's
// pid directory, after checking that the process is an smbd (a stale pid
// file can name any process by now).
func (m *Manager) hupSMBD(p Paths) (int, error) {
	conf, err := os.ReadFile(p.SMBConf)
	if err != nil {
		return 0, err
	}
	pidFile := filepath.Join(pidDirectory(conf), "smbd.pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("%s: not a pid: %q", pidFile, strings.TrimSpace(string(b)))
	}
	comm, err := os.ReadFile(filepath.Join(p.Proc, strconv.Itoa(pid), "comm"))
	if err != nil {
		return 0, fmt.Errorf("%s names pid %d: %w", pidFile, pid, err)
	}
	if c := strings.TrimSpace(string(comm)); c != "smbd" {
		return 0, fmt.Errorf("%s names pid %d, which is %q, not smbd", pidFile, pid, c)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return 0, fmt.Errorf("SIGHUP to smbd (pid %d): %w", pid, err)
	}
	return pid, nil
}

// reloadChildren runs smbcontrol reload-config, which the parent passes on
// to every smbd child; after a SIGHUP to the parent, it brings the clients
// already connected (to other shares) up to date.
func (m *Manager) reloadChildren(p Paths) {
	if m.ChildrenReloadAfter > 0 {
		time.Sleep(m.ChildrenReloadAfter)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := m.exec().Output(ctx, p.Smbcontrol, "-s", p.SMBConf, "smbd", "reload-config"); err != nil {
		m.log().Warn("smbd children not told of the new shares (new connections see them)", "err", err)
	}
}

// pidDirectory is smb.conf's [global] "pid directory", or Samba's default.
func pidDirectory(conf []byte) string {
	dir := "/run/samba"
	section := ""
	for _, line := range strings.Split(string(conf), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") {
			section = strings.ToLower(strings.TrimSpace(strings.Trim(line, "[]")))
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok && section == "global" && normKey(k) == "piddirectory" {
			dir = strings.TrimSpace(v)
		}
	}
	return dir
}
