package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// schemaPaths lists every key of the schema as docs/config.md writes it:
// dotted, with "[]" for list items (replication.roots[].source).
func schemaPaths() []string {
	var paths []string
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		if path != "" {
			paths = append(paths, path)
		}
		if reflect.PointerTo(t).Implements(unmarshalerType) {
			return
		}
		switch t.Kind() {
		case reflect.Pointer: // an optional section: same key as its struct
			walkFields(t.Elem(), path, walk)
		case reflect.Slice:
			if t.Elem().Kind() == reflect.Struct && !reflect.PointerTo(t.Elem()).Implements(unmarshalerType) {
				walkFields(t.Elem(), path+"[]", walk)
			}
		case reflect.Struct:
			walkFields(t, path, walk)
		}
	}
	walk(reflect.TypeFor[Config](), "")
	return paths
}

func walkFields(t reflect.Type, path string, walk func(reflect.Type, string)) {
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			walk(t.Field(i).Type, joinPath(path, name))
		}
	}
}

// TestDocsCoverEveryKey keeps docs/config.md in step with the struct tags:
// every key must appear there in backquotes.
func TestDocsCoverEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	paths := schemaPaths()
	if len(paths) < 60 {
		t.Fatalf("schema walk found only %d keys", len(paths))
	}
	for _, p := range paths {
		if !strings.Contains(string(doc), "`"+p+"`") {
			t.Errorf("docs/config.md does not document `%s`", p)
		}
	}
}

// TestDocsExampleIsTestdata: the example in the docs is the tested file.
func TestDocsExampleIsTestdata(t *testing.T) {
	doc, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	ex, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```yaml\n"+string(ex)+"```\n") {
		t.Fatal("docs/config.md does not contain testdata/example.yaml verbatim in a ```yaml block")
	}
}

// TestDocsDefaults: the defaults quoted in the docs' tables are the ones in
// Defaults(), for the scalar keys that have one.
func TestDocsDefaults(t *testing.T) {
	doc, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	d := Defaults()
	want := map[string]string{
		"node.state_dir":                   "`" + d.Node.StateDir + "`",
		"node.control_socket":              "`" + d.Node.ControlSocket + "`",
		"peer.initial_role":                "`" + string(d.Peer.InitialRole) + "`",
		"replication.initial_send":         "`" + string(d.Replication.InitialSend) + "`",
		"replication.max_stream_size":      "`" + d.Replication.MaxStreamSize.String() + "`",
		"replication.raw":                  "`" + string(d.Replication.Raw) + "`",
		"snapshots.cadence":                "`\"" + d.Snapshots.Cadence + "\"`",
		"transport.compression":            "`" + string(d.Transport.Compression) + "`",
		"transport.zstd_level":             "`3`",
		"transport.stall_timeout":          "`" + d.Transport.StallTimeout.String() + "`",
		"heartbeat.interval":               "`" + d.Heartbeat.Interval.String() + "`",
		"heartbeat.loss_threshold":         "`" + d.Heartbeat.LossThreshold.String() + "`",
		"heartbeat.fence_margin":           "`" + d.Heartbeat.FenceMargin.String() + "`",
		"tiebreaker.timeout":               "`" + d.Tiebreaker.Timeout.String() + "`",
		"tiebreaker.targets[].method":      "`" + string(TiebreakICMP) + "`",
		"witness.etcd.prefix":              "`" + DefaultEtcdPrefix + "`",
		"witness.etcd.lease_ttl":           "`" + DefaultEtcdLeaseTTL.String() + "`",
		"watchdog.interval":                "`" + d.Watchdog.Interval.String() + "`",
		"shares.nfs[].clients":             "`\"" + DefaultNFSClients + "\"`",
		"shares.nfs[].options":             "`\"" + DefaultNFSOptions + "\"`",
		"failback":                         "`" + string(d.Failback) + "`",
		"vip.public_down":                  "`" + string(d.VIP.PublicDown) + "`",
		"log.level":                        "`" + string(d.Log.Level) + "`",
		"log.format":                       "`" + string(d.Log.Format) + "`",
		"retention.source":                 `["1h:all", "24h:1h", "30d:1d"]`,
		"replication.destroy_on_receiver":  "`false`",
		"transport.tls.insecure_plaintext": "`false`",
	}
	for key, def := range want {
		row := ""
		for _, line := range strings.Split(string(doc), "\n") {
			if strings.HasPrefix(line, "| `"+key+"` |") {
				row = line
				break
			}
		}
		if row == "" {
			t.Errorf("no table row for %s", key)
			continue
		}
		// Column 3 of "| key | type | default | description |".
		cols := strings.Split(row, " | ")
		if len(cols) < 4 || !strings.Contains(cols[2], def) {
			t.Errorf("docs default of %s is %q, want %s", key, cols[2], def)
		}
	}
	// The documented default grid is the real one.
	for i, r := range d.Retention.Source {
		got, _ := ParseKeepRule([]string{"1h:all", "24h:1h", "30d:1d"}[i])
		if got != r {
			t.Errorf("default rule %d is %s", i, r)
		}
	}
}
