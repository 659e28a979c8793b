package witness

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/zrepl-ha/zrepl-ha/internal/config"
)

// Config configures a Witness.
type Config struct {
	// Node is this node's name, stored as the election value so that
	// Leader can say who holds it. Required.
	Node string
	// Endpoints are the etcd client addresses: host:port, http://host:port
	// or https://host:port. At least one.
	Endpoints []string
	// Prefix is the key prefix of this pair (config witness.etcd.prefix);
	// the election lives under Prefix + "leader/". Default "/zrepl-ha/".
	Prefix string
	// LeaseTTL is the session lease TTL; whole seconds, at least 1s.
	LeaseTTL time.Duration
	// RequestTimeout bounds every single request to etcd that is not a
	// wait (lease grant, the campaign's transaction, resign, leader
	// lookups, the endpoint check) and the connection backoff. Zero means
	// the smaller of 2s and LeaseTTL.
	RequestTimeout time.Duration
	// TLS is used for https endpoints; nil means the system roots and no
	// client certificate.
	TLS *tls.Config
	// Log receives state changes (won, lost, resigned) and retried errors.
	// Nil discards them.
	Log *slog.Logger

	clock clock // nil means CLOCK_BOOTTIME; tests set a fake
}

// FromConfig returns the witness configuration of a node, and false when the
// node has no witness configured (witness.etcd absent).
func FromConfig(c *config.Config) (Config, bool) {
	if c.Witness.Etcd == nil {
		return Config{}, false
	}
	e := c.Witness.Etcd
	return Config{
		Node:      c.Node.Name,
		Endpoints: append([]string(nil), e.Endpoints...),
		Prefix:    e.Prefix,
		LeaseTTL:  e.LeaseTTL.Duration(),
	}, true
}

// ErrBadConfig is wrapped by every error New returns for a configuration it
// refuses (as opposed to an etcd that cannot be reached).
var ErrBadConfig = errors.New("bad witness configuration")

func (c *Config) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = config.DefaultEtcdPrefix
	}
	if !strings.HasSuffix(c.Prefix, "/") {
		c.Prefix += "/"
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = min(2*time.Second, c.LeaseTTL)
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.clock == nil {
		c.clock = defaultClock()
	}
}

func (c *Config) validate() error {
	var errs []error
	if strings.TrimSpace(c.Node) == "" {
		errs = append(errs, errors.New("node name is empty"))
	}
	if len(c.Endpoints) == 0 {
		errs = append(errs, errors.New("no etcd endpoints"))
	}
	for _, ep := range c.Endpoints {
		if err := checkEndpoint(ep); err != nil {
			errs = append(errs, err)
		}
	}
	if !strings.HasPrefix(c.Prefix, "/") {
		errs = append(errs, fmt.Errorf("prefix %q must start with /", c.Prefix))
	}
	if c.LeaseTTL < time.Second || c.LeaseTTL%time.Second != 0 {
		errs = append(errs, fmt.Errorf("lease TTL %v must be whole seconds, at least 1s (etcd leases count in seconds)", c.LeaseTTL))
	}
	if len(errs) > 0 {
		return fmt.Errorf("witness: %w: %w", ErrBadConfig, errors.Join(errs...))
	}
	return nil
}

// checkEndpoint accepts host:port, http://host:port and https://host:port
// with a numeric port, and says which form it expected otherwise.
func checkEndpoint(ep string) error {
	const want = "want host:port, http://host:port or https://host:port"
	hostport := ep
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		if err != nil {
			return fmt.Errorf("etcd endpoint %q: %w (%s)", ep, err, want)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return fmt.Errorf("etcd endpoint %q: scheme %q not supported (%s)", ep, u.Scheme, want)
		}
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return fmt.Errorf("etcd endpoint %q: no path, query or user allowed (%s)", ep, want)
		}
		hostport = u.Host
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("etcd endpoint %q: %w (%s)", ep, err, want)
	}
	if host == "" {
		return fmt.Errorf("etcd endpoint %q: empty host (%s)", ep, want)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("etcd endpoint %q: port %q is not a number in 1..65535 (%s)", ep, port, want)
	}
	return nil
}
