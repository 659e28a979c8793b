package zfsrepl

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestSendArgs(t *testing.T) {
	cases := []struct {
		name string
		o    SendOptions
		dry  bool
		want string // space-joined, or "ERR:substring"
	}{
		{"full", SendOptions{Snapshot: "p/a@s2"}, false, "p/a@s2"},
		{"inc", SendOptions{Snapshot: "p/a@s2", From: "@s1"}, false, "-i p/a@s1 p/a@s2"},
		{"inc-I", SendOptions{Snapshot: "p/a@s3", From: "p/a@s1", Intermediates: true}, false, "-I p/a@s1 p/a@s3"},
		{"bookmark", SendOptions{Snapshot: "p/a@s2", From: "#b1"}, false, "-i p/a#b1 p/a@s2"},
		{"bookmark-I", SendOptions{Snapshot: "p/a@s2", From: "#b1", Intermediates: true}, false, "ERR:bookmark"},
		{"flags", SendOptions{Snapshot: "p/a@s", Raw: true, Compressed: true, LargeBlocks: true, Embedded: true, Props: true}, false, "-w -c -L -e -p p/a@s"},
		{"dry", SendOptions{Snapshot: "p/a@s"}, true, "-n -v -P p/a@s"},
		{"token", SendOptions{ResumeToken: "1-abc-def"}, false, "-t 1-abc-def"},
		{"token+snap", SendOptions{ResumeToken: "1-abc", Snapshot: "p/a@s"}, false, "ERR:resume token"},
		{"token-option", SendOptions{ResumeToken: "-R"}, false, "ERR:malformed"},
		{"bad-snap", SendOptions{Snapshot: "-R"}, false, "ERR:invalid"},
		{"bad-from", SendOptions{Snapshot: "p/a@s", From: "@-x"}, false, "ERR:invalid"},
		{"I-no-from", SendOptions{Snapshot: "p/a@s", Intermediates: true}, false, "ERR:needs From"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := sendArgs(c.o, c.dry)
			if rest, isErr := strings.CutPrefix(c.want, "ERR:"); isErr {
				if err == nil || !strings.Contains(err.Error(), rest) {
					t.Fatalf("want error containing %q, got %v, %v", rest, got, err)
				}
				return
			}
			if err != nil || strings.Join(got, " ") != c.want {
				t.Fatalf("got %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestRecvArgs(t *testing.T) {
	got, err := recvArgs("p/b", RecvOptions{Resumable: true, NoMount: true, Set: map[string]string{"readonly": "on", "canmount": "noauto"}, Exclude: []string{"mountpoint"}})
	want := []string{"-s", "-u", "-o", "canmount=noauto", "-o", "readonly=on", "-x", "mountpoint", "p/b"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q %v", got, err)
	}
	if got, _ := recvArgs("p/b", RecvOptions{}); reflect.DeepEqual(got, []string{"-F", "p/b"}) {
		t.Fatal("-F without asking")
	}
	if got, _ := recvArgs("p/b", RecvOptions{Force: true}); !reflect.DeepEqual(got, []string{"-F", "p/b"}) {
		t.Fatalf("explicit force: %q", got)
	}
	if _, err := recvArgs("-o", RecvOptions{}); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("option-looking target accepted: %v", err)
	}
	if _, err := recvArgs("p/b", RecvOptions{Set: map[string]string{"-x": "1"}}); err == nil {
		t.Fatal("option-looking property accepted")
	}
}

func TestParseSendSize(t *testing.T) {
	out := "full\tp/a@s\t123456\nsize\t123456\n"
	if n, err := parseSendSize([]byte(out)); err != nil || n != 123456 {
		t.Fatal(n, err)
	}
	out = "incremental\ts1\tp/a@s2\t4096\nincremental\ts2\tp/a@s3\t8192\nsize\t12288\n"
	if n, err := parseSendSize([]byte(out)); err != nil || n != 12288 {
		t.Fatal(n, err)
	}
	if _, err := parseSendSize([]byte("garbage")); err == nil {
		t.Fatal("want error")
	}
}

func TestParseVersions(t *testing.T) {
	out := "p/a#b1\tbookmark\t11\t5\t100\t-\np/a@s1\tsnapshot\t11\t5\t100\t0\np/a@s2\tsnapshot\t22\t9\t200\t2\n"
	vs, err := parseVersions([]byte(out))
	if err != nil || len(vs) != 3 {
		t.Fatal(vs, err)
	}
	if vs[0].Type != Snapshot || vs[1].Type != Bookmark || vs[2].Short() != "s2" || vs[2].Dataset() != "p/a" || vs[2].GUID != 22 || vs[2].UserRefs != 2 {
		t.Fatalf("%+v", vs)
	}
	if _, err := parseVersions([]byte("p/a@s\tsnapshot\tx\t1\t1\t0\n")); err == nil {
		t.Fatal("want error on bad guid")
	}
}

func TestClassify(t *testing.T) {
	cases := map[string]error{
		"cannot open 'p/x': dataset does not exist":                                                        ErrDatasetNotFound,
		"cannot receive incremental stream: destination p/b has been modified\nsince most recent snapshot": ErrDestinationModified,
		"cannot destroy snapshot p/a@s: dataset is busy":                                                   ErrBusy,
		"cannot destroy snapshot p/a@s: it's being held. Run 'zfs holds -r p/a@s' to see holders.":         ErrHeld,
		"cannot create 'p/a': dataset already exists":                                                      ErrExists,
		"cannot create bookmark 'p/a#b': bookmark exists":                                                  ErrExists,
		"something else": nil,
	}
	for msg, want := range cases {
		if got := classify(msg); got != want {
			t.Errorf("%q: got %v want %v", msg, got, want)
		}
	}
	e := &Error{Cmd: "zfs list p/x", Stderr: "cannot open 'p/x': dataset does not exist", Kind: ErrDatasetNotFound}
	if !errors.Is(e, ErrDatasetNotFound) || e.ExitCode() != 4 || !strings.Contains(e.Error(), "zfs list p/x: cannot open") {
		t.Fatal(e)
	}
}

func TestParseTree(t *testing.T) {
	out := "p/a\tfilesystem\t1\t1\t10\t-\toff\t-\t4096\toff\tyes\n" +
		"p/a@s1\tsnapshot\t11\t5\t100\t1\t-\t-\t0\t-\t-\n" +
		"p/a/e\tfilesystem\t2\t6\t10\t-\taes-256-gcm\t1-tok\t0\ton\tno\n" +
		"p/a#b1\tbookmark\t11\t5\t100\t-\t-\t-\t-\t-\t-\n" +
		"p/a/e@s1\tsnapshot\t12\t7\t100\t0\t-\t-\t0\t-\t-\n"
	tree, err := parseTree([]byte(out))
	if err != nil || len(tree) != 2 {
		t.Fatal(tree, err)
	}
	a, e := tree[0], tree[1]
	if a.Name != "p/a" || a.Encrypted || a.Written != 4096 || a.ReadOnly || !a.Mounted || len(a.Versions) != 2 || a.Versions[0].Type != Snapshot || a.Versions[0].UserRefs != 1 {
		t.Fatalf("%+v", a)
	}
	if !e.Encrypted || e.ResumeToken != "1-tok" || len(e.Versions) != 1 || !e.ReadOnly || e.Mounted {
		t.Fatalf("%+v", e)
	}
	if _, err := parseTree([]byte("p/a\tfilesystem\n")); err == nil {
		t.Fatal("short line accepted")
	}
}
