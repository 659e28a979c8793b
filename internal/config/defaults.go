package config

import "time"

// Default values. Defaults() and the per-item setDefaults methods are the
// only places that use them, so docs/config.md has one place to agree with.
const (
	DefaultPath          = "/etc/zrepl-ha/zrepl-ha.yaml"
	DefaultStateDir      = "/var/lib/zrepl-ha"
	DefaultControlSocket = "/run/zrepl-ha/control.sock"
	DefaultCadence       = "@every 5s"
	DefaultMaxStreamSize = ByteSize(4 << 30)
	DefaultZstdLevel     = 3
	DefaultNFSClients    = "*"
	DefaultNFSOptions    = "rw,sync,no_subtree_check"
	DefaultEtcdPrefix    = "/zrepl-ha/"

	DefaultStallTimeout      = Duration(30 * time.Second)
	DefaultHeartbeatInterval = Duration(200 * time.Millisecond)
	DefaultLossThreshold     = Duration(3 * time.Second)
	DefaultFenceMargin       = Duration(2 * time.Second)
	DefaultTiebreakTimeout   = Duration(500 * time.Millisecond)
	DefaultEtcdLeaseTTL      = Duration(5 * time.Second)
	DefaultWatchdogInterval  = Duration(time.Second)
)

// defaultGrid is "1h:all", "24h:1h", "30d:1d": everything for an hour, hourly
// for a day, daily for a month. A function so that no two configs share the
// slice.
func defaultGrid() []KeepRule {
	const day = 24 * time.Hour
	return []KeepRule{
		{Span: time.Hour},
		{Span: day, Interval: time.Hour},
		{Span: 30 * day, Interval: day},
	}
}

// Defaults returns a Config with every default filled in. Keys without a
// default (node.name, node.listen_link, peer.name, peer.link_address,
// replication.roots, TLS files) are left empty, so Defaults() alone does not
// validate. Parse decodes the file over this value.
func Defaults() *Config {
	return &Config{
		Node: Node{
			StateDir:      DefaultStateDir,
			ControlSocket: DefaultControlSocket,
		},
		Peer: Peer{InitialRole: RolePassive},
		Replication: Replication{
			InitialSend:   InitialSendNewest,
			MaxStreamSize: DefaultMaxStreamSize,
			Raw:           RawAuto,
		},
		Snapshots: Snapshots{Cadence: DefaultCadence},
		Retention: Retention{Source: defaultGrid(), Target: defaultGrid()},
		Transport: Transport{
			Compression:  CompressionZstd,
			ZstdLevel:    DefaultZstdLevel,
			StallTimeout: DefaultStallTimeout,
		},
		Heartbeat: Heartbeat{
			Interval:      DefaultHeartbeatInterval,
			LossThreshold: DefaultLossThreshold,
			FenceMargin:   DefaultFenceMargin,
		},
		Tiebreaker: Tiebreaker{Timeout: DefaultTiebreakTimeout},
		Watchdog:   Watchdog{Interval: DefaultWatchdogInterval},
		Failback:   FailbackManual,
		VIP:        VIP{PublicDown: PublicDownAuto},
		Log:        Log{Level: LogInfo, Format: LogText},
	}
}

// itemDefaulter is implemented by the types that appear in lists or behind
// pointers: the decoder calls setDefaults on each new item before decoding
// the file's keys into it, the same way Defaults() seeds the top level.
type itemDefaulter interface{ setDefaults() }

func (t *TiebreakTarget) setDefaults() { t.Method = TiebreakICMP }

func (s *NFSShare) setDefaults() {
	s.Clients = DefaultNFSClients
	s.Options = DefaultNFSOptions
}

func (e *Etcd) setDefaults() {
	e.Prefix = DefaultEtcdPrefix
	e.LeaseTTL = DefaultEtcdLeaseTTL
}

// applyDerivedDefaults fills defaults that depend on other keys. It runs
// after decoding and before validation.
func applyDerivedDefaults(c *Config) {
	for i := range c.Replication.Roots {
		if r := &c.Replication.Roots[i]; r.Target == "" {
			r.Target = r.Source
		}
	}
}
