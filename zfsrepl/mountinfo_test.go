package zfsrepl

import "testing"

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", `/plain`: "/plain", `/t\011ab\134`: "/t\tab\\", `/odd\04`: `/odd\04`} {
		if got := UnescapeMount(in); got != want {
			t.Errorf("UnescapeMount(%q) = %q, want %q", in, got, want)
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
	got := ZFSMounts([]byte(mi))
	want := map[string]string{"tank/data": "/tank/data", "tank/home": "/srv/home dir"}
	if len(got) != len(want) || got["tank/data"] != want["tank/data"] || got["tank/home"] != want["tank/home"] {
		t.Errorf("ZFSMounts = %v, want %v", got, want)
	}
}
