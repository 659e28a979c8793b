package config

import (
	"fmt"
	"math"
	"math/big"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the configuration of one node. The field order is the order in
// which `config show` prints the sections, so it follows docs/config.md.
type Config struct {
	Node        Node         `yaml:"node"`
	Peer        Peer         `yaml:"peer"`
	Replication Replication  `yaml:"replication"`
	Snapshots   Snapshots    `yaml:"snapshots"`
	Retention   Retention    `yaml:"retention"`
	Transport   Transport    `yaml:"transport"`
	Heartbeat   Heartbeat    `yaml:"heartbeat"`
	Tiebreaker  Tiebreaker   `yaml:"tiebreaker"`
	Witness     Witness      `yaml:"witness"`
	Watchdog    Watchdog     `yaml:"watchdog"`
	VIP         VIP          `yaml:"vip"`
	Shares      Shares       `yaml:"shares"`
	Failback    FailbackMode `yaml:"failback"`
	Log         Log          `yaml:"log"`
	Metrics     Metrics      `yaml:"metrics"`
}

// Node describes this machine.
type Node struct {
	Name          string `yaml:"name"`
	StateDir      string `yaml:"state_dir"`
	ControlSocket string `yaml:"control_socket"`
	ListenLink    string `yaml:"listen_link"`
	ListenPublic  string `yaml:"listen_public"`
}

// Peer describes the other node of the pair.
type Peer struct {
	Name          string `yaml:"name"`
	LinkAddress   string `yaml:"link_address"`
	PublicAddress string `yaml:"public_address"`
	// InitialRole is the role this node takes the first time it starts with
	// an empty state_dir; afterwards the persisted state wins.
	InitialRole Role `yaml:"initial_role"`
}

// Replication says what is replicated and how.
type Replication struct {
	Roots             []Root      `yaml:"roots"`
	InitialSend       InitialSend `yaml:"initial_send"`
	MaxStreamSize     ByteSize    `yaml:"max_stream_size"`
	DataOverPublic    bool        `yaml:"data_over_public"`
	DestroyOnReceiver bool        `yaml:"destroy_on_receiver"`
	Raw               RawMode     `yaml:"raw"`
}

// Root is one replicated dataset tree. Source is the dataset's name on this
// node, Target its name on the peer. After Parse, Target is never empty: it
// defaults to Source.
type Root struct {
	Source string `yaml:"source"`
	Target string `yaml:"target"`
}

// Snapshots configures the snapshot schedule.
type Snapshots struct {
	// Cadence is a robfig/cron spec (optional seconds field) or descriptor.
	// This package checks it only roughly; the scheduler parses it fully.
	Cadence string `yaml:"cadence"`
}

// Retention holds the keep-grids for both sides.
type Retention struct {
	Source []KeepRule `yaml:"source"`
	Target []KeepRule `yaml:"target"`
	// PruneUnreplicatedAbovePoolPercent is 0 (never destroy a snapshot the
	// peer does not have yet) or a pool usage percentage in 50..99 above
	// which the source may destroy such snapshots to avoid filling the pool.
	PruneUnreplicatedAbovePoolPercent int `yaml:"prune_unreplicated_above_pool_percent"`
}

// Transport configures the replication and heartbeat connection.
type Transport struct {
	Compression    Compression `yaml:"compression"`
	ZstdLevel      int         `yaml:"zstd_level"`
	BandwidthLimit ByteSize    `yaml:"bandwidth_limit"` // bytes per second, 0 = unlimited
	StallTimeout   Duration    `yaml:"stall_timeout"`
	TLS            TLS         `yaml:"tls"`
}

// TLS holds this node's key pair and the pinned certificate of the peer.
type TLS struct {
	Cert              string `yaml:"cert"`
	Key               string `yaml:"key"`
	PeerCert          string `yaml:"peer_cert"`
	InsecurePlaintext bool   `yaml:"insecure_plaintext"`
}

// Heartbeat configures failure detection.
type Heartbeat struct {
	Interval      Duration `yaml:"interval"`
	LossThreshold Duration `yaml:"loss_threshold"`
	// FenceMargin is how much longer than LossThreshold the passive waits
	// before it promotes; an active that lost the peer fences at
	// LossThreshold, so it is fenced a margin before the passive serves.
	FenceMargin Duration `yaml:"fence_margin"`
}

// Tiebreaker lists addresses a node must reach before it promotes itself (or,
// as active, keeps serving) when heartbeats are lost.
type Tiebreaker struct {
	Targets []TiebreakTarget `yaml:"targets"`
	Timeout Duration         `yaml:"timeout"`
}

// TiebreakTarget is one tiebreaker address. ICMP takes a host, TCP host:port.
type TiebreakTarget struct {
	Address string         `yaml:"address"`
	Method  TiebreakMethod `yaml:"method"`
}

// Witness is an optional external arbiter. Etcd is nil when not configured.
type Witness struct {
	Etcd *Etcd `yaml:"etcd,omitempty"`
}

// Etcd configures an etcd cluster used as witness through a leased key.
type Etcd struct {
	Endpoints []string `yaml:"endpoints"`
	Prefix    string   `yaml:"prefix"`
	LeaseTTL  Duration `yaml:"lease_ttl"`
}

// Watchdog configures the hardware or softdog watchdog. Empty Device = off.
type Watchdog struct {
	Device   string   `yaml:"device"`
	Interval Duration `yaml:"interval"`
}

// VIP is the service address the active node holds. Empty Address = no VIP.
type VIP struct {
	Address   string `yaml:"address"` // CIDR, e.g. 198.18.0.100/24
	Interface string `yaml:"interface"`
	// PublicDown is what the active does when its public network goes
	// down while the peer's is up (docs/failover.md).
	PublicDown PublicDownMode `yaml:"public_down"`
}

// PublicDownMode: route the VIP's traffic through the peer over the
// heartbeat link (the active keeps serving), or hand over to the peer.
type PublicDownMode string

const (
	PublicDownAuto     PublicDownMode = "auto" // route for an IPv4 VIP, handover for IPv6
	PublicDownRoute    PublicDownMode = "route"
	PublicDownHandover PublicDownMode = "handover"
)

var publicDownModes = []PublicDownMode{PublicDownAuto, PublicDownRoute, PublicDownHandover}

// Routes reports whether the active routes through the peer when its
// public network is down. Only meaningful on a validated config.
func (v VIP) Routes() bool {
	switch v.PublicDown {
	case PublicDownRoute:
		return true
	case PublicDownAuto, "":
		return v.Prefix().Addr().Is4()
	}
	return false
}

// Enabled reports whether a VIP is configured.
func (v VIP) Enabled() bool { return v.Address != "" }

// Prefix returns the parsed Address. It is only meaningful on a validated
// config with Enabled() true; otherwise it returns the zero Prefix.
func (v VIP) Prefix() netip.Prefix {
	p, err := netip.ParsePrefix(v.Address)
	if err != nil {
		return netip.Prefix{}
	}
	return p
}

// Shares lists what the active node exports.
type Shares struct {
	NFS []NFSShare `yaml:"nfs"`
	SMB []SMBShare `yaml:"smb"`
}

// NFSShare is one NFS export of a dataset's mountpoint.
type NFSShare struct {
	Dataset string `yaml:"dataset"`
	Clients string `yaml:"clients"` // exports(5) client specs, space separated
	Options string `yaml:"options"` // exports(5) options, comma separated
}

// SMBShare is one SMB share of a dataset's mountpoint.
type SMBShare struct {
	Name    string            `yaml:"name"`
	Dataset string            `yaml:"dataset"`
	Options map[string]string `yaml:"options"` // smb.conf share parameters; path is set by zrepl-ha
}

// Log configures logging.
type Log struct {
	Level  LogLevel  `yaml:"level"`
	Format LogFormat `yaml:"format"`
}

// Metrics configures the Prometheus endpoint. Empty Listen = off.
type Metrics struct {
	Listen string `yaml:"listen"`
}

// Enum types. Each has its allowed values in a slice next to it so the
// validator's message can list them.

// Role is a node's role in the pair.
type Role string

const (
	RoleActive  Role = "active"
	RolePassive Role = "passive"
)

var roles = []Role{RoleActive, RolePassive}

// InitialSend says what the first replication of a new dataset sends.
type InitialSend string

const (
	InitialSendNewest InitialSend = "newest" // only the newest snapshot
	InitialSendAll    InitialSend = "all"    // every existing snapshot
)

var initialSends = []InitialSend{InitialSendNewest, InitialSendAll}

// RawMode says when `zfs send -w` is used.
type RawMode string

const (
	RawAuto   RawMode = "auto" // raw for encrypted datasets only
	RawAlways RawMode = "always"
	RawNever  RawMode = "never"
)

var rawModes = []RawMode{RawAuto, RawAlways, RawNever}

// Compression is the stream compression on the wire.
type Compression string

const (
	CompressionZstd Compression = "zstd"
	CompressionLZ4  Compression = "lz4"
	CompressionNone Compression = "none"
	CompressionAuto Compression = "auto"
)

var compressions = []Compression{CompressionZstd, CompressionLZ4, CompressionNone, CompressionAuto}

// TiebreakMethod is how a tiebreaker target is probed.
type TiebreakMethod string

const (
	TiebreakICMP TiebreakMethod = "icmp"
	TiebreakTCP  TiebreakMethod = "tcp"
)

var tiebreakMethods = []TiebreakMethod{TiebreakICMP, TiebreakTCP}

// FailbackMode says whether a recovered former active takes the role back.
type FailbackMode string

const (
	FailbackManual FailbackMode = "manual"
	FailbackAuto   FailbackMode = "auto"
)

var failbackModes = []FailbackMode{FailbackManual, FailbackAuto}

// LogLevel is the minimum level logged.
type LogLevel string

const (
	LogDebug LogLevel = "debug"
	LogInfo  LogLevel = "info"
	LogWarn  LogLevel = "warn"
	LogError LogLevel = "error"
)

var logLevels = []LogLevel{LogDebug, LogInfo, LogWarn, LogError}

// LogFormat is the log output format.
type LogFormat string

const (
	LogText LogFormat = "text"
	LogJSON LogFormat = "json"
)

var logFormats = []LogFormat{LogText, LogJSON}

// Duration is a time.Duration written as a Go duration string ("200ms",
// "3s", "1h30m") in YAML. A plain 0 is accepted; other bare numbers are
// rejected because the unit would be a guess.
type Duration time.Duration

// Duration returns d as a time.Duration.
func (d Duration) Duration() time.Duration { return time.Duration(d) }

// String formats d like time.Duration but without trailing zero units
// ("1h" rather than "1h0m0s").
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("must be a duration like \"200ms\" or \"3s\", got %s", describe(n))
	}
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil {
		return fmt.Errorf("must be a duration like \"200ms\" or \"3s\", got %q", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// ByteSize is a number of bytes. In YAML it is a plain integer or a number
// with a unit: B; K, KiB, M, MiB, G, GiB, T, TiB, P, PiB (powers of 1024, as
// zfs uses them); KB, MB, GB, TB, PB (powers of 1000). Units are
// case-insensitive and always mean bytes, never bits.
type ByteSize int64

// Bytes returns b as an int64.
func (b ByteSize) Bytes() int64 { return int64(b) }

var byteUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
	"p": 1 << 50, "pib": 1 << 50, "pb": 1e15,
}

var byteSizeRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)$`)

// ParseByteSize parses "64MiB", "1GiB", "500M", "1.5G" or "1048576".
func ParseByteSize(s string) (ByteSize, error) {
	bad := fmt.Errorf("must be a size like \"64MiB\", \"500M\", \"1GB\" or a number of bytes, got %q", s)
	m := byteSizeRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, bad
	}
	mult, ok := byteUnits[strings.ToLower(m[2])]
	if !ok {
		return 0, bad
	}
	// big.Rat keeps "1.5G" exact and makes overflow a comparison.
	r, ok := new(big.Rat).SetString(m[1])
	if !ok {
		return 0, bad
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, fmt.Errorf("must be a whole number of bytes, got %q", s)
	}
	if r.Num().Cmp(big.NewInt(math.MaxInt64)) > 0 {
		return 0, fmt.Errorf("is too large, got %q", s)
	}
	return ByteSize(r.Num().Int64()), nil
}

// String renders b with the largest binary unit that divides it exactly
// ("4GiB"), or as a plain number of bytes.
func (b ByteSize) String() string {
	if b == 0 {
		return "0"
	}
	for _, u := range []struct {
		name string
		size int64
	}{{"PiB", 1 << 50}, {"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if int64(b)%u.size == 0 {
			return strconv.FormatInt(int64(b)/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("must be a size like \"64MiB\" or a number of bytes, got %s", describe(n))
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// MarshalYAML implements yaml.Marshaler; plain byte counts stay integers.
func (b ByteSize) MarshalYAML() (any, error) {
	s := b.String()
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	return s, nil
}

// KeepRule is one entry of a retention keep-grid, written "SPAN:all" or
// "SPAN:INTERVAL". Spans and intervals take the units s, m, h, d (24h) and
// w (7d), combinable like "1d12h"; sub-second units make no sense for
// snapshots and are not accepted.
//
// Rules are age windows: a rule covers snapshots younger than its Span and at
// least as old as the previous rule's Span. Within it, "all" keeps every
// snapshot and an Interval keeps one snapshot per Interval bucket. Snapshots
// older than the last Span are destroyed (the newest snapshot common to both
// nodes is never destroyed, whatever the grid says).
type KeepRule struct {
	Span     time.Duration
	Interval time.Duration // 0 means "all"
}

// All reports whether the rule keeps every snapshot in its window.
func (r KeepRule) All() bool { return r.Interval == 0 }

// String renders the rule in the form ParseKeepRule reads.
func (r KeepRule) String() string {
	if r.All() {
		return formatSpan(r.Span) + ":all"
	}
	return formatSpan(r.Span) + ":" + formatSpan(r.Interval)
}

// ParseKeepRule parses "1h:all" or "30d:1d".
func ParseKeepRule(s string) (KeepRule, error) {
	bad := fmt.Errorf("must be \"SPAN:all\" or \"SPAN:INTERVAL\" like \"24h:1h\" or \"30d:1d\" (units s, m, h, d, w), got %q", s)
	spanStr, ivStr, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return KeepRule{}, bad
	}
	span, err := parseSpan(spanStr)
	if err != nil || span <= 0 {
		return KeepRule{}, bad
	}
	r := KeepRule{Span: span}
	if ivStr == "all" {
		return r, nil
	}
	r.Interval, err = parseSpan(ivStr)
	if err != nil || r.Interval <= 0 {
		return KeepRule{}, bad
	}
	return r, nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (r *KeepRule) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("must be \"SPAN:all\" or \"SPAN:INTERVAL\", got %s", describe(n))
	}
	v, err := ParseKeepRule(n.Value)
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (r KeepRule) MarshalYAML() (any, error) { return r.String(), nil }

var spanUnits = map[byte]time.Duration{
	's': time.Second, 'm': time.Minute, 'h': time.Hour,
	'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour,
}

// parseSpan parses a sequence of <digits><unit> with units s, m, h, d, w.
// time.ParseDuration has no days, which retention needs most.
func parseSpan(s string) (time.Duration, error) {
	if s == "" {
		return 0, fmt.Errorf("empty")
	}
	var total time.Duration
	for s != "" {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == 0 || i == len(s) {
			return 0, fmt.Errorf("bad span")
		}
		unit, ok := spanUnits[s[i]]
		if !ok {
			return 0, fmt.Errorf("bad unit")
		}
		n, err := strconv.ParseInt(s[:i], 10, 64)
		if err != nil || n > int64(math.MaxInt64/unit) {
			return 0, fmt.Errorf("too large")
		}
		part := time.Duration(n) * unit
		if total > math.MaxInt64-part {
			return 0, fmt.Errorf("too large")
		}
		total += part
		s = s[i+1:]
	}
	return total, nil
}

// formatSpan renders d in the largest unit that divides it: w, d, h, m, s.
func formatSpan(d time.Duration) string {
	if d <= 0 || d%time.Second != 0 {
		// Not produced by parseSpan; still say something readable.
		return time.Duration(d).String()
	}
	for _, u := range []byte{'w', 'd', 'h', 'm', 's'} {
		if d%spanUnits[u] == 0 {
			return strconv.FormatInt(int64(d/spanUnits[u]), 10) + string(u)
		}
	}
	return time.Duration(d).String() // unreachable: seconds divide d
}

// describe names a node for "got ..." in messages.
func describe(n *yaml.Node) string {
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	default:
		return "nothing"
	}
}

// FieldError is one problem in a config file. Line and Column are 1-based
// and 0 when unknown (for example for Validate on a config built in Go).
type FieldError struct {
	File   string
	Line   int
	Column int
	Path   string // dotted keys and [i] indices: replication.roots[1].source
	Msg    string
	// Err is the underlying error, if any (e.g. the *fs.PathError of a file
	// that cannot be read), so errors.Is works through *Errors.
	Err error
}

// Error renders "file:line:col: path: msg", leaving out unknown parts.
func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying error, if any.
func (e *FieldError) Unwrap() error { return e.Err }

// Errors is every problem found in one config file, in file order. Load,
// Parse and Validate return it as *Errors, never empty.
type Errors []*FieldError

// Error renders one problem per line.
func (e *Errors) Error() string {
	lines := make([]string, len(*e))
	for i, fe := range *e {
		lines[i] = fe.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the entries, so errors.As finds a *FieldError.
func (e *Errors) Unwrap() []error {
	out := make([]error, len(*e))
	for i, fe := range *e {
		out[i] = fe
	}
	return out
}

// YAML renders the effective configuration, defaults included, for
// `config show`. The output parses back to an equal Config.
func (c *Config) YAML() ([]byte, error) {
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("render config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("render config: %w", err)
	}
	return []byte(b.String()), nil
}
