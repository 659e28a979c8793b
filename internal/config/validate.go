package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// validator collects every rule violation of a decoded Config. Messages say
// what is allowed, so a user can fix the file without opening the docs.
type validator struct {
	file string
	pos  map[string]position
	bad  map[string]bool
	errs Errors
}

// errorf reports a problem with path, located where path (or its nearest
// written ancestor, for a missing key) is in the file.
func (v *validator) errorf(path, format string, args ...any) {
	v.crossf(path, "", format, args...)
}

// crossf reports a problem with path that involves another key: it is
// located at path if the file sets it, else at other (the key that made path
// wrong, e.g. an interval too large for the default threshold), else at
// path's nearest written ancestor. A key that already failed to decode gets
// no second error.
func (v *validator) crossf(path, other, format string, args ...any) {
	if v.suppressed(path) || (other != "" && v.suppressed(other)) {
		return
	}
	at := path
	if _, ok := v.pos[path]; !ok && other != "" {
		if _, ok := v.pos[other]; ok {
			at = other
		}
	}
	e := &FieldError{File: v.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	for p := at; ; p = parentPath(p) {
		if pos, ok := v.pos[p]; ok {
			e.Line, e.Column = pos.line, pos.col
			break
		}
		if p == "" {
			break
		}
	}
	v.errs = append(v.errs, e)
}

// badUnder reports whether something at or below path could not be decoded.
func (v *validator) badUnder(path string) bool {
	for p := range v.bad {
		if p == path || strings.HasPrefix(p, path+".") {
			return true
		}
	}
	return false
}

func (v *validator) suppressed(path string) bool {
	for p := path; ; p = parentPath(p) {
		if v.bad[p] {
			return true
		}
		if p == "" {
			return false
		}
	}
}

// check reports err (if any) for path.
func (v *validator) check(path string, err error) {
	if err != nil {
		v.errorf(path, "%s", err)
	}
}

func oneOf[T ~string](v *validator, path string, val T, allowed []T) {
	if slices.Contains(allowed, val) {
		return
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	v.errorf(path, "must be one of %s, got %q", strings.Join(names, ", "), val)
}

func (v *validator) config(c *Config) {
	v.node(c)
	v.peer(c)
	v.replication(c)
	v.check("snapshots.cadence", checkCadence(c.Snapshots.Cadence))
	v.retention(c)
	v.transport(c)
	v.heartbeat(c)
	v.tiebreaker(c)
	v.witness(c)
	v.watchdog(c)
	v.vip(c)
	v.shares(c)
	oneOf(v, "failback", c.Failback, failbackModes)
	oneOf(v, "log.level", c.Log.Level, logLevels)
	oneOf(v, "log.format", c.Log.Format, logFormats)
	if c.Metrics.Listen != "" {
		v.check("metrics.listen", checkHostPort(c.Metrics.Listen, false))
	}
}

var nodeNameRE = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)

func checkNodeName(s string) error {
	switch {
	case s == "":
		return errors.New("is required")
	case !nodeNameRE.MatchString(s):
		return fmt.Errorf("must be 1 to 63 characters of a-z, 0-9 and '-', got %q", s)
	}
	return nil
}

func checkAbsPath(s string) error {
	switch {
	case s == "":
		return errors.New("is required")
	case !filepath.IsAbs(s):
		return fmt.Errorf("must be an absolute path, got %q", s)
	}
	return nil
}

// maxSocketPath is sizeof(sockaddr_un.sun_path) minus the NUL on Linux.
const maxSocketPath = 107

func (v *validator) node(c *Config) {
	n := c.Node
	v.check("node.name", checkNodeName(n.Name))
	v.check("node.state_dir", checkAbsPath(n.StateDir))
	if err := checkAbsPath(n.ControlSocket); err != nil {
		v.check("node.control_socket", err)
	} else if len(n.ControlSocket) > maxSocketPath {
		v.errorf("node.control_socket", "is %d bytes long; a unix socket path can have at most %d", len(n.ControlSocket), maxSocketPath)
	}
	if n.ListenLink == "" {
		v.errorf("node.listen_link", "is required (host:port on the heartbeat link, e.g. 198.18.1.1:7701)")
	} else {
		v.check("node.listen_link", checkHostPort(n.ListenLink, false))
	}
	if n.ListenPublic != "" {
		if err := checkHostPort(n.ListenPublic, false); err != nil {
			v.check("node.listen_public", err)
		} else if n.ListenPublic == n.ListenLink {
			v.crossf("node.listen_public", "node.listen_link", "must differ from node.listen_link (%s)", n.ListenLink)
		}
	}
}

func (v *validator) peer(c *Config) {
	p := c.Peer
	if err := checkNodeName(p.Name); err != nil {
		v.check("peer.name", err)
	} else if p.Name == c.Node.Name {
		v.crossf("peer.name", "node.name", "must differ from node.name (%q)", c.Node.Name)
	}
	if p.LinkAddress == "" {
		v.errorf("peer.link_address", "is required (the peer's host:port on the heartbeat link, e.g. 198.18.1.2:7701)")
	} else {
		v.check("peer.link_address", checkHostPort(p.LinkAddress, true))
	}
	if p.PublicAddress != "" {
		v.check("peer.public_address", checkHostPort(p.PublicAddress, true))
	}
	oneOf(v, "peer.initial_role", p.InitialRole, roles)
}

func (v *validator) replication(c *Config) {
	r := c.Replication
	if len(r.Roots) == 0 {
		v.errorf("replication.roots", "at least one root is required (a list of {source, target})")
	}
	srcOK := make([]bool, len(r.Roots))
	dstOK := make([]bool, len(r.Roots))
	for i, root := range r.Roots {
		p := fmt.Sprintf("replication.roots[%d]", i)
		if err := checkDataset(root.Source); err != nil {
			v.check(p+".source", err)
		} else {
			srcOK[i] = true
		}
		// A target equal to an invalid source (the default) would only
		// repeat the source's error.
		if err := checkDataset(root.Target); err != nil {
			if srcOK[i] || root.Target != root.Source {
				v.check(p+".target", err)
			}
		} else {
			dstOK[i] = true
		}
	}
	// Roots are replicated recursively, so nested roots would send the same
	// dataset twice. A pair whose sources clash is reported once, not again
	// for the targets that default to those sources.
	for i := range r.Roots {
		for j := range i {
			if srcOK[i] && srcOK[j] {
				if msg := overlap(r.Roots[i].Source, r.Roots[j].Source, fmt.Sprintf("replication.roots[%d].source", j)); msg != "" {
					v.errorf(fmt.Sprintf("replication.roots[%d].source", i), "%s", msg)
					continue
				}
			}
			if dstOK[i] && dstOK[j] {
				if msg := overlap(r.Roots[i].Target, r.Roots[j].Target, fmt.Sprintf("replication.roots[%d].target", j)); msg != "" {
					v.errorf(fmt.Sprintf("replication.roots[%d].target", i), "%s", msg)
				}
			}
		}
	}
	oneOf(v, "replication.initial_send", r.InitialSend, initialSends)
	if r.MaxStreamSize < 1<<20 {
		v.errorf("replication.max_stream_size", "must be at least 1MiB, got %s", r.MaxStreamSize)
	}
	if r.DataOverPublic && (c.Node.ListenPublic == "" || c.Peer.PublicAddress == "") {
		v.errorf("replication.data_over_public", "needs node.listen_public and peer.public_address to be set")
	}
	oneOf(v, "replication.raw", r.Raw, rawModes)
}

// overlap describes how dataset a clashes with b (written at path bPath), or
// returns "".
func overlap(a, b, bPath string) string {
	switch {
	case a == b:
		return fmt.Sprintf("duplicate of %s (%s)", bPath, b)
	case isWithin(a, b) || isWithin(b, a):
		return fmt.Sprintf("overlaps %s (%s); roots are replicated recursively, so list only the topmost dataset", bPath, b)
	}
	return ""
}

// isWithin reports whether dataset ds is root or a descendant of it.
func isWithin(ds, root string) bool {
	return ds == root || strings.HasPrefix(ds, root+"/")
}

var datasetComponentRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]+$`)

// checkDataset is a local, simple check of a ZFS dataset name. The ZFS layer
// has the authoritative validator; this one exists so that config does not
// import it (see doc.go) and catches typos before anything touches a pool.
func checkDataset(name string) error {
	switch {
	case name == "":
		return errors.New("is required")
	case strings.ContainsAny(name, "@#"):
		return fmt.Errorf("must be a dataset, not a snapshot or bookmark (no '@' or '#'), got %q", name)
	case len(name) > 255:
		return fmt.Errorf("must be at most 255 characters, got %d", len(name))
	}
	comps := strings.Split(name, "/")
	for _, c := range comps {
		switch {
		case c == "":
			return fmt.Errorf("must not have empty components (leading, trailing or double '/'), got %q", name)
		case c == "." || c == "..":
			return fmt.Errorf("must not have '.' or '..' components, got %q", name)
		case c[0] == '-':
			return fmt.Errorf("component %q must not start with '-'", c)
		case !datasetComponentRE.MatchString(c):
			return fmt.Errorf("component %q may only contain A-Z, a-z, 0-9, '_', '.', ':' and '-'", c)
		}
	}
	if p := comps[0][0]; !('a' <= p && p <= 'z' || 'A' <= p && p <= 'Z') {
		return fmt.Errorf("pool name %q must start with a letter", comps[0])
	}
	return nil
}

// cronDescriptors are robfig/cron's predefined schedules besides @every.
var cronDescriptors = []string{"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}

// checkCadence is a rough check of a robfig/cron spec: the scheduler parses
// and validates the full spec (field ranges, names, steps) when it starts.
// Here we catch the common mistakes without importing robfig/cron.
func checkCadence(s string) error {
	s = strings.TrimSpace(s)
	if s == "" {
		return errors.New(`is required (a cron spec like "*/5 * * * *" or "@every 5s")`)
	}
	// robfig/cron accepts a leading time zone.
	if strings.HasPrefix(s, "TZ=") || strings.HasPrefix(s, "CRON_TZ=") {
		_, rest, ok := strings.Cut(s, " ")
		if !ok || strings.TrimSpace(rest) == "" {
			return fmt.Errorf("has a time zone but no schedule, got %q", s)
		}
		s = strings.TrimSpace(rest)
	}
	if every, ok := strings.CutPrefix(s, "@every"); ok && (every == "" || every[0] == ' ' || every[0] == '\t') {
		d, err := time.ParseDuration(strings.TrimSpace(every))
		if err != nil {
			return fmt.Errorf(`"@every" needs a duration like "5s" or "1m", got %q`, s)
		}
		if d < time.Second {
			return fmt.Errorf(`"@every" must be at least 1s, got %s`, d)
		}
		return nil
	}
	if strings.HasPrefix(s, "@") {
		if slices.Contains(cronDescriptors, s) {
			return nil
		}
		return fmt.Errorf("unknown descriptor %q (allowed: @every <duration>, %s)", s, strings.Join(cronDescriptors, ", "))
	}
	if n := len(strings.Fields(s)); n != 5 && n != 6 {
		return fmt.Errorf("must have 5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, or be a descriptor like \"@every 5s\"; got %d fields in %q", n, s)
	}
	return nil
}

func (v *validator) retention(c *Config) {
	v.grid("retention.source", c.Retention.Source)
	v.grid("retention.target", c.Retention.Target)
	if p := c.Retention.PruneUnreplicatedAbovePoolPercent; p != 0 && (p < 50 || p > 99) {
		v.errorf("retention.prune_unreplicated_above_pool_percent", "must be 0 (never) or between 50 and 99, got %d", p)
	}
}

func (v *validator) grid(path string, rules []KeepRule) {
	if len(rules) == 0 {
		v.errorf(path, `must have at least one rule, e.g. ["1h:all", "24h:1h", "30d:1d"]`)
		return
	}
	for i, r := range rules {
		p := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case r.Span <= 0 || r.Interval < 0:
			v.errorf(p, "span and interval must be positive, got %s", r)
		case r.Interval > r.Span:
			v.errorf(p, "interval must not be longer than the span, got %s", r)
		case i > 0 && r.Span <= rules[i-1].Span:
			v.errorf(p, "spans must increase from rule to rule: %s does not reach past the previous rule (%s)", r, rules[i-1])
		case i > 0 && r.Interval < rules[i-1].Interval:
			v.errorf(p, "must not keep more often than the previous rule (%s): older snapshots are thinned, not kept more densely; got %s", rules[i-1], r)
		}
	}
}

func (v *validator) transport(c *Config) {
	t := c.Transport
	oneOf(v, "transport.compression", t.Compression, compressions)
	if t.ZstdLevel < 1 || t.ZstdLevel > 22 {
		v.errorf("transport.zstd_level", "must be between 1 and 22, got %d", t.ZstdLevel)
	}
	if t.BandwidthLimit < 0 {
		v.errorf("transport.bandwidth_limit", "must not be negative (0 = unlimited), got %d", t.BandwidthLimit)
	}
	if t.StallTimeout < Duration(time.Second) {
		v.errorf("transport.stall_timeout", "must be at least 1s, got %s", t.StallTimeout)
	}
	files := []struct{ key, val string }{
		{"cert", t.TLS.Cert}, {"key", t.TLS.Key}, {"peer_cert", t.TLS.PeerCert},
	}
	for _, f := range files {
		p := "transport.tls." + f.key
		switch {
		case t.TLS.InsecurePlaintext && f.val != "":
			v.crossf(p, "transport.tls.insecure_plaintext", "must be empty when transport.tls.insecure_plaintext is true")
		case t.TLS.InsecurePlaintext:
		case f.val == "":
			v.crossf(p, "transport.tls.insecure_plaintext", "is required (a PEM file path) unless transport.tls.insecure_plaintext is true, which is for tests only")
		default:
			v.check(p, checkAbsPath(f.val))
		}
	}
	if !t.TLS.InsecurePlaintext && t.TLS.Cert != "" && t.TLS.Cert == t.TLS.PeerCert {
		v.errorf("transport.tls.peer_cert", "must differ from transport.tls.cert: it is the peer's certificate, pinned")
	}
}

func (v *validator) heartbeat(c *Config) {
	h := c.Heartbeat
	if h.Interval < Duration(10*time.Millisecond) {
		v.errorf("heartbeat.interval", "must be at least 10ms, got %s", h.Interval)
	}
	if h.LossThreshold < 3*h.Interval {
		v.crossf("heartbeat.loss_threshold", "heartbeat.interval",
			"must be at least 3 x heartbeat.interval (%s), got %s", 3*h.Interval, h.LossThreshold)
	}
	switch {
	case h.FenceMargin <= 0:
		v.errorf("heartbeat.fence_margin", "must be positive, got %s", h.FenceMargin)
	case h.FenceMargin >= h.LossThreshold:
		v.crossf("heartbeat.fence_margin", "heartbeat.loss_threshold",
			"must be less than heartbeat.loss_threshold (%s), got %s", h.LossThreshold, h.FenceMargin)
	}
}

func (v *validator) tiebreaker(c *Config) {
	t := c.Tiebreaker
	before := len(v.errs)
	for i, tg := range t.Targets {
		p := fmt.Sprintf("tiebreaker.targets[%d]", i)
		oneOf(v, p+".method", tg.Method, tiebreakMethods)
		switch {
		case tg.Address == "":
			v.errorf(p+".address", "is required")
		case tg.Method == TiebreakTCP:
			v.check(p+".address", checkHostPort(tg.Address, true))
		case tg.Method == TiebreakICMP:
			if _, _, err := net.SplitHostPort(tg.Address); err == nil {
				v.errorf(p+".address", "must be a host without a port for method icmp (use method tcp for host:port), got %q", tg.Address)
			} else {
				v.check(p+".address", checkHost(tg.Address))
			}
		}
	}
	// A gateway can only tell the isolated node apart when the nodes also
	// heartbeat over the network the gateway is on: with the heartbeat link
	// as the only path, a pulled link cable would let both nodes serve.
	// (Only for targets that are otherwise right: one fix at a time.)
	if len(t.Targets) > 0 && len(v.errs) == before && !v.badUnder("tiebreaker") &&
		c.Witness.Etcd == nil && (c.Node.ListenPublic == "" || c.Peer.PublicAddress == "") {
		v.crossf("tiebreaker.targets", "node.listen_public",
			"a tiebreaker needs heartbeats on the public network too: set node.listen_public and peer.public_address (or configure a witness)")
	}
	switch {
	case t.Timeout <= 0:
		v.errorf("tiebreaker.timeout", "must be positive, got %s", t.Timeout)
	case t.Timeout >= c.Heartbeat.LossThreshold:
		v.crossf("tiebreaker.timeout", "heartbeat.loss_threshold",
			"must be less than heartbeat.loss_threshold (%s), got %s", c.Heartbeat.LossThreshold, t.Timeout)
	}
}

func (v *validator) witness(c *Config) {
	e := c.Witness.Etcd
	if e == nil {
		return
	}
	if len(e.Endpoints) == 0 {
		v.errorf("witness.etcd.endpoints", "at least one endpoint is required (e.g. https://198.18.0.10:2379)")
	}
	for i, ep := range e.Endpoints {
		v.check(fmt.Sprintf("witness.etcd.endpoints[%d]", i), checkEndpoint(ep))
	}
	if !strings.HasPrefix(e.Prefix, "/") {
		v.errorf("witness.etcd.prefix", "must start with '/', got %q", e.Prefix)
	}
	if e.LeaseTTL < Duration(time.Second) || e.LeaseTTL%Duration(time.Second) != 0 {
		v.errorf("witness.etcd.lease_ttl", "must be a whole number of seconds, at least 1s (etcd leases count in seconds), got %s", e.LeaseTTL)
	}
}

// checkEndpoint accepts etcd's forms: http(s)://host:port or host:port.
func checkEndpoint(s string) error {
	if !strings.Contains(s, "://") {
		return checkHostPort(s, true)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || (u.Path != "" && u.Path != "/") ||
		u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("must be http://host:port, https://host:port or host:port, got %q", s)
	}
	if err := checkHostPort(u.Host, true); err != nil {
		return fmt.Errorf("must be http://host:port, https://host:port or host:port, got %q", s)
	}
	return nil
}

func (v *validator) watchdog(c *Config) {
	w := c.Watchdog
	if w.Device != "" {
		v.check("watchdog.device", checkAbsPath(w.Device))
	}
	if w.Interval <= 0 {
		v.errorf("watchdog.interval", "must be positive, got %s", w.Interval)
	}
}

func (v *validator) vip(c *Config) {
	x := c.VIP
	if x.Address == "" {
		if x.PublicDown != PublicDownAuto && x.PublicDown != "" {
			v.errorf("vip.public_down", "is set but vip.address is empty; it needs a VIP")
		}
		if x.Interface != "" {
			v.errorf("vip.interface", "is set but vip.address is empty; set both or neither")
		}
		return
	}
	oneOf(v, "vip.public_down", x.PublicDown, publicDownModes)
	p, err := netip.ParsePrefix(x.Address)
	if err == nil && x.PublicDown == PublicDownRoute && !p.Addr().Is4() {
		v.errorf("vip.public_down", "route works with IPv4 VIPs only (the peer answers ARP for it); set handover or auto for %s", x.Address)
	}
	switch {
	case err != nil:
		v.errorf("vip.address", "must be an address with prefix length (CIDR) like 198.18.0.100/24, got %q", x.Address)
	case p.Addr().Is4() && p.Bits() < 31 && p.Masked().Addr() == p.Addr():
		v.errorf("vip.address", "is the network address of %s; use a host address in it", p.Masked())
	}
	if x.Interface == "" {
		v.errorf("vip.interface", "is required when vip.address is set (the interface that carries the VIP, e.g. eth0)")
	} else if len(x.Interface) > 15 || x.Interface == "." || x.Interface == ".." || strings.ContainsAny(x.Interface, "/ \t\n:") {
		v.errorf("vip.interface", "must be a network interface name (1 to 15 characters, no '/', ':' or spaces), got %q", x.Interface)
	}
}

// smbReserved are smb.conf section names with a special meaning.
var smbReserved = []string{"global", "homes", "printers", "print$", "ipc$"}

var smbNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

func (v *validator) shares(c *Config) {
	var roots []string
	for _, r := range c.Replication.Roots {
		if checkDataset(r.Source) == nil {
			roots = append(roots, r.Source)
		}
	}
	shareDataset := func(path, ds string) bool {
		if err := checkDataset(ds); err != nil {
			v.check(path, err)
			return false
		}
		if len(roots) > 0 && !slices.ContainsFunc(roots, func(r string) bool { return isWithin(ds, r) }) {
			v.errorf(path, "must be a replicated root or inside one (replication.roots sources: %s), got %q", strings.Join(roots, ", "), ds)
			return false
		}
		return true
	}

	nfsSeen := map[string]int{}
	for i, s := range c.Shares.NFS {
		p := fmt.Sprintf("shares.nfs[%d]", i)
		if shareDataset(p+".dataset", s.Dataset) {
			if j, dup := nfsSeen[s.Dataset]; dup {
				v.errorf(p+".dataset", "duplicate of shares.nfs[%d].dataset; put several client specs in one clients string", j)
			} else {
				nfsSeen[s.Dataset] = i
			}
		}
		if strings.TrimSpace(s.Clients) == "" || strings.ContainsAny(s.Clients, "()\"'\n") {
			v.errorf(p+".clients", "must be exports(5) client specs separated by spaces (\"*\" for everyone), without options or quotes, got %q", s.Clients)
		}
		if s.Options == "" || strings.ContainsAny(s.Options, "()\"' \t\n") {
			v.errorf(p+".options", "must be exports(5) options separated by commas, without spaces or parentheses, got %q", s.Options)
		}
	}

	smbSeen := map[string]int{}
	for i, s := range c.Shares.SMB {
		p := fmt.Sprintf("shares.smb[%d]", i)
		lower := strings.ToLower(s.Name)
		switch {
		case s.Name == "":
			v.errorf(p+".name", "is required")
		case !smbNameRE.MatchString(s.Name):
			v.errorf(p+".name", "must be 1 to 80 characters of A-Z, a-z, 0-9, '_' and '-', got %q", s.Name)
		case slices.Contains(smbReserved, lower):
			v.errorf(p+".name", "%q is a reserved smb.conf section name", s.Name)
		default:
			// smb share names are case-insensitive.
			if j, dup := smbSeen[lower]; dup {
				v.errorf(p+".name", "duplicate of shares.smb[%d].name (share names are case-insensitive)", j)
			} else {
				smbSeen[lower] = i
			}
		}
		shareDataset(p+".dataset", s.Dataset)
		keys := make([]string, 0, len(s.Options))
		for k := range s.Options {
			keys = append(keys, k)
		}
		slices.Sort(keys) // deterministic error order for a Go-built config
		for _, k := range keys {
			kp := mapKeyPath(p+".options", k)
			norm := strings.ToLower(strings.ReplaceAll(k, " ", ""))
			switch {
			case strings.TrimSpace(k) == "" || strings.ContainsAny(k, "[]=\n"):
				v.errorf(kp, "must be an smb.conf parameter name (no '[', ']', '=' or newlines)")
			case norm == "path" || norm == "directory":
				v.errorf(kp, "is set by zrepl-ha to the dataset's mountpoint; remove it")
			case strings.ContainsAny(s.Options[k], "\n\r"):
				v.errorf(kp, "must be a single line")
			}
		}
	}
}

// checkHostPort checks "host:port" with a numeric port. An empty host
// (":7701", every local address) is allowed only where hostRequired is false,
// i.e. for listen addresses.
func checkHostPort(s string, hostRequired bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("must be host:port (IPv6 as [addr]:port), got %q", s)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port must be a number in 1..65535, got %q", s)
	}
	if host == "" {
		if hostRequired {
			return fmt.Errorf("must name a host, got %q", s)
		}
		return nil
	}
	if err := checkHost(host); err != nil {
		return fmt.Errorf("must be host:port with an IP address or host name, got %q", s)
	}
	return nil
}

var hostLabelRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// checkHost accepts an IP address (IPv6 zones included) or a DNS host name.
func checkHost(h string) error {
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	bad := fmt.Errorf("must be an IP address or host name, got %q", h)
	if len(h) > 253 {
		return bad
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if !hostLabelRE.MatchString(l) {
			return bad
		}
	}
	// An all-numeric last label is a mistyped IP address, not a name.
	if _, err := strconv.Atoi(labels[len(labels)-1]); err == nil {
		return bad
	}
	return nil
}
