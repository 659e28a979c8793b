package shares

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/zrepl-ha/zrepl-ha/internal/config"
)

// ErrInvalid marks a share definition zrepl-ha refuses to write into a
// server's configuration. The message says what to fix.
var ErrInvalid = errors.New("invalid share")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// smbNameRE is the share name rule of the config file (docs/config.md):
// safe as an smb.conf section name and as an SMB share name on every
// client. Names are case-insensitive.
var smbNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

// smbReserved are smb.conf section names with a special meaning.
var smbReserved = []string{"global", "homes", "printers", "print$", "ipc$"}

// smbForbidden are parameters a share must not set: path (and its synonym
// directory) is the dataset's mountpoint, set by zrepl-ha; include and copy
// would pull other configuration into a section zrepl-ha owns.
var smbForbidden = map[string]string{
	"path":      "is set by zrepl-ha to the dataset's mountpoint; remove it",
	"directory": "is a synonym of path, which zrepl-ha sets to the dataset's mountpoint; remove it",
	"include":   "would pull another file into zrepl-ha's section; set the parameters directly",
	"copy":      "would copy another share's parameters into zrepl-ha's section; set the parameters directly",
}

// normKey is an smb.conf parameter name as Samba compares them: case and
// spaces do not matter ("Read Only" == "readonly").
func normKey(k string) string {
	return strings.ToLower(strings.Join(strings.Fields(k), ""))
}

// validateSMB checks every SMB share and that names are unique.
func validateSMB(shares []config.SMBShare) error {
	seen := map[string]string{}
	for _, s := range shares {
		lower := strings.ToLower(s.Name)
		switch {
		case !smbNameRE.MatchString(s.Name):
			return invalid("smb share name %q: use 1 to 80 characters of A-Z, a-z, 0-9, '_' and '-'", s.Name)
		case slices.Contains(smbReserved, lower):
			return invalid("smb share name %q is a reserved smb.conf section name; choose another", s.Name)
		}
		if prev, dup := seen[lower]; dup {
			return invalid("smb share names %q and %q are the same to Samba (names are case-insensitive); rename one", prev, s.Name)
		}
		seen[lower] = s.Name
		if s.Dataset == "" {
			return invalid("smb share %q has no dataset", s.Name)
		}
		keys := map[string]string{}
		for k, v := range s.Options {
			nk := normKey(k)
			switch {
			case nk == "" || strings.ContainsAny(k, "[]=;#\n\r\x00") || strings.HasSuffix(k, `\`):
				return invalid("smb share %q: option name %q is not an smb.conf parameter name (no '[', ']', '=', ';', '#', newlines)", s.Name, k)
			case smbForbidden[nk] != "":
				return invalid("smb share %q: option %q %s", s.Name, k, smbForbidden[nk])
			case strings.ContainsAny(v, "[]\n\r\x00"):
				return invalid("smb share %q: option %q = %q: values must be one line without '[' or ']'", s.Name, k, v)
			case strings.HasSuffix(strings.TrimSpace(v), `\`):
				return invalid("smb share %q: option %q = %q ends with '\\', which smb.conf reads as a line continuation; remove it", s.Name, k, v)
			}
			if prev, dup := keys[nk]; dup {
				return invalid("smb share %q: options %q and %q are the same smb.conf parameter; keep one", s.Name, prev, k)
			}
			keys[nk] = k
		}
	}
	return nil
}

// clientRE is one exports(5) client spec: a host name (wildcards allowed),
// an address or network (IPv4 or IPv6, with /prefix or /netmask), an
// @netgroup, or "*". Brackets, quotes and parentheses are refused: the
// options go in zrepl-ha's parentheses.
var clientRE = regexp.MustCompile(`^[A-Za-z0-9.:/*?@_-]+$`)

// nfsOptRE is one exports(5) option: name or name=value, no spaces,
// parentheses, quotes, commas or '#'.
var nfsOptRE = regexp.MustCompile(`^[A-Za-z0-9_]+(=[^\s(),"'#\\]+)?$`)

// validateNFS checks every NFS share and that datasets are unique.
func validateNFS(shares []config.NFSShare) error {
	seen := map[string]bool{}
	for _, s := range shares {
		if s.Dataset == "" {
			return invalid("nfs share with clients %q has no dataset", s.Clients)
		}
		if seen[s.Dataset] {
			return invalid("nfs dataset %s is listed twice; put all its client specs in one clients string", s.Dataset)
		}
		seen[s.Dataset] = true
		clients := strings.Fields(s.Clients)
		if len(clients) == 0 {
			return invalid("nfs share %s has no clients; list exports(5) client specs separated by spaces (\"*\" for everyone)", s.Dataset)
		}
		for _, c := range clients {
			if !clientRE.MatchString(c) || strings.HasPrefix(c, "-") {
				return invalid("nfs share %s: client %q is not an exports(5) client spec (host, address, network/prefix, @netgroup or *; options belong in options)", s.Dataset, c)
			}
		}
		if _, err := nfsOptions(s); err != nil {
			return err
		}
	}
	return nil
}

// nfsOptions splits a share's options and checks each.
func nfsOptions(s config.NFSShare) ([]string, error) {
	if strings.TrimSpace(s.Options) == "" {
		return nil, nil
	}
	opts := strings.Split(s.Options, ",")
	for _, o := range opts {
		if !nfsOptRE.MatchString(o) {
			return nil, invalid("nfs share %s: option %q is not an exports(5) option (name or name=value, separated by commas, no spaces, quotes or parentheses)", s.Dataset, o)
		}
	}
	return opts, nil
}
