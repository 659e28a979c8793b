package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// minimal is the smallest valid config; rule tests patch it.
const minimal = `
node:
  name: alpha
  listen_link: 198.18.1.1:7701
peer:
  name: beta
  link_address: 198.18.1.2:7701
replication:
  roots:
    - source: tank/data
transport:
  tls:
    insecure_plaintext: true
`

// patched deep-merges the YAML mapping patch into minimal: mappings merge,
// everything else (lists included) replaces. A null value resets a key to
// its default.
func patched(t *testing.T, patch string) []byte {
	t.Helper()
	var base, p map[string]any
	if err := yaml.Unmarshal([]byte(minimal), &base); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(patch), &p); err != nil {
		t.Fatalf("bad patch %q: %v", patch, err)
	}
	merge(base, p)
	out, err := yaml.Marshal(base)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func merge(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

type ruleCase struct {
	name  string
	patch string
	path  string // "" = must be valid
	msg   string // substring of the one expected error
}

// runRules parses each patched config and asserts it is valid or fails with
// exactly one error at path whose message contains msg. Exactly one: a rule
// must not drown its message in follow-up noise.
func runRules(t *testing.T, cases []ruleCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := patched(t, tc.patch)
			cfg, err := Parse("test.yaml", data)
			if tc.path == "" {
				if err != nil {
					t.Fatalf("want valid, got:\n%v\nconfig:\n%s", err, data)
				}
				if cfg == nil {
					t.Fatal("nil config without error")
				}
				return
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("want *Errors, got %T %v\nconfig:\n%s", err, err, data)
			}
			if cfg != nil {
				t.Error("config returned together with errors")
			}
			if len(*errs) != 1 {
				t.Fatalf("want exactly 1 error at %s, got %d:\n%v", tc.path, len(*errs), err)
			}
			fe := (*errs)[0]
			if fe.Path != tc.path || !strings.Contains(fe.Msg, tc.msg) {
				t.Fatalf("want %s: ...%s..., got %s: %s", tc.path, tc.msg, fe.Path, fe.Msg)
			}
			if fe.File != "test.yaml" {
				t.Errorf("File = %q", fe.File)
			}
		})
	}
}

func TestMinimalIsValid(t *testing.T) {
	if _, err := Parse("minimal.yaml", []byte(minimal)); err != nil {
		t.Fatal(err)
	}
}

func TestNodeRules(t *testing.T) {
	runRules(t, []ruleCase{
		{"name ok", `node: {name: a-1}`, "", ""},
		{"name max length", `node: {name: ` + strings.Repeat("a", 63) + `}`, "", ""},
		{"name missing", `node: {name: ~}`, "node.name", "is required"},
		{"name uppercase", `node: {name: Alpha}`, "node.name", "a-z, 0-9 and '-'"},
		{"name underscore", `node: {name: al_pha}`, "node.name", "got \"al_pha\""},
		{"name too long", `node: {name: ` + strings.Repeat("a", 64) + `}`, "node.name", "1 to 63"},
		{"state_dir relative", `node: {state_dir: var/lib/x}`, "node.state_dir", "must be an absolute path"},
		{"state_dir empty", `node: {state_dir: ""}`, "node.state_dir", "is required"},
		{"control_socket relative", `node: {control_socket: x.sock}`, "node.control_socket", "absolute path"},
		{"control_socket too long", `node: {control_socket: /` + strings.Repeat("s", 107) + `}`, "node.control_socket", "at most 107"},
		{"control_socket at limit", `node: {control_socket: /` + strings.Repeat("s", 106) + `}`, "", ""},
		{"listen_link missing", `node: {listen_link: ~}`, "node.listen_link", "is required"},
		{"listen_link no port", `node: {listen_link: 198.18.1.1}`, "node.listen_link", "must be host:port"},
		{"listen_link port 0", `node: {listen_link: "198.18.1.1:0"}`, "node.listen_link", "port must be a number in 1..65535"},
		{"listen_link port name", `node: {listen_link: "198.18.1.1:http"}`, "node.listen_link", "port must be"},
		{"listen_link bad host", `node: {listen_link: "bad_host:7701"}`, "node.listen_link", "IP address or host name"},
		{"listen_link numeric non-ip", `node: {listen_link: "198.18.1.300:7701"}`, "node.listen_link", "IP address or host name"},
		{"listen_link any address", `node: {listen_link: ":7701"}`, "", ""},
		{"listen_link ipv6", `node: {listen_link: "[2001:db8::1]:7701"}`, "", ""},
		{"listen_link host name", `node: {listen_link: "alpha-link.lan:7701"}`, "", ""},
		{"listen_public ok", `node: {listen_public: "198.18.0.1:7701"}`, "", ""},
		{"listen_public bad", `node: {listen_public: "198.18.0.1"}`, "node.listen_public", "host:port"},
		{"listen_public same as link", `node: {listen_public: "198.18.1.1:7701"}`, "node.listen_public", "must differ from node.listen_link"},
	})
}

func TestPeerRules(t *testing.T) {
	runRules(t, []ruleCase{
		{"name missing", `peer: {name: ~}`, "peer.name", "is required"},
		{"name bad", `peer: {name: "beta!"}`, "peer.name", "a-z, 0-9"},
		{"name same as node", `peer: {name: alpha}`, "peer.name", `must differ from node.name ("alpha")`},
		{"link_address missing", `peer: {link_address: ~}`, "peer.link_address", "is required"},
		{"link_address no host", `peer: {link_address: ":7701"}`, "peer.link_address", "must name a host"},
		{"link_address no port", `peer: {link_address: "198.18.1.2"}`, "peer.link_address", "host:port"},
		{"link_address host name", `peer: {link_address: "beta-link.lan:7701"}`, "", ""},
		{"public_address ok", `peer: {public_address: "198.18.0.2:7701"}`, "", ""},
		{"public_address bad", `peer: {public_address: "198.18.0.2:99999"}`, "peer.public_address", "port must be"},
		{"initial_role active", `peer: {initial_role: active}`, "", ""},
		{"initial_role passive", `peer: {initial_role: passive}`, "", ""},
		{"initial_role bad", `peer: {initial_role: primary}`, "peer.initial_role", `must be one of active, passive, got "primary"`},
		{"initial_role empty", `peer: {initial_role: ""}`, "peer.initial_role", "must be one of active, passive"},
	})
}

func TestReplicationRules(t *testing.T) {
	root := func(src string) string { return `replication: {roots: [{source: "` + src + `"}]}` }
	runRules(t, []ruleCase{
		{"roots empty", `replication: {roots: []}`, "replication.roots", "at least one root"},
		{"roots null", `replication: {roots: ~}`, "replication.roots", "at least one root"},
		{"source missing", `replication: {roots: [{target: backup/data}]}`, "replication.roots[0].source", "is required"},
		{"source all chars", root("tank/a.b:c_d-E9"), "", ""},
		{"source pool only", root("tank"), "", ""},
		{"source double slash", root("tank//data"), "replication.roots[0].source", "empty components"},
		{"source leading slash", root("/tank/data"), "replication.roots[0].source", "empty components"},
		{"source trailing slash", root("tank/data/"), "replication.roots[0].source", "empty components"},
		{"source dotdot", root("tank/../data"), "replication.roots[0].source", "'..'"},
		{"source dot", root("tank/./data"), "replication.roots[0].source", "'.'"},
		{"source leading dash", root("tank/-data"), "replication.roots[0].source", "must not start with '-'"},
		{"source space", root("tank/my data"), "replication.roots[0].source", "may only contain"},
		{"source snapshot", root("tank/data@snap"), "replication.roots[0].source", "not a snapshot or bookmark"},
		{"source bookmark", root("tank/data#bm"), "replication.roots[0].source", "not a snapshot or bookmark"},
		{"source pool digit", root("1tank/data"), "replication.roots[0].source", "pool name \"1tank\" must start with a letter"},
		{"source too long", root("tank/" + strings.Repeat("x", 251)), "replication.roots[0].source", "at most 255"},
		{"target bad", `replication: {roots: [{source: tank/data, target: "backup/da ta"}]}`, "replication.roots[0].target", "may only contain"},
		{"target other pool", `replication: {roots: [{source: tank/data, target: backup/data}]}`, "", ""},
		{"siblings sharing a prefix", `replication: {roots: [{source: tank/data}, {source: tank/database}]}`, "", ""},
		{"duplicate source", `replication: {roots: [{source: tank/data, target: b/x}, {source: tank/data, target: b/y}]}`,
			"replication.roots[1].source", "duplicate of replication.roots[0].source"},
		{"child after parent", `replication: {roots: [{source: tank/data}, {source: tank/data/sub}]}`,
			"replication.roots[1].source", "overlaps replication.roots[0].source (tank/data)"},
		{"parent after child", `replication: {roots: [{source: tank/data/sub}, {source: tank/data}]}`,
			"replication.roots[1].source", "overlaps replication.roots[0].source (tank/data/sub)"},
		{"duplicate target", `replication: {roots: [{source: tank/a, target: b/x}, {source: tank/b, target: b/x}]}`,
			"replication.roots[1].target", "duplicate of replication.roots[0].target"},
		{"overlapping target", `replication: {roots: [{source: tank/a, target: b/x}, {source: tank/b, target: b/x/y}]}`,
			"replication.roots[1].target", "overlaps replication.roots[0].target"},
		{"initial_send all", `replication: {initial_send: all}`, "", ""},
		{"initial_send bad", `replication: {initial_send: some}`, "replication.initial_send", "must be one of newest, all"},
		{"max_stream_size ok", `replication: {max_stream_size: 1MiB}`, "", ""},
		{"max_stream_size small", `replication: {max_stream_size: 512KiB}`, "replication.max_stream_size", "at least 1MiB, got 512KiB"},
		{"data_over_public without addresses", `replication: {data_over_public: true}`, "replication.data_over_public", "needs node.listen_public and peer.public_address"},
		{"data_over_public without listen", `{replication: {data_over_public: true}, peer: {public_address: "198.18.0.2:7701"}}`,
			"replication.data_over_public", "needs node.listen_public"},
		{"data_over_public ok", `{replication: {data_over_public: true}, peer: {public_address: "198.18.0.2:7701"}, node: {listen_public: "198.18.0.1:7701"}}`, "", ""},
		{"destroy_on_receiver", `replication: {destroy_on_receiver: true}`, "", ""},
		{"raw always", `replication: {raw: always}`, "", ""},
		{"raw never", `replication: {raw: never}`, "", ""},
		{"raw bad", `replication: {raw: sometimes}`, "replication.raw", "must be one of auto, always, never"},
	})
}

func TestSnapshotRules(t *testing.T) {
	cad := func(s string) string { return `snapshots: {cadence: "` + s + `"}` }
	runRules(t, []ruleCase{
		{"every 5s", cad("@every 5s"), "", ""},
		{"every 1m30s", cad("@every 1m30s"), "", ""},
		{"every 1s", cad("@every 1s"), "", ""},
		{"every too short", cad("@every 500ms"), "snapshots.cadence", `"@every" must be at least 1s, got 500ms`},
		{"every bad duration", cad("@every 5"), "snapshots.cadence", `needs a duration`},
		{"every without duration", cad("@every"), "snapshots.cadence", `needs a duration`},
		{"every glued", cad("@every5s"), "snapshots.cadence", `unknown descriptor "@every5s"`},
		{"hourly", cad("@hourly"), "", ""},
		{"midnight", cad("@midnight"), "", ""},
		{"unknown descriptor", cad("@sometimes"), "snapshots.cadence", "unknown descriptor"},
		{"five fields", cad("*/5 * * * *"), "", ""},
		{"six fields", cad("*/10 * * * * *"), "", ""},
		{"three fields", cad("* * *"), "snapshots.cadence", "got 3 fields"},
		{"seven fields", cad("* * * * * * *"), "snapshots.cadence", "got 7 fields"},
		{"time zone", cad("CRON_TZ=Europe/Berlin 0 3 * * *"), "", ""},
		{"time zone only", cad("TZ=UTC"), "snapshots.cadence", "no schedule"},
		{"empty", cad(""), "snapshots.cadence", "is required"},
	})
}

func TestRetentionRules(t *testing.T) {
	runRules(t, []ruleCase{
		{"default grid", `retention: {source: ["1h:all", "24h:1h", "30d:1d"]}`, "", ""},
		{"single all", `retention: {source: ["1h:all"]}`, "", ""},
		{"weeks and compound", `retention: {target: ["1d12h:1h", "2w:1d", "52w:1w"]}`, "", ""},
		{"source empty", `retention: {source: []}`, "retention.source", "at least one rule"},
		{"target empty", `retention: {target: []}`, "retention.target", "at least one rule"},
		{"no colon", `retention: {source: ["1h"]}`, "retention.source[0]", `must be "SPAN:all" or "SPAN:INTERVAL"`},
		{"zero span", `retention: {source: ["0h:all"]}`, "retention.source[0]", `must be "SPAN:all"`},
		{"bad unit", `retention: {source: ["1y:all"]}`, "retention.source[0]", `units s, m, h, d, w`},
		{"sub-second", `retention: {source: ["1h:500ms"]}`, "retention.source[0]", `must be "SPAN:all"`},
		{"interval longer than span", `retention: {source: ["1h:2h"]}`, "retention.source[0]", "interval must not be longer than the span"},
		{"spans not increasing", `retention: {source: ["1h:all", "30d:1d", "24h:1h"]}`, "retention.source[2]", "spans must increase"},
		{"equal spans", `retention: {source: ["1h:all", "1h:10m"]}`, "retention.source[1]", "spans must increase"},
		{"interval shrinks", `retention: {target: ["1d:1h", "30d:10m"]}`, "retention.target[1]", "must not keep more often than the previous rule (1d:1h)"},
		{"all after interval", `retention: {target: ["1d:1h", "30d:all"]}`, "retention.target[1]", "must not keep more often"},
		{"rule not a string", `retention: {source: [{a: 1}]}`, "retention.source[0]", "got a mapping"},
		{"percent 0", `retention: {prune_unreplicated_above_pool_percent: 0}`, "", ""},
		{"percent 50", `retention: {prune_unreplicated_above_pool_percent: 50}`, "", ""},
		{"percent 99", `retention: {prune_unreplicated_above_pool_percent: 99}`, "", ""},
		{"percent 49", `retention: {prune_unreplicated_above_pool_percent: 49}`, "retention.prune_unreplicated_above_pool_percent", "must be 0 (never) or between 50 and 99, got 49"},
		{"percent 100", `retention: {prune_unreplicated_above_pool_percent: 100}`, "retention.prune_unreplicated_above_pool_percent", "got 100"},
	})
}

func TestTransportRules(t *testing.T) {
	tls := func(s string) string { return `transport: {tls: {insecure_plaintext: false, ` + s + `}}` }
	runRules(t, []ruleCase{
		{"lz4", `transport: {compression: lz4}`, "", ""},
		{"none", `transport: {compression: none}`, "", ""},
		{"auto", `transport: {compression: auto}`, "", ""},
		{"compression bad", `transport: {compression: gzip}`, "transport.compression", "must be one of zstd, lz4, none, auto, got \"gzip\""},
		{"zstd_level 1", `transport: {zstd_level: 1}`, "", ""},
		{"zstd_level 22", `transport: {zstd_level: 22}`, "", ""},
		{"zstd_level 0", `transport: {zstd_level: 0}`, "transport.zstd_level", "between 1 and 22, got 0"},
		{"zstd_level 23", `transport: {zstd_level: 23}`, "transport.zstd_level", "got 23"},
		{"bandwidth_limit size", `transport: {bandwidth_limit: 100MiB}`, "", ""},
		{"bandwidth_limit negative", `transport: {bandwidth_limit: -1}`, "transport.bandwidth_limit", "must be a size"},
		{"stall_timeout 1s", `transport: {stall_timeout: 1s}`, "", ""},
		{"stall_timeout short", `transport: {stall_timeout: 500ms}`, "transport.stall_timeout", "at least 1s, got 500ms"},
		{"tls complete", tls(`cert: /etc/a.crt, key: /etc/a.key, peer_cert: /etc/b.crt`), "", ""},
		{"tls cert missing", tls(`key: /etc/a.key, peer_cert: /etc/b.crt`), "transport.tls.cert", "is required (a PEM file path) unless transport.tls.insecure_plaintext is true"},
		{"tls key missing", tls(`cert: /etc/a.crt, peer_cert: /etc/b.crt`), "transport.tls.key", "is required"},
		{"tls peer_cert missing", tls(`cert: /etc/a.crt, key: /etc/a.key`), "transport.tls.peer_cert", "is required"},
		{"tls relative", tls(`cert: a.crt, key: /etc/a.key, peer_cert: /etc/b.crt`), "transport.tls.cert", "absolute path"},
		{"tls pins itself", tls(`cert: /etc/a.crt, key: /etc/a.key, peer_cert: /etc/a.crt`), "transport.tls.peer_cert", "must differ from transport.tls.cert"},
		{"plaintext with cert", `transport: {tls: {insecure_plaintext: true, cert: /etc/a.crt}}`, "transport.tls.cert", "must be empty when transport.tls.insecure_plaintext is true"},
	})
}

func TestHeartbeatRules(t *testing.T) {
	runRules(t, []ruleCase{
		{"fast", `heartbeat: {interval: 50ms, loss_threshold: 150ms, fence_margin: 100ms}`, "tiebreaker.timeout", "must be less than heartbeat.loss_threshold"},
		{"fast with timeout", `{heartbeat: {interval: 50ms, loss_threshold: 150ms, fence_margin: 100ms}, tiebreaker: {timeout: 100ms}}`, "", ""},
		{"interval too small", `heartbeat: {interval: 5ms}`, "heartbeat.interval", "at least 10ms, got 5ms"},
		{"interval zero", `heartbeat: {interval: 0}`, "heartbeat.interval", "at least 10ms, got 0s"},
		{"threshold exactly 3x", `heartbeat: {interval: 1s, loss_threshold: 3s}`, "", ""},
		{"threshold below 3x", `{heartbeat: {loss_threshold: 500ms, fence_margin: 100ms}, tiebreaker: {timeout: 100ms}}`, "heartbeat.loss_threshold", "must be at least 3 x heartbeat.interval (600ms), got 500ms"},
		{"interval too large for default threshold", `heartbeat: {interval: 2s}`, "heartbeat.loss_threshold", "(6s), got 3s"},
		{"fence zero", `heartbeat: {fence_margin: 0s}`, "heartbeat.fence_margin", "must be positive"},
		{"fence equal threshold", `heartbeat: {fence_margin: 3s}`, "heartbeat.fence_margin", "must be less than heartbeat.loss_threshold (3s), got 3s"},
		{"duration without unit", `heartbeat: {interval: 200}`, "heartbeat.interval", `must be a duration like "200ms" or "3s", got "200"`},
	})
}

func TestTiebreakerRules(t *testing.T) {
	tg := func(s string) string {
		return `{node: {listen_public: "198.18.0.1:7701"}, peer: {public_address: "198.18.0.2:7701"}, tiebreaker: {targets: [` + s + `]}}`
	}
	runRules(t, []ruleCase{
		{"no public heartbeat path", `tiebreaker: {targets: [{address: 198.18.0.254}]}`, "tiebreaker.targets", "needs heartbeats on the public network too"},
		{"no public path but a witness", `{tiebreaker: {targets: [{address: 198.18.0.254}]}, witness: {etcd: {endpoints: ["http://198.18.0.10:2379"]}}}`, "", ""},
		{"icmp host", tg(`{address: 198.18.0.254}`), "", ""},
		{"icmp ipv6", tg(`{address: "2001:db8::fe", method: icmp}`), "", ""},
		{"icmp name", tg(`{address: gw.lan}`), "", ""},
		{"icmp with port", tg(`{address: "198.18.0.254:80"}`), "tiebreaker.targets[0].address", "must be a host without a port for method icmp"},
		{"icmp bad host", tg(`{address: "gw_1"}`), "tiebreaker.targets[0].address", "IP address or host name"},
		{"tcp host:port", tg(`{address: "198.18.0.254:53", method: tcp}`), "", ""},
		{"tcp without port", tg(`{address: 198.18.0.254, method: tcp}`), "tiebreaker.targets[0].address", "host:port"},
		{"method bad", tg(`{address: 198.18.0.254, method: udp}`), "tiebreaker.targets[0].method", "must be one of icmp, tcp"},
		{"address missing", tg(`{method: tcp}`), "tiebreaker.targets[0].address", "is required"},
		{"second target", tg(`{address: 198.18.0.254}, {address: "x:1", method: icmp}`), "tiebreaker.targets[1].address", "without a port"},
		{"timeout zero", `tiebreaker: {timeout: 0s}`, "tiebreaker.timeout", "must be positive"},
		{"timeout at threshold", `tiebreaker: {timeout: 3s}`, "tiebreaker.timeout", "must be less than heartbeat.loss_threshold (3s)"},
	})
}

func TestWitnessRules(t *testing.T) {
	etcd := func(s string) string { return `witness: {etcd: {` + s + `}}` }
	runRules(t, []ruleCase{
		{"no witness", `witness: {etcd: ~}`, "", ""},
		{"https endpoint", etcd(`endpoints: ["https://198.18.0.10:2379"]`), "", ""},
		{"http and bare", etcd(`endpoints: ["http://etcd1.lan:2379", "198.18.0.11:2379"]`), "", ""},
		{"endpoints missing", etcd(`prefix: /x/`), "witness.etcd.endpoints", "at least one endpoint"},
		{"endpoints empty", etcd(`endpoints: []`), "witness.etcd.endpoints", "at least one endpoint"},
		{"scheme bad", etcd(`endpoints: ["ftp://198.18.0.10:2379"]`), "witness.etcd.endpoints[0]", "must be http://host:port"},
		{"no port", etcd(`endpoints: ["https://198.18.0.10"]`), "witness.etcd.endpoints[0]", "must be http://host:port"},
		{"with path", etcd(`endpoints: ["https://198.18.0.10:2379/v3"]`), "witness.etcd.endpoints[0]", "must be http://host:port"},
		{"bare no port", etcd(`endpoints: ["198.18.0.10"]`), "witness.etcd.endpoints[0]", "host:port"},
		{"prefix relative", etcd(`endpoints: ["198.18.0.10:2379"], prefix: zrepl`), "witness.etcd.prefix", "must start with '/'"},
		{"lease short", etcd(`endpoints: ["198.18.0.10:2379"], lease_ttl: 500ms`), "witness.etcd.lease_ttl", "whole number of seconds, at least 1s"},
		{"lease fractional", etcd(`endpoints: ["198.18.0.10:2379"], lease_ttl: 1500ms`), "witness.etcd.lease_ttl", "got 1.5s"},
	})
}

func TestWatchdogRules(t *testing.T) {
	runRules(t, []ruleCase{
		{"device", `watchdog: {device: /dev/watchdog0}`, "", ""},
		{"device relative", `watchdog: {device: watchdog}`, "watchdog.device", "absolute path"},
		{"interval zero", `watchdog: {interval: 0s}`, "watchdog.interval", "must be positive"},
	})
}

func TestVIPRules(t *testing.T) {
	runRules(t, []ruleCase{
		{"ipv4", `vip: {address: 198.18.0.100/24, interface: eth0}`, "", ""},
		{"ipv6", `vip: {address: "2001:db8::100/64", interface: bond0.100}`, "", ""},
		{"host route", `vip: {address: 198.18.0.100/32, interface: eth0}`, "", ""},
		{"no interface", `vip: {address: 198.18.0.100/24}`, "vip.interface", "is required when vip.address is set"},
		{"interface only", `vip: {interface: eth0}`, "vip.interface", "vip.address is empty"},
		{"no prefix length", `vip: {address: 198.18.0.100, interface: eth0}`, "vip.address", "CIDR"},
		{"bad address", `vip: {address: 198.18.0.300/24, interface: eth0}`, "vip.address", "CIDR"},
		{"network address", `vip: {address: 198.18.0.0/24, interface: eth0}`, "vip.address", "network address of 198.18.0.0/24"},
		{"interface slash", `vip: {address: 198.18.0.100/24, interface: eth0/1}`, "vip.interface", "network interface name"},
		{"interface too long", `vip: {address: 198.18.0.100/24, interface: abcdefghijklmnop}`, "vip.interface", "1 to 15 characters"},
		{"public_down route", `vip: {address: 198.18.0.100/24, interface: eth0, public_down: route}`, "", ""},
		{"public_down handover", `vip: {address: "2001:db8::100/64", interface: eth0, public_down: handover}`, "", ""},
		{"public_down route ipv6", `vip: {address: "2001:db8::100/64", interface: eth0, public_down: route}`, "vip.public_down", "IPv4 VIPs only"},
		{"public_down unknown", `vip: {address: 198.18.0.100/24, interface: eth0, public_down: forward}`, "vip.public_down", "must be one of auto, route, handover"},
		{"public_down without vip", `vip: {public_down: route}`, "vip.public_down", "needs a VIP"},
	})
}

func TestVIPRoutes(t *testing.T) {
	for _, c := range []struct {
		vip  VIP
		want bool
	}{
		{VIP{Address: "198.18.0.100/24", PublicDown: PublicDownAuto}, true},
		{VIP{Address: "2001:db8::100/64", PublicDown: PublicDownAuto}, false},
		{VIP{Address: "198.18.0.100/24", PublicDown: PublicDownHandover}, false},
		{VIP{Address: "198.18.0.100/24", PublicDown: PublicDownRoute}, true},
	} {
		if got := c.vip.Routes(); got != c.want {
			t.Errorf("%+v: Routes() = %v, want %v", c.vip, got, c.want)
		}
	}
}

func TestShareRules(t *testing.T) {
	nfs := func(s string) string { return `shares: {nfs: [` + s + `]}` }
	smb := func(s string) string { return `shares: {smb: [` + s + `]}` }
	runRules(t, []ruleCase{
		{"nfs root", nfs(`{dataset: tank/data}`), "", ""},
		{"nfs child", nfs(`{dataset: tank/data/a/b, clients: "198.18.0.0/24 198.18.2.5", options: "ro,sync"}`), "", ""},
		{"nfs outside root", nfs(`{dataset: tank/other}`), "shares.nfs[0].dataset", "must be a replicated root or inside one (replication.roots sources: tank/data)"},
		{"nfs prefix is not a parent", nfs(`{dataset: tank/database}`), "shares.nfs[0].dataset", "must be a replicated root"},
		{"nfs target name", `{replication: {roots: [{source: tank/data, target: backup/data}]}, shares: {nfs: [{dataset: backup/data}]}}`,
			"shares.nfs[0].dataset", "must be a replicated root"},
		{"nfs dataset missing", nfs(`{clients: "*"}`), "shares.nfs[0].dataset", "is required"},
		{"nfs dataset bad", nfs(`{dataset: "tank/data@x"}`), "shares.nfs[0].dataset", "snapshot"},
		{"nfs duplicate", nfs(`{dataset: tank/data}, {dataset: tank/data, clients: 198.18.2.0/24}`), "shares.nfs[1].dataset", "duplicate of shares.nfs[0].dataset"},
		{"nfs clients empty", nfs(`{dataset: tank/data, clients: ""}`), "shares.nfs[0].clients", "client specs"},
		{"nfs clients with options", nfs(`{dataset: tank/data, clients: "*(rw)"}`), "shares.nfs[0].clients", "without options"},
		{"nfs options empty", nfs(`{dataset: tank/data, options: ""}`), "shares.nfs[0].options", "separated by commas"},
		{"nfs options space", nfs(`{dataset: tank/data, options: "rw, sync"}`), "shares.nfs[0].options", "without spaces"},
		{"smb ok", smb(`{name: data, dataset: tank/data, options: {"read only": "no", "vfs objects": "shadow_copy2"}}`), "", ""},
		{"smb name max", smb(`{name: ` + strings.Repeat("n", 80) + `, dataset: tank/data}`), "", ""},
		{"smb name too long", smb(`{name: ` + strings.Repeat("n", 81) + `, dataset: tank/data}`), "shares.smb[0].name", "1 to 80 characters"},
		{"smb name chars", smb(`{name: "my data", dataset: tank/data}`), "shares.smb[0].name", "A-Z, a-z, 0-9, '_' and '-'"},
		{"smb name missing", smb(`{dataset: tank/data}`), "shares.smb[0].name", "is required"},
		{"smb name reserved", smb(`{name: Homes, dataset: tank/data}`), "shares.smb[0].name", "reserved smb.conf section"},
		{"smb name global", smb(`{name: global, dataset: tank/data}`), "shares.smb[0].name", "reserved"},
		{"smb duplicate", smb(`{name: data, dataset: tank/data}, {name: data, dataset: tank/data}`), "shares.smb[1].name", "duplicate of shares.smb[0].name"},
		{"smb duplicate case", smb(`{name: data, dataset: tank/data}, {name: DATA, dataset: tank/data}`), "shares.smb[1].name", "case-insensitive"},
		{"smb outside root", smb(`{name: data, dataset: pool2/data}`), "shares.smb[0].dataset", "must be a replicated root"},
		{"smb path option", smb(`{name: data, dataset: tank/data, options: {path: /x}}`), `shares.smb[0].options["path"]`, "set by zrepl-ha"},
		{"smb directory option", smb(`{name: data, dataset: tank/data, options: {Directory: /x}}`), `shares.smb[0].options["Directory"]`, "set by zrepl-ha"},
		{"smb option key bad", smb(`{name: data, dataset: tank/data, options: {"a=b": x}}`), `shares.smb[0].options["a=b"]`, "parameter name"},
		{"smb option multiline", smb(`{name: data, dataset: tank/data, options: {comment: "a\nb"}}`), `shares.smb[0].options["comment"]`, "single line"},
		{"smb options not a map", smb(`{name: data, dataset: tank/data, options: [a]}`), `shares.smb[0].options`, "must be a mapping, got a list"},
	})
}

func TestMiscRules(t *testing.T) {
	runRules(t, []ruleCase{
		{"failback auto", `failback: auto`, "", ""},
		{"failback bad", `failback: never`, "failback", "must be one of manual, auto"},
		{"log json debug", `log: {level: debug, format: json}`, "", ""},
		{"log warn", `log: {level: warn}`, "", ""},
		{"log error", `log: {level: error}`, "", ""},
		{"log level bad", `log: {level: trace}`, "log.level", "must be one of debug, info, warn, error"},
		{"log format bad", `log: {format: xml}`, "log.format", "must be one of text, json"},
		{"metrics", `metrics: {listen: "127.0.0.1:9811"}`, "", ""},
		{"metrics any", `metrics: {listen: ":9811"}`, "", ""},
		{"metrics bad", `metrics: {listen: "localhost"}`, "metrics.listen", "host:port"},
	})
}

// TestValidateGoBuilt covers Validate on configs built in Go, including
// values that the YAML decoder cannot produce.
func TestValidateGoBuilt(t *testing.T) {
	good := func() *Config {
		c, err := Parse("m.yaml", []byte(minimal))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if err := good().Validate(); err != nil {
		t.Fatalf("minimal: %v", err)
	}
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"empty target", func(c *Config) { c.Replication.Roots[0].Target = "" }, "replication.roots[0].target: is required"},
		{"negative keep interval", func(c *Config) { c.Retention.Source = []KeepRule{{Span: time.Hour, Interval: -1}} }, "retention.source[0]: span and interval must be positive"},
		{"zero span", func(c *Config) { c.Retention.Source = []KeepRule{{}} }, "retention.source[0]: span and interval must be positive"},
		{"negative bandwidth", func(c *Config) { c.Transport.BandwidthLimit = -5 }, "transport.bandwidth_limit: must not be negative"},
		{"smb option empty key", func(c *Config) {
			c.Shares.SMB = []SMBShare{{Name: "d", Dataset: "tank/data", Options: map[string]string{" ": "x"}}}
		}, `shares.smb[0].options[" "]: must be an smb.conf parameter name`},
		{"defaults alone", func(c *Config) { *c = *Defaults() }, "node.name: is required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.mutate(c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want %q, got %v", tc.want, err)
			}
			var errs *Errors
			if !errors.As(err, &errs) || (*errs)[0].Line != 0 {
				t.Fatalf("want *Errors without positions, got %#v", err)
			}
		})
	}
}

func TestCheckDataset(t *testing.T) {
	for _, ok := range []string{"tank", "tank/data", "t/a-b/c_d/e.f/g:h", "Pool/X"} {
		if err := checkDataset(ok); err != nil {
			t.Errorf("checkDataset(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "/", "tank/", "/tank", "tank//x", "tank/..", "tank/.", "-tank", "tank/-x", "tank/x y", "tank@s", "tank#b", "tank/ä", "9pool", "_pool"} {
		if err := checkDataset(bad); err == nil {
			t.Errorf("checkDataset(%q) = nil, want error", bad)
		}
	}
}
