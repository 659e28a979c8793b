package zfsrepl

import "testing"

func TestParseGet(t *testing.T) {
	got, err := parseGet([]byte("tank/a\tmountpoint\t/srv/a\ntank/a\tmounted\tyes\ntank/b\tmountpoint\tnone\ntank/b\tmounted\tno\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got["tank/a"]["mountpoint"] != "/srv/a" || got["tank/a"]["mounted"] != "yes" || got["tank/b"]["mountpoint"] != "none" || got["tank/b"]["mounted"] != "no" {
		t.Fatalf("%v", got)
	}
	if _, err := parseGet([]byte("tank/a mountpoint /srv\n")); err == nil {
		t.Fatal("a line without tabs parsed")
	}
}
