//go:build platform

package vip

import (
	"context"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
)

// The VIP routed through the peer, in miniature (route.go): server 1 holds
// the VIP and serves; its port on the client's bridge goes down (the
// cable out). Server 1 routes its replies via server 2 over a veth "link"
// between them, server 2 answers ARP for the VIP and forwards: the client
// reaches server 1 through server 2's MAC. Then the cable is back: server
// 2 stops, server 1 stops and announces, the client goes back to server
// 1's MAC. Nothing is left behind on either server.
func TestPlatformVIPRoutedThroughPeer(t *testing.T) {
	t.Parallel()
	l := newLAN(t, false, "198.18.78.1/24")
	s1, s2 := l.server(1, mac1, "198.18.78.11/24"), l.server(2, mac2, "198.18.78.12/24")
	// The heartbeat link: a veth pair between the servers.
	sh(t, "ip", "-n", s1, "link", "add", "link0", "type", "veth", "peer", "name", "link0", "netns", s2)
	sh(t, "ip", "-n", s1, "addr", "add", "198.18.79.1/24", "dev", "link0")
	sh(t, "ip", "-n", s2, "addr", "add", "198.18.79.2/24", "dev", "link0")
	sh(t, "ip", "-n", s1, "link", "set", "link0", "up")
	sh(t, "ip", "-n", s2, "link", "set", "link0", "up")
	for _, k := range []string{"all", "default", "br0"} {
		sysctl(t, l.client, "net.ipv4.conf."+k+".arp_accept", "0")
	}
	// Strict reverse-path filtering everywhere: the routed path must pass
	// it (Debian's default is loose).
	for _, ns := range []string{s1, s2} {
		for _, k := range []string{"all", "eth0", "link0"} {
			sysctl(t, ns, "net.ipv4.conf."+k+".rp_filter", "1")
		}
	}
	serve(t, s1, "server1")
	serve(t, s2, "server2")
	p := netip.MustParsePrefix("198.18.78.100/24")
	ip := p.Addr()
	v1 := &VIP{Prefix: p, Interface: "eth0"}
	v2 := &VIP{Prefix: p, Interface: "eth0"}
	gw1, gw2 := netip.MustParseAddr("198.18.79.2"), netip.MustParseAddr("198.18.79.1")

	call(t, s1, v1.Up)
	l.mustReach(ip, "server1") // the client resolves the VIP: an entry to move
	l.waitNeigh(ip, mac1)

	// The cable out: server 1's port on the bridge goes down.
	sh(t, "ip", "-n", l.client, "link", "set", "p1", "down")
	l.mustNotReach(ip)
	call(t, s1, func(ctx context.Context) error { return v1.RouteViaPeer(ctx, gw1) })
	call(t, s1, func(ctx context.Context) error { return v1.RouteViaPeer(ctx, gw1) }) // again: still one rule
	if n := strings.Count(sh(t, "ip", "-n", s1, "-4", "rule", "show"), "lookup 7717"); n != 1 {
		t.Fatalf("server 1 has %d rules for table 7717, want 1", n)
	}
	call(t, s2, func(ctx context.Context) error { return v2.RouteForPeer(ctx, gw2) })
	l.waitNeigh(ip, mac2)
	l.mustReach(ip, "server1") // through server 2, answered by server 1
	if held(t, s2, v2) {
		t.Fatal("server 2 holds the VIP while it only routes it")
	}
	if got := strings.TrimSpace(sh(t, "ip", "-n", s2, "neigh", "show", "proxy")); !strings.Contains(got, ip.String()) {
		t.Fatalf("server 2 has no proxy entry for %s: %q", ip, got)
	}
	// A client that asks anew (its entry expired) is answered by server 2.
	sh(t, "ip", "-n", l.client, "neigh", "del", ip.String(), "dev", "br0")
	l.mustReach(ip, "server1")
	if got, _ := l.neigh(ip); got != mac2 {
		t.Fatalf("client resolved %s to %q while server 2 routes it, want %s", ip, got, mac2)
	}

	// The cable back: server 2 stops routing, server 1 serves on its own
	// port and announces.
	sh(t, "ip", "-n", l.client, "link", "set", "p1", "up")
	call(t, s2, func(ctx context.Context) error { return v2.UnrouteForPeer(ctx, gw2) })
	call(t, s1, v1.UnrouteViaPeer)
	call(t, s1, v1.Announce)
	l.waitNeigh(ip, mac1)
	l.mustReach(ip, "server1")

	if out := sh(t, "ip", "-n", s1, "-4", "rule", "show"); strings.Contains(out, "7717") {
		t.Errorf("server 1 keeps a rule for table 7717:\n%s", out)
	}
	if out := sh(t, "ip", "-n", s1, "-4", "route", "show", "table", "all"); strings.Contains(out, "table 7717") {
		t.Errorf("server 1 keeps routes in table 7717:\n%s", out)
	}
	if out := strings.TrimSpace(sh(t, "ip", "-n", s2, "neigh", "show", "proxy")); out != "" {
		t.Errorf("server 2 keeps proxy entries: %q", out)
	}
	if out := sh(t, "ip", "-n", s2, "-4", "route", "show"); strings.Contains(out, ip.String()) {
		t.Errorf("server 2 keeps a route to the VIP:\n%s", out)
	}
	for _, dev := range []string{"eth0", "link0"} {
		out, err := exec.Command("ip", "netns", "exec", s2, "cat", "/proc/sys/net/ipv4/conf/"+dev+"/forwarding").Output()
		if err != nil || strings.TrimSpace(string(out)) != "0" {
			t.Errorf("server 2's forwarding on %s is %q (%v) after UnrouteForPeer, want 0 as before", dev, out, err)
		}
	}
	// Up on a node that routed for its peer drops the proxy entry and the
	// route (a promotion while routing).
	call(t, s2, func(ctx context.Context) error { return v2.RouteForPeer(ctx, gw2) })
	call(t, s1, v1.Down)
	call(t, s2, v2.Up)
	l.waitNeigh(ip, mac2)
	l.mustReach(ip, "server2")
	if out := strings.TrimSpace(sh(t, "ip", "-n", s2, "neigh", "show", "proxy")); out != "" {
		t.Errorf("server 2 keeps its proxy entry after Up: %q", out)
	}
}

// Routing through the peer refuses an IPv6 VIP, and a gateway reached
// through the VIP's own interface, with errors that say what to fix.
func TestPlatformVIPRouteRefusals(t *testing.T) {
	t.Parallel()
	l := newLAN(t, false, "198.18.80.1/24")
	s1 := l.server(1, mac1, "198.18.80.11/24")
	v := &VIP{Prefix: netip.MustParsePrefix("198.18.80.100/24"), Interface: "eth0"}
	err := inNS(s1, func() error {
		return v.RouteForPeer(context.Background(), netip.MustParseAddr("198.18.80.12"))
	})
	if err == nil || !strings.Contains(err.Error(), "separate heartbeat link") {
		t.Errorf("gateway on the VIP's interface: %v", err)
	}
	v6 := &VIP{Prefix: netip.MustParsePrefix("2001:db8:80::100/64"), Interface: "eth0"}
	err = inNS(s1, func() error { return v6.RouteViaPeer(context.Background(), netip.MustParseAddr("198.18.80.12")) })
	if err == nil || !strings.Contains(err.Error(), "public_down: handover") {
		t.Errorf("IPv6 VIP: %v", err)
	}
}
