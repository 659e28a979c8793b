package shares

import (
	"strings"
	"testing"

	"github.com/zrepl-ha/zrepl-ha/internal/config"
)

// FuzzSMBInclude: whatever passes validation renders as exactly one
// section with exactly the lines zrepl-ha meant, so no option can inject a
// section or a parameter.
func FuzzSMBInclude(f *testing.F) {
	f.Add("data", "read only", "no")
	f.Add("x", "comment", "a\n[global]\ninclude = /etc/passwd")
	f.Add("x", "path", "/etc")
	f.Fuzz(func(t *testing.T, name, key, value string) {
		shares := []config.SMBShare{{Name: name, Dataset: "tank/d", Options: map[string]string{key: value}}}
		if validateSMB(shares) != nil {
			return
		}
		sec := smbSection{Name: name, Path: "/tank/d", Options: [][2]string{{strings.TrimSpace(key), strings.TrimSpace(value)}}}
		b := includeFile("/etc/samba/zrepl-ha.conf", []smbSection{sec})
		if got := sectionNames(b); len(got) != 1 || got[0] != name {
			t.Fatalf("sections %q from %q", got, b)
		}
		var params []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "\t") {
				params = append(params, l)
			}
		}
		if len(params) != 2 || !strings.HasPrefix(params[0], "\tpath = ") {
			t.Fatalf("parameter lines %q", params)
		}
	})
}

// FuzzExports: valid NFS shares render one exports line each, whose first
// field is the escaped path.
func FuzzExports(f *testing.F) {
	f.Add("/tank/d", "* 198.18.0.0/15", "rw,no_subtree_check")
	f.Add("/a b\n/etc *(rw)", "*", "rw")
	f.Fuzz(func(t *testing.T, path, clients, opts string) {
		s := config.NFSShare{Dataset: "tank/d", Clients: clients, Options: opts}
		if validateNFS([]config.NFSShare{s}) != nil {
			return
		}
		o, _ := nfsOptions(s)
		b := exportsFile([]nfsEntry{{Path: path, Clients: strings.Fields(clients), Options: o}})
		got := parseExports(b)
		if len(got) != 1 || got[0] != exportsPath(path) {
			t.Fatalf("exports %q from %q", got, b)
		}
		if n := strings.Count(string(b), "\n"); n != strings.Count(exportsHeader, "\n")+1 {
			t.Fatalf("%d lines: %q", n, b)
		}
	})
}
