package shares

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/internal/command"
	"github.com/zrepl-ha/zrepl-ha/internal/config"
)

// fakeExec records command lines and fails those listed in fail.
type fakeExec struct {
	mu    sync.Mutex // Export runs exportfs and smbcontrol side by side
	calls []string
	fail  map[string]error // by command line prefix
}

func (f *fakeExec) Output(ctx context.Context, path string, args ...string) ([]byte, error) {
	line := command.Line(path, args)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, line)
	for prefix, err := range f.fail {
		if strings.HasPrefix(line, prefix) {
			return nil, err
		}
	}
	return nil, nil
}

// take returns the calls so far, exportfs before smbcontrol: the two
// servers are reloaded side by side, and only the order of each one's own
// commands is defined.
func (f *fakeExec) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	smb := func(line string) int {
		if strings.Contains(line, "exportfs") {
			return 0
		}
		return 1
	}
	slices.SortStableFunc(c, func(a, b string) int { return cmp.Compare(smb(a), smb(b)) })
	f.calls = nil
	return c
}

// fakeZFS answers mountpoint and mounted from maps.
type fakeZFS struct {
	mp      map[string]string
	mounted map[string]string
}

var errNotFound = errors.New("dataset does not exist")

func (z *fakeZFS) GetProperty(ctx context.Context, ds, prop string) (string, error) {
	mp, ok := z.mp[ds]
	if !ok {
		return "", fmt.Errorf("zfs get %s %s: %w", prop, ds, errNotFound)
	}
	switch prop {
	case "mountpoint":
		return mp, nil
	case "mounted":
		if v, ok := z.mounted[ds]; ok {
			return v, nil
		}
		return "yes", nil
	}
	return "-", nil
}

type rig struct {
	m    *Manager
	exec *fakeExec
	zfs  *fakeZFS
	dir  string
}

// pidFile makes smb.conf's pid directory name pid as smbd's, and a fake
// /proc say that pid's command is comm.
func (r *rig) pidFile(pid int, comm string) {
	p := strconv.Itoa(pid)
	proc := filepath.Join(r.dir, "proc")
	os.MkdirAll(filepath.Join(proc, p), 0o755)
	os.WriteFile(filepath.Join(proc, p, "comm"), []byte(comm+"\n"), 0o644)
	os.MkdirAll(filepath.Join(r.dir, "samba-pid"), 0o755)
	os.WriteFile(filepath.Join(r.dir, "samba-pid", "smbd.pid"), []byte(p+"\n"), 0o644)
	r.m.Paths.Proc = proc
}

func newRig(t *testing.T) *rig {
	dir := t.TempDir()
	threads := filepath.Join(dir, "proc-nfsd-threads")
	os.WriteFile(threads, []byte("8\n"), 0o644)
	smbConf := filepath.Join(dir, "samba", "smb.conf")
	os.MkdirAll(filepath.Dir(smbConf), 0o755)
	inc := filepath.Join(dir, "samba", "zrepl-ha.conf")
	// pid directory: a private one, so no test ever finds (and signals) a
	// real smbd on the machine running the tests.
	os.WriteFile(smbConf, []byte("[global]\n  workgroup = W\n  pid directory = "+filepath.Join(dir, "samba-pid")+"\n  include = "+inc+"\n\n[homes]\n  browseable = no\n"), 0o644)
	r := &rig{
		exec: &fakeExec{fail: map[string]error{}},
		zfs: &fakeZFS{mp: map[string]string{
			"tank/data":   "/tank/data",
			"tank/home":   "/srv/home dir",
			"tank/legacy": "legacy",
		}, mounted: map[string]string{}},
		dir: dir,
	}
	r.m = &Manager{
		NFS: []config.NFSShare{
			{Dataset: "tank/data", Clients: "198.18.0.0/15 *.lab", Options: "rw,no_subtree_check"},
			{Dataset: "tank/home", Clients: "*", Options: "ro,fsid=1234"},
		},
		SMB: []config.SMBShare{
			{Name: "data", Dataset: "tank/data", Options: map[string]string{"read only": "no", "Guest OK": "yes"}},
		},
		ZFS:  r.zfs,
		Exec: r.exec,
		Paths: Paths{
			Exports:     filepath.Join(dir, "exports.d", "zrepl-ha.exports"),
			NFSConf:     filepath.Join(dir, "nfs.conf.d", "zrepl-ha.conf"),
			NFSDThreads: threads,
			SMBInclude:  inc,
			SMBConf:     smbConf,
			Exportfs:    "/usr/sbin/exportfs",
			Smbcontrol:  "/usr/bin/smbcontrol",
			Proc:        filepath.Join(dir, "proc"), // no mountinfo unless a test writes one
		},
	}
	return r
}

func (r *rig) read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestExportWritesFiles(t *testing.T) {
	r := newRig(t)
	if err := r.m.Export(ctx(t)); err != nil {
		t.Fatal(err)
	}
	wantExports := exportsHeader +
		"/tank/data 198.18.0.0/15(rw,no_subtree_check,fsid=" + FSID("tank/data") + ") *.lab(rw,no_subtree_check,fsid=" + FSID("tank/data") + ")\n" +
		"/srv/home\\040dir *(ro,fsid=1234)\n"
	if got := r.read(t, r.m.Paths.Exports); got != wantExports {
		t.Errorf("exports file:\n%s\nwant:\n%s", got, wantExports)
	}
	inc := r.read(t, r.m.Paths.SMBInclude)
	wantSMB := "\n[data]\n\tpath = /tank/data\n\tGuest OK = yes\n\tread only = no\n"
	if !strings.HasSuffix(inc, wantSMB) || !strings.Contains(inc, "include = "+r.m.Paths.SMBInclude) {
		t.Errorf("include file:\n%s\nwant it to end with:\n%s", inc, wantSMB)
	}
	want := []string{
		"/usr/sbin/exportfs -r",
		"/usr/bin/smbcontrol -s " + r.m.Paths.SMBConf + " smbd reload-config",
	}
	if got := r.exec.take(); !slices.Equal(got, want) {
		t.Errorf("commands %q, want %q", got, want)
	}
	if ok, err := r.m.Exported(ctx(t)); err != nil || !ok {
		t.Errorf("Exported = %v, %v after Export", ok, err)
	}
	r.onlyOurFiles(t)
}

// onlyOurFiles: nothing but the owned files (and the fixtures) exists.
func (r *rig) onlyOurFiles(t *testing.T) {
	t.Helper()
	allowed := map[string]bool{
		r.m.Paths.Exports: true, r.m.Paths.SMBInclude: true, r.m.Paths.NFSConf: true,
		r.m.Paths.SMBConf: true, r.m.Paths.NFSDThreads: true,
	}
	filepath.Walk(r.dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && !allowed[p] {
			t.Errorf("unexpected file %s", p)
		}
		return nil
	})
}

func TestExportIdempotent(t *testing.T) {
	r := newRig(t)
	if err := r.m.Export(ctx(t)); err != nil {
		t.Fatal(err)
	}
	first := r.exec.take()
	exp, inc := r.read(t, r.m.Paths.Exports), r.read(t, r.m.Paths.SMBInclude)
	past := time.Now().Add(-time.Hour)
	os.Chtimes(r.m.Paths.Exports, past, past)
	if err := r.m.Export(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if got := r.exec.take(); !slices.Equal(got, first) {
		t.Errorf("second Export ran %q, first %q", got, first)
	}
	if r.read(t, r.m.Paths.Exports) != exp || r.read(t, r.m.Paths.SMBInclude) != inc {
		t.Error("second Export changed the files")
	}
	if st, _ := os.Stat(r.m.Paths.Exports); !st.ModTime().Equal(past) {
		t.Error("second Export rewrote an unchanged exports file")
	}
	r.onlyOurFiles(t)
}

func TestUnexport(t *testing.T) {
	r := newRig(t)
	r.m.SMB = append(r.m.SMB, config.SMBShare{Name: "Home", Dataset: "tank/home"})
	if err := r.m.Export(ctx(t)); err != nil {
		t.Fatal(err)
	}
	r.exec.take()
	if err := r.m.Unexport(ctx(t)); err != nil {
		t.Fatal(err)
	}
	conf := r.m.Paths.SMBConf
	want := []string{
		"/usr/sbin/exportfs -r",
		"/usr/bin/smbcontrol -s " + conf + " smbd reload-config",
		"/usr/bin/smbcontrol -s " + conf + " smbd close-share data",
		"/usr/bin/smbcontrol -s " + conf + " smbd close-share Home",
	}
	// NFS and SMB, and smbcontrol's runs, go side by side: any order.
	if got := r.exec.take(); !sameSet(got, want) {
		t.Errorf("Unexport ran %q, want %q", got, want)
	}
	if got := r.read(t, r.m.Paths.Exports); got != exportsHeader {
		t.Errorf("exports file after Unexport:\n%s", got)
	}
	if got := sectionNames([]byte(r.read(t, r.m.Paths.SMBInclude))); len(got) != 0 {
		t.Errorf("include file still has sections %q", got)
	}
	if ok, err := r.m.Exported(ctx(t)); err != nil || ok {
		t.Errorf("Exported = %v, %v after Unexport", ok, err)
	}
	// Again: the servers are told again (a crash may have come between the
	// write and the reload), but no share is left to close.
	if err := r.m.Unexport(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if got := r.exec.take(); !sameSet(got, want[:2]) {
		t.Errorf("second Unexport ran %q, want %q", got, want[:2])
	}
	r.onlyOurFiles(t)
}

// Unexport works from the files, so a share dropped from the config since
// the last Export is still taken away.
func TestUnexportAfterConfigChange(t *testing.T) {
	r := newRig(t)
	if err := r.m.Export(ctx(t)); err != nil {
		t.Fatal(err)
	}
	r.exec.take()
	r.m.NFS, r.m.SMB = nil, nil
	if err := r.m.Unexport(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if got := r.exec.take(); len(got) != 3 || !slices.ContainsFunc(got, func(c string) bool { return strings.HasSuffix(c, "close-share data") }) {
		t.Errorf("Unexport ran %q", got)
	}
	if ok, _ := r.m.Exported(ctx(t)); ok {
		t.Error("still exported")
	}
}

// With no shares and no files, nothing is run: a node without Samba or
// the NFS server installed is fine.
func TestNoSharesTouchesNothing(t *testing.T) {
	r := newRig(t)
	r.m.NFS, r.m.SMB = nil, nil
	for _, f := range []func(context.Context) error{r.m.Export, r.m.Unexport, r.m.Check} {
		if err := f(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	if got := r.exec.take(); len(got) != 0 {
		t.Errorf("ran %q", got)
	}
	if exists(r.m.Paths.Exports) || exists(r.m.Paths.SMBInclude) {
		t.Error("wrote files with no shares configured")
	}
}

func TestSMBDNotRunning(t *testing.T) {
	r := newRig(t)
	notRunning := &command.Error{Path: "/usr/bin/smbcontrol", Args: []string{"smbd", "reload-config"}, ExitCode: 1, Stderr: "Can't find pid for destination 'smbd'", Err: errors.New("exit status 1")}
	r.exec.fail["/usr/bin/smbcontrol"] = notRunning
	err := r.m.Export(ctx(t))
	if !errors.Is(err, ErrSMBDNotRunning) || !strings.Contains(err.Error(), "systemctl start smbd") || !strings.Contains(err.Error(), "reload-config") {
		t.Errorf("Export with smbd down: %v", err)
	}
	if err := r.m.Unexport(ctx(t)); err != nil {
		t.Errorf("Unexport with smbd down: %v (nothing is served, so it is done)", err)
	}
	// Any other smbcontrol failure is an error, with the command line.
	r.exec.fail["/usr/bin/smbcontrol"] = &command.Error{Path: "/usr/bin/smbcontrol", Args: []string{"smbd"}, ExitCode: 1, Stderr: "permission denied", Err: errors.New("exit status 1")}
	if err := r.m.Unexport(ctx(t)); err == nil || !strings.Contains(err.Error(), "/usr/bin/smbcontrol smbd: permission denied") {
		t.Errorf("Unexport with smbcontrol failing: %v", err)
	}
}

func TestExportRefusesBeforeWriting(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(r *rig)
		want   error
		msg    string
	}{
		{"unmounted", func(r *rig) { r.zfs.mounted["tank/home"] = "no" }, ErrNotMounted, "zfs mount tank/home"},
		{"legacy mountpoint", func(r *rig) { r.m.SMB[0].Dataset = "tank/legacy" }, ErrNotMounted, "zfs set mountpoint=/PATH tank/legacy"},
		{"missing dataset", func(r *rig) { r.m.NFS[0].Dataset = "tank/nope" }, errNotFound, "tank/nope"},
		{"percent in mountpoint", func(r *rig) { r.zfs.mp["tank/data"] = "/srv/%U" }, ErrInvalid, "'%'"},
		{"path option", func(r *rig) { r.m.SMB[0].Options["Path"] = "/etc" }, ErrInvalid, "mountpoint; remove it"},
		{"nfs not running", func(r *rig) { os.WriteFile(r.m.Paths.NFSDThreads, []byte("0\n"), 0o644) }, nil, "NFS server is not running"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			tc.change(r)
			err := r.m.Export(ctx(t))
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Export: %v, want %v mentioning %q", err, tc.want, tc.msg)
			}
			if exists(r.m.Paths.Exports) || exists(r.m.Paths.SMBInclude) {
				t.Error("files written although Export refused")
			}
			if got := r.exec.take(); len(got) != 0 {
				t.Errorf("ran %q", got)
			}
		})
	}
}

func TestExportfsFailure(t *testing.T) {
	r := newRig(t)
	r.exec.fail["/usr/sbin/exportfs"] = &command.Error{Path: "/usr/sbin/exportfs", Args: []string{"-r"}, ExitCode: 1, Stderr: "exportfs: /tank/data does not support NFS export", Err: errors.New("exit status 1")}
	err := r.m.Export(ctx(t))
	var ce *command.Error
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "/usr/sbin/exportfs -r: exportfs: /tank/data does not support NFS export") {
		t.Errorf("Export: %v", err)
	}
}

func TestCheck(t *testing.T) {
	r := newRig(t)
	if err := r.m.Check(ctx(t)); err != nil {
		t.Fatalf("Check on a good setup: %v", err)
	}
	conf := r.m.Paths.SMBConf
	if got := r.exec.take(); !slices.Equal(got, []string{"/usr/sbin/exportfs -s", "/usr/bin/smbcontrol -s " + conf + " smbd ping"}) {
		t.Errorf("Check ran %q", got)
	}
	os.WriteFile(conf, []byte("[global]\n workgroup = W\n"), 0o644)
	os.Remove(r.m.Paths.NFSDThreads)
	r.zfs.mounted["tank/home"] = "no"
	r.exec.fail["/usr/bin/smbcontrol"] = errors.New("Can't find pid for destination 'smbd'")
	err := r.m.Check(ctx(t))
	for _, want := range []string{
		`add the line "include = ` + r.m.Paths.SMBInclude + `" as the last line of its [global] section`,
		"the NFS server is not running",
		"tank/home is not mounted",
		"smbd is not running",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check error lacks %q:\n%v", want, err)
		}
	}
	if exists(r.m.Paths.Exports) || exists(r.m.Paths.SMBInclude) {
		t.Error("Check wrote files")
	}
}

func TestCheckInclude(t *testing.T) {
	const inc = "/etc/samba/zrepl-ha.conf"
	for _, tc := range []struct {
		name, conf, want string
	}{
		{"last in global", "[global]\n\tworkgroup = W\n\tinclude = /etc/samba/zrepl-ha.conf\n[homes]\n\tpath = /home\n", ""},
		{"end of file", "[global]\nworkgroup=W\n[x]\npath=/x\n[global]\n  INCLUDE=/etc/samba/zrepl-ha.conf  \n# done\n", ""},
		{"global again later", "[global]\ninclude = /etc/samba/zrepl-ha.conf\n[x]\npath=/x\n[global]\nlog level = 1\n", ""},
		{"continued line", "[global]\ninclude = \\\n /etc/samba/zrepl-ha.conf\n", ""},
		{"missing", "[global]\nworkgroup = W\n", `add the line "include = /etc/samba/zrepl-ha.conf" as the last line of its [global] section`},
		{"commented out", "[global]\n; include = /etc/samba/zrepl-ha.conf\n", "add the line"},
		{"other file", "[global]\ninclude = /etc/samba/other.conf\n", "add the line"},
		{"in a share", "[global]\nworkgroup = W\n[homes]\ninclude = /etc/samba/zrepl-ha.conf\n", "smb.conf:4: \"include = /etc/samba/zrepl-ha.conf\" is outside [global]"},
		{"followed by global params", "[global]\ninclude = /etc/samba/zrepl-ha.conf\n\n# log\nlog level = 1\n", "smb.conf:5: \"log level = 1\" follows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkInclude("smb.conf", []byte(tc.conf), inc)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	nfs := func(ds, clients, opts string) []config.NFSShare {
		return []config.NFSShare{{Dataset: ds, Clients: clients, Options: opts}}
	}
	smb := func(name string, opts map[string]string) []config.SMBShare {
		return []config.SMBShare{{Name: name, Dataset: "tank/d", Options: opts}}
	}
	for _, tc := range []struct {
		name string
		m    Manager
		want string // "" = valid
	}{
		{"good", Manager{NFS: nfs("tank/d", "198.18.0.0/15 host.lab @ng *.lab 2001:db8::/32", "rw,sec=krb5:krb5i,anonuid=65534"), SMB: smb("Data_1-x", map[string]string{"valid users": "@staff", "comment": "100% done"})}, ""},
		{"no options", Manager{NFS: nfs("tank/d", "*", "")}, ""},
		{"nfs no clients", Manager{NFS: nfs("tank/d", "  ", "rw")}, "has no clients"},
		{"nfs client with options", Manager{NFS: nfs("tank/d", "host(rw)", "rw")}, `client "host(rw)" is not an exports(5) client spec`},
		{"nfs client dash", Manager{NFS: nfs("tank/d", "-rw", "rw")}, "client \"-rw\""},
		{"nfs option space", Manager{NFS: nfs("tank/d", "*", "rw, sync")}, `option " sync"`},
		{"nfs option paren", Manager{NFS: nfs("tank/d", "*", "rw)")}, `option "rw)"`},
		{"nfs option newline", Manager{NFS: nfs("tank/d", "*", "rw\n/etc *")}, "is not an exports(5) option"},
		{"nfs duplicate", Manager{NFS: append(nfs("tank/d", "a", "rw"), nfs("tank/d", "b", "ro")...)}, "listed twice"},
		{"smb bad name", Manager{SMB: smb("my share", nil)}, `smb share name "my share": use 1 to 80 characters`},
		{"smb long name", Manager{SMB: smb(strings.Repeat("a", 81), nil)}, "use 1 to 80"},
		{"smb reserved", Manager{SMB: smb("Global", nil)}, "reserved"},
		{"smb ipc", Manager{SMB: smb("IPC$", nil)}, "use 1 to 80"},
		{"smb duplicate", Manager{SMB: append(smb("data", nil), smb("DATA", nil)...)}, "case-insensitive"},
		{"smb path", Manager{SMB: smb("d", map[string]string{" Pa th ": "/x"})}, "set by zrepl-ha"},
		{"smb directory", Manager{SMB: smb("d", map[string]string{"directory": "/x"})}, "synonym of path"},
		{"smb include", Manager{SMB: smb("d", map[string]string{"include": "/x"})}, "another file"},
		{"smb key bracket", Manager{SMB: smb("d", map[string]string{"[global]": "x"})}, "not an smb.conf parameter name"},
		{"smb key newline", Manager{SMB: smb("d", map[string]string{"a\nb": "x"})}, "not an smb.conf parameter name"},
		{"smb value newline", Manager{SMB: smb("d", map[string]string{"comment": "x\n[evil]"})}, "values must be one line"},
		{"smb value bracket", Manager{SMB: smb("d", map[string]string{"comment": "[x]"})}, "without '[' or ']'"},
		{"smb value continuation", Manager{SMB: smb("d", map[string]string{"comment": `x\`})}, "line continuation"},
		{"smb same key twice", Manager{SMB: smb("d", map[string]string{"read only": "no", "readonly": "yes"})}, "same smb.conf parameter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.m.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrInvalid with %q", err, tc.want)
			}
		})
	}
}

func TestFSID(t *testing.T) {
	a := FSID("tank/data")
	if a != FSID("tank/data") {
		t.Fatal("FSID is not stable")
	}
	// Pinned: both nodes, and every zrepl-ha version, must agree, or NFS
	// clients get ESTALE after a failover or an upgrade.
	if a != "96360667-6dbb-8b4b-340d-51f728a01fa3" {
		t.Fatalf("FSID(tank/data) = %s: the derivation changed, which breaks every NFS client across an upgrade", a)
	}
	if a == FSID("tank/data2") {
		t.Fatal("different datasets, same fsid")
	}
	if len(a) != 36 || strings.Count(a, "-") != 4 {
		t.Fatalf("FSID %q is not a UUID", a)
	}
}

func TestExportsPath(t *testing.T) {
	for in, want := range map[string]string{
		"/tank/data":       "/tank/data",
		"/srv/a b":         `/srv/a\040b`,
		"/srv/x\ty#z\"q\\": `/srv/x\011y\043z\042q\134`,
		"/srv/é":           `/srv/\303\251`,
	} {
		if got := exportsPath(in); got != want {
			t.Errorf("exportsPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNFSConf(t *testing.T) {
	b, err := NFSConf(10*time.Second, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(b), "[nfsd]\ngrace-time=10\nlease-time=10\n") {
		t.Errorf("NFSConf:\n%s", b)
	}
	for _, bad := range [][2]time.Duration{{5 * time.Second, 10 * time.Second}, {10 * time.Second, 2 * time.Hour}, {10500 * time.Millisecond, 10 * time.Second}} {
		if _, err := NFSConf(bad[0], bad[1]); !errors.Is(err, ErrInvalid) {
			t.Errorf("NFSConf(%v, %v) = %v, want ErrInvalid", bad[0], bad[1], err)
		}
	}
	r := newRig(t)
	if changed, err := r.m.WriteNFSConf(10*time.Second, 10*time.Second); err != nil || !changed {
		t.Fatalf("WriteNFSConf: %v, %v", changed, err)
	}
	if changed, err := r.m.WriteNFSConf(10*time.Second, 10*time.Second); err != nil || changed {
		t.Fatalf("second WriteNFSConf: changed=%v, %v", changed, err)
	}
	if r.read(t, r.m.Paths.NFSConf) != string(b) {
		t.Error("drop-in content differs")
	}
	r.onlyOurFiles(t)
}

func TestDefaultPaths(t *testing.T) {
	p := (Paths{Exports: "/x"}).withDefaults()
	if p.Exports != "/x" || p.SMBInclude != "/etc/samba/zrepl-ha.conf" || p.SMBConf != "/etc/samba/smb.conf" ||
		p.NFSConf != "/etc/nfs.conf.d/zrepl-ha.conf" || p.Exportfs != "exportfs" {
		t.Errorf("withDefaults: %+v", p)
	}
	if d := DefaultPaths(); d.Exports != "/etc/exports.d/zrepl-ha.exports" {
		t.Errorf("DefaultPaths: %+v", d)
	}
}

// batchZFS adds GetProperties to fakeZFS and counts the calls of each kind.
type batchZFS struct {
	*fakeZFS
	batches, singles int
}

func (b *batchZFS) GetProperty(ctx context.Context, ds, prop string) (string, error) {
	b.singles++
	return b.fakeZFS.GetProperty(ctx, ds, prop)
}

func (b *batchZFS) GetProperties(ctx context.Context, dss []string, props ...string) (map[string]map[string]string, error) {
	b.batches++
	out := map[string]map[string]string{}
	for _, ds := range dss {
		out[ds] = map[string]string{}
		for _, p := range props {
			v, err := b.fakeZFS.GetProperty(ctx, ds, p)
			if err != nil {
				return nil, err
			}
			out[ds][p] = v
		}
	}
	return out, nil
}

// TestExportReadsMountsInOneCall: with a ZFS that can, Export reads every
// shared dataset's mountpoint in one zfs get; the files are the same as
// with one call per property.
func TestExportReadsMountsInOneCall(t *testing.T) {
	one := newRig(t)
	if err := one.m.Export(ctx(t)); err != nil {
		t.Fatal(err)
	}
	r := newRig(t)
	b := &batchZFS{fakeZFS: r.zfs}
	r.m.ZFS = b
	if err := r.m.Export(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if b.batches != 1 || b.singles != 0 {
		t.Errorf("%d batch and %d single property reads, want 1 and 0", b.batches, b.singles)
	}
	if r.read(t, r.m.Paths.Exports) != one.read(t, one.m.Paths.Exports) {
		t.Errorf("exports differ:\n%s\n%s", r.read(t, r.m.Paths.Exports), one.read(t, one.m.Paths.Exports))
	}
	// A batch that fails (a dataset is gone) falls back to single reads,
	// which name the dataset in the error.
	r.zfs.mp = map[string]string{"tank/data": "/tank/data"}
	if err := r.m.Export(ctx(t)); err == nil || !errors.Is(err, errNotFound) || !strings.Contains(err.Error(), "tank/home") {
		t.Errorf("Export with a dataset gone: %v", err)
	}
}

// TestExportSIGHUPsSMBD: Export reloads smbd with a SIGHUP to the parent
// named by the pid file in smb.conf's pid directory, and tells the
// children with smbcontrol in the background. A pid file naming some
// other process falls back to smbcontrol and signals nothing.
// hupDefault has the test process catch SIGHUP while it runs, so the
// processes it starts get SIGHUP's default action at exec: started under
// nohup (or any parent that ignores SIGHUP) they would inherit the ignore,
// and the fake smbd would never see the SIGHUP the test looks for (these
// tests failed that way in a make test run under nohup).
func hupDefault(t *testing.T) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGHUP)
	t.Cleanup(func() { signal.Stop(c) })
}

func TestExportSIGHUPsSMBD(t *testing.T) {
	hupDefault(t)
	for _, tc := range []struct {
		comm   string
		hupped bool
	}{{"smbd", true}, {"bash", false}} {
		t.Run(tc.comm, func(t *testing.T) {
			r := newRig(t)
			victim := exec.Command("sleep", "60")
			if err := victim.Start(); err != nil {
				t.Skip("no sleep binary:", err)
			}
			exited := make(chan error, 1)
			go func() { exited <- victim.Wait() }()
			t.Cleanup(func() { victim.Process.Kill() })
			r.pidFile(victim.Process.Pid, tc.comm)
			if err := r.m.Export(ctx(t)); err != nil {
				t.Fatal(err)
			}
			reload := "/usr/bin/smbcontrol -s " + r.m.Paths.SMBConf + " smbd reload-config"
			var calls []string
			for i := 0; i < 500; i++ { // the children's reload is in the background
				calls = append(calls, r.exec.take()...)
				if slices.Contains(calls, reload) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if !slices.Equal(calls, []string{"/usr/sbin/exportfs -r", reload}) {
				t.Errorf("commands %q", calls)
			}
			select {
			case err := <-exited:
				if !tc.hupped || !strings.Contains(fmt.Sprint(err), "hangup") {
					t.Errorf("the process named by the pid file (%s) ended: %v", tc.comm, err)
				}
			case <-time.After(map[bool]time.Duration{true: 30 * time.Second, false: 500 * time.Millisecond}[tc.hupped]):
				if tc.hupped {
					t.Error("smbd's pid got no SIGHUP")
				}
			}
		})
	}
}

// TestExportFindsMountsInMountinfo: datasets mounted at their own root are
// found in /proc/self/mountinfo, so Export runs no zfs command at all;
// bind mounts of a subdirectory and other filesystems are ignored.
func TestExportFindsMountsInMountinfo(t *testing.T) {
	r := newRig(t)
	b := &batchZFS{fakeZFS: r.zfs}
	r.m.ZFS = b
	os.MkdirAll(filepath.Join(r.m.Paths.Proc, "self"), 0o755)
	mountinfo := "" +
		"22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n" +
		"90 22 0:50 /sub /elsewhere rw shared:40 - zfs tank/home rw,xattr\n" +
		"91 22 0:51 / /tank/data rw,noatime shared:41 - zfs tank/data rw,xattr,noacl\n" +
		"92 22 0:52 / /srv/home\\040dir rw,noatime shared:42 master:3 - zfs tank/home rw,xattr\n"
	os.WriteFile(filepath.Join(r.m.Paths.Proc, "self", "mountinfo"), []byte(mountinfo), 0o644)
	if err := r.m.Export(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if b.batches != 0 || b.singles != 0 {
		t.Errorf("%d batch and %d single property reads, want none", b.batches, b.singles)
	}
	if got := r.read(t, r.m.Paths.Exports); !strings.Contains(got, "/srv/home\\040dir *(ro,fsid=1234)") || !strings.Contains(got, "/tank/data ") {
		t.Errorf("exports file:\n%s", got)
	}
	// Only tank/data mounted: the others come from one zfs get.
	os.WriteFile(filepath.Join(r.m.Paths.Proc, "self", "mountinfo"), []byte("91 22 0:51 / /tank/data rw - zfs tank/data rw\n"), 0o644)
	if err := r.m.Export(ctx(t)); err != nil || b.batches != 1 {
		t.Errorf("partly mounted: err %v, %d batch reads, want 1", err, b.batches)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestUnexportSIGHUPsSMBD: Unexport reloads the smbd parent by SIGHUP,
// waits for close-share of each share gone, and leaves the children's
// reload-config to the background.
func TestUnexportSIGHUPsSMBD(t *testing.T) {
	hupDefault(t)
	r := newRig(t)
	hups := filepath.Join(r.dir, "hups")
	ready := filepath.Join(r.dir, "trap-set")
	victim := exec.Command("sh", "-c", `trap 'echo hup >> "$0"' HUP; : > "$1"; i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done`, hups, ready)
	if err := victim.Start(); err != nil {
		t.Skip("no sh:", err)
	}
	t.Cleanup(func() { victim.Process.Kill(); victim.Wait() })
	// A SIGHUP before the trap is set ends the shell: wait for it (a fixed
	// sleep was too short under the full -race run's load).
	for i := 0; ; i++ {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if i == 1000 {
			t.Fatal("the shell never set its trap")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.pidFile(victim.Process.Pid, "smbd")
	if err := r.m.Export(ctx(t)); err != nil {
		t.Fatal(err)
	}
	reload := "/usr/bin/smbcontrol -s " + r.m.Paths.SMBConf + " smbd reload-config"
	drain := func() (calls []string) {
		for i := 0; i < 500; i++ {
			calls = append(calls, r.exec.take()...)
			if slices.Contains(calls, reload) {
				return calls
			}
			time.Sleep(10 * time.Millisecond)
		}
		return calls
	}
	drain()
	// Two SIGHUPs pending at once are one: let the shell take the first.
	for i := 0; i < 100; i++ {
		if b, _ := os.ReadFile(hups); len(b) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := r.m.Unexport(ctx(t)); err != nil {
		t.Fatal(err)
	}
	waited := r.exec.take() // what Unexport waited for
	if !sameSet(waited, []string{"/usr/sbin/exportfs -r", "/usr/bin/smbcontrol -s " + r.m.Paths.SMBConf + " smbd close-share data"}) &&
		!sameSet(waited, []string{"/usr/sbin/exportfs -r", "/usr/bin/smbcontrol -s " + r.m.Paths.SMBConf + " smbd close-share data", reload}) {
		t.Errorf("Unexport ran %q", waited)
	}
	rest := waited
	if !slices.Contains(rest, reload) {
		rest = append(rest, drain()...)
	}
	if !slices.Contains(rest, reload) {
		t.Errorf("no reload-config for the children: %q", rest)
	}
	for i := 0; i < 100; i++ {
		if b, _ := os.ReadFile(hups); strings.Count(string(b), "hup") >= 2 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, _ := os.ReadFile(hups)
	t.Errorf("smbd got %d SIGHUPs, want 2 (Export, Unexport)", strings.Count(string(b), "hup"))
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", `/plain`: "/plain", `/t\011ab\134`: "/t\tab\\", `/odd\04`: `/odd\04`} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestZFSMounts(t *testing.T) {
	mi := "" +
		"22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n" +
		"90 22 0:50 /sub /elsewhere rw shared:40 - zfs tank/home rw,xattr\n" +
		"91 22 0:51 / /tank/data rw,noatime shared:41 - zfs tank/data rw,xattr,noacl\n" +
		"92 22 0:52 / /srv/home\\040dir rw,noatime shared:42 master:3 - zfs tank/home rw,xattr\n" +
		"93 22 0:53 / /again rw - zfs tank/data rw\n"
	got := zfsMounts([]byte(mi))
	want := map[string]string{"tank/data": "/tank/data", "tank/home": "/srv/home dir"}
	if len(got) != len(want) || got["tank/data"] != want["tank/data"] || got["tank/home"] != want["tank/home"] {
		t.Errorf("zfsMounts = %v, want %v", got, want)
	}
}

// TestChildrenReloadWaits: with ChildrenReloadAfter set, the children's
// reload-config after a SIGHUP comes that much later (the daemon keeps it
// off a promotion's first seconds), and Export does not wait for it.
func TestChildrenReloadWaits(t *testing.T) {
	hupDefault(t)
	r := newRig(t)
	r.m.ChildrenReloadAfter = 400 * time.Millisecond
	victim := exec.Command("sleep", "60")
	if err := victim.Start(); err != nil {
		t.Skip("no sleep binary:", err)
	}
	t.Cleanup(func() { victim.Process.Kill(); victim.Wait() })
	r.pidFile(victim.Process.Pid, "smbd")
	start := time.Now()
	if err := r.m.Export(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= r.m.ChildrenReloadAfter {
		t.Fatalf("Export took %s: it waited for the delayed reload", took)
	}
	reload := "/usr/bin/smbcontrol -s " + r.m.Paths.SMBConf + " smbd reload-config"
	var calls []string
	var at time.Duration
	for i := 0; i < 300 && at == 0; i++ {
		calls = append(calls, r.exec.take()...)
		if slices.Contains(calls, reload) {
			at = time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if at < r.m.ChildrenReloadAfter || at > r.m.ChildrenReloadAfter+2*time.Second {
		t.Fatalf("reload-config %s after Export (commands %q); want after %s", at, calls, r.m.ChildrenReloadAfter)
	}
}
