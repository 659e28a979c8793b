package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// errLines parses data and returns its errors one per line, or fails.
func errLines(t *testing.T, name, data string) []string {
	t.Helper()
	cfg, err := Parse(name, []byte(data))
	if err == nil {
		t.Fatalf("want errors, got none; config: %+v", cfg)
	}
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want *Errors, got %T: %v", err, err)
	}
	return strings.Split(err.Error(), "\n")
}

func assertLines(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("errors differ\n got:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestLoadExample(t *testing.T) {
	cfg, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const day = 24 * time.Hour
	checks := []struct {
		name      string
		got, want any
	}{
		{"node.name", cfg.Node.Name, "alpha"},
		{"peer.initial_role", cfg.Peer.InitialRole, RoleActive},
		{"roots", cfg.Replication.Roots, []Root{{"tank/data", "backup/data"}, {"tank/vm", "tank/vm"}}},
		{"max_stream_size", cfg.Replication.MaxStreamSize, ByteSize(4 << 30)},
		{"retention.target[3]", cfg.Retention.Target[3], KeepRule{Span: 52 * 7 * day, Interval: 7 * day}},
		{"heartbeat.interval", cfg.Heartbeat.Interval.Duration(), 200 * time.Millisecond},
		{"tiebreaker.targets[1].method", cfg.Tiebreaker.Targets[1].Method, TiebreakTCP},
		{"witness.etcd.endpoints", cfg.Witness.Etcd.Endpoints, []string{"https://198.18.0.10:2379", "https://198.18.0.11:2379"}},
		{"shares.smb[0].options", cfg.Shares.SMB[0].Options, map[string]string{"read only": "no", "browseable": "yes"}},
		{"metrics.listen", cfg.Metrics.Listen, "127.0.0.1:9811"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

// TestBadFile pins every error of testdata/bad.yaml, positions included:
// this is the user-visible output of `config check` on a broken file.
func TestBadFile(t *testing.T) {
	_, err := Load("testdata/bad.yaml")
	if err == nil {
		t.Fatal("bad.yaml is valid")
	}
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want *Errors, got %T", err)
	}
	const f = "testdata/bad.yaml"
	assertLines(t, strings.Split(err.Error(), "\n"), []string{
		f + `:3:9: node.name: must be 1 to 63 characters of a-z, 0-9 and '-', got "Alpha"`,
		f + `:4:14: node.state_dir: must be an absolute path, got "var/lib/zrepl-ha"`,
		f + `:5:16: node.listen_link: must be host:port (IPv6 as [addr]:port), got "198.18.1.1"`,
		f + `:6:3: node.colour: unknown key (allowed: name, state_dir, control_socket, listen_link, listen_public)`,
		f + `:8:1: peer.name: is required`,
		f + `:9:17: peer.link_address: port must be a number in 1..65535, got "198.18.1.2:99999"`,
		f + `:10:17: peer.initial_role: must be one of active, passive, got "primary"`,
		f + `:15:15: replication.roots[1].source: overlaps replication.roots[0].source (tank/data); roots are replicated recursively, so list only the topmost dataset`,
		f + `:16:15: replication.roots[2].source: must be a dataset, not a snapshot or bookmark (no '@' or '#'), got "tank/@snap"`,
		f + `:18:20: replication.max_stream_size: must be a size like "64MiB", "500M", "1GB" or a number of bytes, got "10 parsecs"`,
		f + `:21:12: snapshots.cadence: "@every" must be at least 1s, got 100ms`,
		f + `:24:32: retention.source[2]: spans must increase from rule to rule: 1d:1h does not reach past the previous rule (30d:1d)`,
		f + `:27:16: transport.compression: must be one of zstd, lz4, none, auto, got "gzip"`,
		f + `:28:15: transport.zstd_level: must be between 1 and 22, got 30`,
		f + `:30:25: transport.tls.insecure_plaintext: must be true or false, got "yes"`,
		f + `:34:19: heartbeat.loss_threshold: must be at least 3 x heartbeat.interval (1.5s), got 1s`,
		f + `:34:19: heartbeat.fence_margin: must be less than heartbeat.loss_threshold (1s), got 2s`,
		f + `:38:16: tiebreaker.targets[0].address: must be a host without a port for method icmp (use method tcp for host:port), got "198.18.0.254:80"`,
		f + `:40:1: vip.interface: is required when vip.address is set (the interface that carries the VIP, e.g. eth0)`,
		f + `:41:12: vip.address: must be an address with prefix length (CIDR) like 198.18.0.100/24, got "198.18.0.300/24"`,
		f + `:46:16: shares.smb[0].dataset: must be a replicated root or inside one (replication.roots sources: tank/data, tank/data/sub), got "other/data"`,
		f + `:47:13: shares.smb[1].name: duplicate of shares.smb[0].name (share names are case-insensitive)`,
		f + `:49:23: shares.smb[1].options["path"]: is set by zrepl-ha to the dataset's mountpoint; remove it`,
		f + `:51:11: failback: must be one of manual, auto, got "sometimes"`,
	})
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(path)
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want *Errors, got %T %v", err, err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("errors.Is(fs.ErrNotExist) is false")
	}
	if want := path + ": no such file or directory"; err.Error() != want {
		t.Fatalf("got %q, want %q", err.Error(), want)
	}
}

func TestPositions(t *testing.T) {
	// Columns point at the value for scalars, at the key for a mapping, at
	// the item for a list item, and at the parent key for a missing key.
	doc := `node:
  name: alpha
  listen_link: 198.18.1.1:7701
peer:
  link_address: "198.18.1.2"
replication:
  roots:
    - source: tank/data
    -   source: tank/data
        target: backup/x
    - target: backup/y
heartbeat:
    interval: 2s
tiebreaker:
  targets:
    - {address: "x:1", method: udp}
transport:
  tls: {insecure_plaintext: true}
`
	assertLines(t, errLines(t, "alpha.yaml", doc), []string{
		`alpha.yaml:4:1: peer.name: is required`,
		`alpha.yaml:5:17: peer.link_address: must be host:port (IPv6 as [addr]:port), got "198.18.1.2"`,
		`alpha.yaml:9:17: replication.roots[1].source: duplicate of replication.roots[0].source (tank/data)`,
		`alpha.yaml:11:7: replication.roots[2].source: is required`,
		`alpha.yaml:13:15: heartbeat.loss_threshold: must be at least 3 x heartbeat.interval (6s), got 3s`,
		`alpha.yaml:16:32: tiebreaker.targets[0].method: must be one of icmp, tcp, got "udp"`,
	})
}

func TestUnknownKeys(t *testing.T) {
	doc := minimal + `colour: blue
heartbeat:
  intervall: 1s
witness:
  etcd:
    endpoints: ["198.18.0.10:2379"]
    lease: 5s
shares:
  smb:
    - name: d
      dataset: tank/data
      option: {}
`
	// The unknown-key errors come with the allowed keys; the rest of the
	// file is still decoded and validated.
	assertLines(t, errLines(t, "u.yaml", doc), []string{
		`u.yaml:14:1: colour: unknown key (allowed: node, peer, replication, snapshots, retention, transport, heartbeat, tiebreaker, witness, watchdog, vip, shares, failback, log, metrics)`,
		`u.yaml:16:3: heartbeat.intervall: unknown key (allowed: interval, loss_threshold, fence_margin)`,
		`u.yaml:20:5: witness.etcd.lease: unknown key (allowed: endpoints, prefix, lease_ttl)`,
		`u.yaml:25:7: shares.smb[0].option: unknown key (allowed: name, dataset, options)`,
	})
	// The same list nested under replication.roots, in flow style.
	doc2 := strings.Replace(minimal, "- source: tank/data", "- {source: tank/data, sauce: x}", 1)
	assertLines(t, errLines(t, "u.yaml", doc2), []string{
		`u.yaml:10:27: replication.roots[0].sauce: unknown key (allowed: source, target)`,
	})
}

func TestDecodeErrors(t *testing.T) {
	cases := []struct {
		name, patch, want string
	}{
		{"string got list", "node: {name: [a]}", `node.name: must be a string, got a list`},
		{"string got mapping", "vip: {interface: {a: 1}}", `vip.interface: must be a string, got a mapping`},
		{"bool got yes", "replication: {raw: auto, destroy_on_receiver: yes}", `replication.destroy_on_receiver: must be true or false, got "yes"`},
		{"bool got number", "replication: {destroy_on_receiver: 1}", `replication.destroy_on_receiver: must be true or false, got "1"`},
		{"int got string", "transport: {zstd_level: high}", `transport.zstd_level: must be an integer, got "high"`},
		{"int got float", "transport: {zstd_level: 3.5}", `transport.zstd_level: must be an integer, got "3.5"`},
		{"int overflow", "transport: {zstd_level: 99999999999999999999}", `transport.zstd_level: must be an integer`},
		{"duration got list", "heartbeat: {interval: [1s]}", `heartbeat.interval: must be a duration like "200ms" or "3s", got a list`},
		{"size got mapping", "transport: {bandwidth_limit: {a: 1}}", `transport.bandwidth_limit: must be a size like "64MiB" or a number of bytes, got a mapping`},
		{"list got scalar", "replication: {roots: tank/data}", `replication.roots: must be a list, got "tank/data"`},
		{"section got scalar", "heartbeat: fast", `heartbeat: must be a mapping with keys interval, loss_threshold, fence_margin, got "fast"`},
		{"section got list", "log: [info]", `log: must be a mapping with keys level, format, got a list`},
		{"list item got scalar", "tiebreaker: {targets: [198.18.0.254]}", `tiebreaker.targets[0]: must be a mapping with keys address, method, got "198.18.0.254"`},
		{"pointer section got scalar", "witness: {etcd: on}", `witness.etcd: must be a mapping with keys endpoints, prefix, lease_ttl, got "on"`},
		{"string list got mapping item", `witness: {etcd: {endpoints: [{a: 1}]}}`, `witness.etcd.endpoints[0]: must be a string, got a mapping`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lines := errLines(t, "d.yaml", string(patched(t, tc.patch)))
			// Exactly one line: a value that fails to decode is not
			// validated again.
			if len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Fatalf("want one error containing %q, got:\n%s", tc.want, strings.Join(lines, "\n"))
			}
		})
	}
}

func TestSyntaxAndStructure(t *testing.T) {
	cases := []struct {
		name, doc string
		want      []string
	}{
		{"syntax", "node:\n  name: [a\n", []string{`s.yaml:1: invalid YAML: did not find expected ',' or ']'`}},
		{"tab indent", "node:\n\tname: a\n", []string{`s.yaml:2: invalid YAML: found character that cannot start any token`}},
		{"two documents", minimal + "---\nnode: {}\n", []string{`s.yaml:14:1: the file must hold one YAML document, found a second one`}},
		{"top-level list", "- a\n", []string{`s.yaml:1:1: must be a mapping with keys node, peer, replication, snapshots, retention, transport, heartbeat, tiebreaker, witness, watchdog, vip, shares, failback, log, metrics, got a list`}},
		{"duplicate key", minimal + "node: {}\n", []string{`s.yaml:14:1: node: duplicate key (first at line 2)`}},
		{"duplicate nested key", strings.Replace(minimal, "  name: alpha\n", "  name: alpha\n  name: Bad\n", 1),
			[]string{`s.yaml:4:3: node.name: duplicate key (first at line 3)`}},
		{"merge key", minimal + "base: &b {level: info}\nlog:\n  <<: *b\n", []string{
			`s.yaml:14:1: base: unknown key (allowed: node, peer, replication, snapshots, retention, transport, heartbeat, tiebreaker, witness, watchdog, vip, shares, failback, log, metrics)`,
			`s.yaml:16:3: log: merge keys (<<) are not supported; write the keys out`,
		}},
		{"complex key", minimal + "? [a]\n: 1\n", []string{`s.yaml:14:3: mapping keys must be plain strings, got a list`}},
		{"smb duplicate option", minimal + "shares:\n  smb:\n    - {name: d, dataset: tank/data, options: {a: x, a: y}}\n",
			[]string{`s.yaml:16:53: shares.smb[0].options["a"]: duplicate key (first at line 16)`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assertLines(t, errLines(t, "s.yaml", tc.doc), tc.want)
		})
	}
}

func TestEmptyFile(t *testing.T) {
	for _, doc := range []string{"", "# only a comment\n", "---\n", "~\n"} {
		lines := errLines(t, "e.yaml", doc)
		// No positions exist, so errors carry file and path only.
		if lines[0] != "e.yaml: node.name: is required" {
			t.Fatalf("%q: first error %q", doc, lines[0])
		}
	}
}

func TestAliases(t *testing.T) {
	doc := `node:
  name: alpha
  listen_link: &addr 198.18.1.1:7701
peer:
  name: beta
  link_address: 198.18.1.2:7701
replication:
  roots:
    - &root {source: tank/data}
retention:
  source: &grid ["1h:all", "24h:1h"]
  target: *grid
transport: {tls: {insecure_plaintext: true}}
metrics:
  listen: *addr
`
	cfg, err := Parse("a.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Metrics.Listen != "198.18.1.1:7701" || len(cfg.Retention.Target) != 2 {
		t.Fatalf("aliases not followed: %+v %+v", cfg.Metrics, cfg.Retention)
	}
	// A self-referencing alias must not hang or crash the decoder.
	_, err = Parse("a.yaml", []byte(minimal+"shares: &s\n  nfs: [*s]\n"))
	if err == nil || !strings.Contains(err.Error(), "shares.nfs[0].nfs: unknown key (allowed: dataset, clients, options)") {
		t.Fatalf("got %v", err)
	}
}

// TestNullKeepsDefault: a key without a value is the same as no key.
func TestNullKeepsDefault(t *testing.T) {
	doc := minimal + "heartbeat:\n  interval:\n  loss_threshold: ~\nlog:\nretention:\n  source: null\n"
	cfg, err := Parse("n.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	d := Defaults()
	if cfg.Heartbeat != d.Heartbeat || cfg.Log != d.Log || !reflect.DeepEqual(cfg.Retention.Source, d.Retention.Source) {
		t.Fatalf("null did not keep defaults: %+v %+v", cfg.Heartbeat, cfg.Log)
	}
}

func TestDefaults(t *testing.T) {
	d := Defaults()
	const day = 24 * time.Hour
	checks := []struct {
		name      string
		got, want any
	}{
		{"node.state_dir", d.Node.StateDir, "/var/lib/zrepl-ha"},
		{"node.control_socket", d.Node.ControlSocket, "/run/zrepl-ha/control.sock"},
		{"peer.initial_role", d.Peer.InitialRole, RolePassive},
		{"replication.initial_send", d.Replication.InitialSend, InitialSendNewest},
		{"replication.max_stream_size", d.Replication.MaxStreamSize.Bytes(), int64(4 << 30)},
		{"replication.data_over_public", d.Replication.DataOverPublic, false},
		{"replication.destroy_on_receiver", d.Replication.DestroyOnReceiver, false},
		{"replication.raw", d.Replication.Raw, RawAuto},
		{"snapshots.cadence", d.Snapshots.Cadence, "@every 5s"},
		{"retention.source", d.Retention.Source, []KeepRule{{Span: time.Hour}, {Span: day, Interval: time.Hour}, {Span: 30 * day, Interval: day}}},
		{"retention.target", d.Retention.Target, d.Retention.Source},
		{"retention.prune_unreplicated_above_pool_percent", d.Retention.PruneUnreplicatedAbovePoolPercent, 0},
		{"transport.compression", d.Transport.Compression, CompressionZstd},
		{"transport.zstd_level", d.Transport.ZstdLevel, 3},
		{"transport.bandwidth_limit", d.Transport.BandwidthLimit, ByteSize(0)},
		{"transport.stall_timeout", d.Transport.StallTimeout.Duration(), 30 * time.Second},
		{"transport.tls.insecure_plaintext", d.Transport.TLS.InsecurePlaintext, false},
		{"heartbeat.interval", d.Heartbeat.Interval.Duration(), 200 * time.Millisecond},
		{"heartbeat.loss_threshold", d.Heartbeat.LossThreshold.Duration(), 3 * time.Second},
		{"heartbeat.fence_margin", d.Heartbeat.FenceMargin.Duration(), 2 * time.Second},
		{"tiebreaker.timeout", d.Tiebreaker.Timeout.Duration(), 500 * time.Millisecond},
		{"witness.etcd", d.Witness.Etcd, (*Etcd)(nil)},
		{"watchdog.device", d.Watchdog.Device, ""},
		{"watchdog.interval", d.Watchdog.Interval.Duration(), time.Second},
		{"vip", d.VIP, VIP{PublicDown: PublicDownAuto}},
		{"failback", d.Failback, FailbackManual},
		{"log", d.Log, Log{Level: LogInfo, Format: LogText}},
		{"metrics.listen", d.Metrics.Listen, ""},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
	// Defaults must not share slices between calls.
	d.Retention.Source[0].Span = 0
	if Defaults().Retention.Source[0].Span == 0 {
		t.Fatal("Defaults() shares the retention slice")
	}
}

// TestItemDefaults: list items and the etcd section get their own defaults.
func TestItemDefaults(t *testing.T) {
	doc := minimal + `tiebreaker:
  targets: [{address: 198.18.0.254}]
witness:
  etcd: {endpoints: ["198.18.0.10:2379"]}
shares:
  nfs: [{dataset: tank/data}]
  smb: [{name: d, dataset: tank/data}]
`
	cfg, err := Parse("i.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Tiebreaker.Targets[0].Method; got != TiebreakICMP {
		t.Errorf("method = %q", got)
	}
	if e := cfg.Witness.Etcd; e.Prefix != "/zrepl-ha/" || e.LeaseTTL.Duration() != 5*time.Second {
		t.Errorf("etcd = %+v", e)
	}
	if n := cfg.Shares.NFS[0]; n.Clients != "*" || n.Options != "rw,sync,no_subtree_check" {
		t.Errorf("nfs = %+v", n)
	}
	if r := cfg.Replication.Roots[0]; r.Target != "tank/data" {
		t.Errorf("root target = %q, want the source", r.Target)
	}
}

// TestShowRoundTrip: `config show` output parses back to an equal config.
func TestShowRoundTrip(t *testing.T) {
	inputs := map[string][]byte{"minimal": []byte(minimal)}
	ex, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	inputs["example"] = ex
	for name, data := range inputs {
		t.Run(name, func(t *testing.T) {
			cfg, err := Parse(name, data)
			if err != nil {
				t.Fatal(err)
			}
			out, err := cfg.YAML()
			if err != nil {
				t.Fatal(err)
			}
			again, err := Parse("shown.yaml", out)
			if err != nil {
				t.Fatalf("show output does not parse: %v\n%s", err, out)
			}
			if !reflect.DeepEqual(cfg, again) {
				t.Fatalf("round trip differs:\n%+v\n%+v\n%s", cfg, again, out)
			}
			out2, err := again.YAML()
			if err != nil || string(out2) != string(out) {
				t.Fatalf("show output is not stable:\n%s\n---\n%s", out, out2)
			}
		})
	}
}

// TestShowHasEveryKey: the effective config lists every section and every
// defaulted key, so `config show` answers "what value is in force?".
func TestShowHasEveryKey(t *testing.T) {
	cfg, err := Parse("m.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	out, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"state_dir: /var/lib/zrepl-ha", "initial_role: passive", "max_stream_size: 4GiB",
		"cadence: '@every 5s'", "- 1d:1h", "zstd_level: 3", "stall_timeout: 30s", "loss_threshold: 3s",
		"timeout: 500ms", "witness: {}", "failback: manual", "format: text", "listen: \"\"", "target: tank/data"} {
		if !strings.Contains(string(out), key) {
			t.Errorf("show output lacks %q:\n%s", key, out)
		}
	}
}

// TestSchemaTypesSupported walks the schema and checks every field has a
// yaml tag and a type the decoder handles, so a new field cannot silently be
// undecodable.
func TestSchemaTypesSupported(t *testing.T) {
	var walk func(t *testing.T, typ reflect.Type, path string)
	walk = func(t *testing.T, typ reflect.Type, path string) {
		if reflect.PointerTo(typ).Implements(unmarshalerType) {
			return
		}
		switch typ.Kind() {
		case reflect.Struct:
			for i := range typ.NumField() {
				f := typ.Field(i)
				name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				if name == "" || name == "-" {
					t.Errorf("%s.%s has no yaml tag", path, f.Name)
					continue
				}
				walk(t, f.Type, joinPath(path, name))
			}
		case reflect.Pointer:
			walk(t, typ.Elem(), path)
		case reflect.Slice:
			walk(t, typ.Elem(), path+"[]")
		case reflect.Map:
			if typ.Key().Kind() != reflect.String || typ.Elem().Kind() != reflect.String {
				t.Errorf("%s: only map[string]string is supported", path)
			}
		case reflect.String, reflect.Bool, reflect.Int, reflect.Int64:
		default:
			t.Errorf("%s: type %s is not handled by the decoder", path, typ)
		}
	}
	walk(t, reflect.TypeFor[Config](), "")
}
