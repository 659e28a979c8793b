//go:build platform

package vip

// Runs inside the lab VM (go run ./fixtures/lab/cmd/lab gotest -pkgs
// ./failover/vip ...). Each test builds its own link out of network
// namespaces: a client namespace whose bridge br0 is the client's NIC, and
// one or two server namespaces, each with an eth0 that is a veth port of
// that bridge. VIP methods run in a server namespace on a goroutine locked
// to a thread that joined it (inNS), as the daemon's thread would be in its
// own namespace. All addresses are in 198.18.0.0/15 and 2001:db8::/32 inside
// those namespaces, with no route out; every wait is bounded.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/vishvananda/netns"
)

const port = 7788

var (
	mac1  = "02:00:00:00:77:11"
	mac2  = "02:00:00:00:77:12"
	wrong = "02:00:00:00:77:ee" // a stale entry for the VIP, pointing nowhere
)

func sh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func sysctl(t *testing.T, ns, key, val string) {
	t.Helper()
	sh(t, "ip", "netns", "exec", ns, "sysctl", "-q", "-w", key+"="+val)
}

// inNS runs f on a thread that joined namespace ns. The thread is never
// unlocked, so it exits with the goroutine and nothing else ever runs there.
func inNS(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(ns)
		if err != nil {
			errc <- fmt.Errorf("open namespace %s: %w", ns, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("join namespace %s: %w", ns, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

func newNS(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 3)
	rand.Read(b)
	ns := prefix + hex.EncodeToString(b)
	sh(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	sh(t, "ip", "-n", ns, "link", "set", "lo", "up")
	return ns
}

// lan is a client namespace with bridge br0 and server namespaces attached
// to it.
type lan struct {
	t      *testing.T
	client string
	six    bool
}

func newLAN(t *testing.T, six bool, clientAddr string) *lan {
	l := &lan{t: t, client: newNS(t, "vc"), six: six}
	sh(t, "ip", "-n", l.client, "link", "add", "br0", "type", "bridge")
	sh(t, "ip", "-n", l.client, "link", "set", "br0", "up")
	l.addAddr(l.client, clientAddr, "br0")
	return l
}

func (l *lan) addAddr(ns, cidr, dev string) {
	args := []string{"ip", "-n", ns, "addr", "add", cidr, "dev", dev}
	if l.six {
		args = append(args, "nodad")
	}
	sh(l.t, args...)
}

// server adds a server namespace: eth0 with the given MAC and address, its
// veth peer a port of the client's bridge.
func (l *lan) server(n int, mac, cidr string) string {
	ns := newNS(l.t, "vs")
	p := fmt.Sprintf("p%d", n)
	sh(l.t, "ip", "-n", ns, "link", "add", "eth0", "address", mac, "type", "veth", "peer", "name", p, "netns", l.client)
	sh(l.t, "ip", "-n", l.client, "link", "set", p, "master", "br0")
	sh(l.t, "ip", "-n", l.client, "link", "set", p, "up")
	sh(l.t, "ip", "-n", ns, "link", "set", "eth0", "up")
	l.addAddr(ns, cidr, "eth0")
	return ns
}

func (l *lan) fam() string {
	if l.six {
		return "-6"
	}
	return "-4"
}

// neigh returns the client's neighbour entry for ip: MAC and state ("" if
// there is none).
func (l *lan) neigh(ip netip.Addr) (string, string) {
	out := sh(l.t, "ip", "-n", l.client, "-j", l.fam(), "neigh", "show", "to", ip.String(), "dev", "br0")
	var ents []struct {
		Dst    string   `json:"dst"`
		LLAddr string   `json:"lladdr"`
		State  []string `json:"state"`
	}
	if err := json.Unmarshal([]byte(out), &ents); err != nil {
		l.t.Fatalf("ip neigh: %v: %s", err, out)
	}
	for _, e := range ents {
		if e.Dst == ip.String() {
			return e.LLAddr, strings.Join(e.State, ",")
		}
	}
	return "", ""
}

// setNeigh plants a stale entry for ip in the client's table, as a client
// that talked to the VIP's previous holder would have.
func (l *lan) setNeigh(ip netip.Addr, mac string) {
	sh(l.t, "ip", "-n", l.client, l.fam(), "neigh", "replace", ip.String(), "lladdr", mac, "dev", "br0", "nud", "stale")
}

// waitNeigh waits (bounded) until the client's entry for ip has mac.
func (l *lan) waitNeigh(ip netip.Addr, mac string) string {
	l.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, state := l.neigh(ip)
		if got == mac {
			return state
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("client's neighbour entry for %s is %q (%s) after 5s, want %s", ip, got, state, mac)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serve listens on the port in namespace ns and answers every connection
// with name.
func serve(t *testing.T, ns, name string) {
	var ln net.Listener
	if err := inNS(ns, func() (err error) { ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port)); return err }); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(name))
			c.Close()
		}
	}()
}

// dial connects from the client namespace to the VIP and returns the name
// of the server that answered.
func (l *lan) dial(ip netip.Addr, timeout time.Duration) (string, error) {
	var got string
	err := inNS(l.client, func() error {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(ip, port).String(), timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		b, err := io.ReadAll(c)
		got = string(b)
		return err
	})
	return got, err
}

func (l *lan) mustReach(ip netip.Addr, want string) {
	l.t.Helper()
	got, err := l.dial(ip, 5*time.Second)
	if err != nil || got != want {
		l.t.Fatalf("client to %s: answered by %q, %v; want %s", ip, got, err, want)
	}
}

func (l *lan) mustNotReach(ip netip.Addr) {
	l.t.Helper()
	if got, err := l.dial(ip, 1500*time.Millisecond); err == nil {
		l.t.Fatalf("client reached %s (answered by %s) after Down", ip, got)
	}
}

// ifAddr is one address of `ip -j addr show`.
type ifAddr struct {
	Family    string `json:"family"`
	Local     string `json:"local"`
	PrefixLen int    `json:"prefixlen"`
	Broadcast string `json:"broadcast"`
	Secondary bool   `json:"secondary"`
	Tentative bool   `json:"tentative"`
	Scope     string `json:"scope"`
}

func addrsOf(t *testing.T, ns, dev string) []ifAddr {
	out := sh(t, "ip", "-n", ns, "-j", "addr", "show", "dev", dev)
	var links []struct {
		AddrInfo []ifAddr `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip addr: %v: %s", err, out)
	}
	var addrs []ifAddr // without the kernel's own link-local IPv6 addresses
	for _, a := range links[0].AddrInfo {
		if a.Scope != "link" {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// holds counts the entries for ip on ns's dev and checks the other address
// is still there.
func holds(t *testing.T, ns, dev string, ip netip.Addr, other string) []ifAddr {
	t.Helper()
	var vip []ifAddr
	sawOther := false
	for _, a := range addrsOf(t, ns, dev) {
		if a.Local == ip.String() {
			vip = append(vip, a)
		}
		if fmt.Sprintf("%s/%d", a.Local, a.PrefixLen) == other {
			sawOther = true
		}
	}
	if !sawOther {
		t.Fatalf("%s's own address %s is gone from %s", ns, other, dev)
	}
	return vip
}

func call(t *testing.T, ns string, f func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := inNS(ns, func() error { return f(ctx) }); err != nil {
		t.Fatal(err)
	}
}

func held(t *testing.T, ns string, v *VIP) bool {
	t.Helper()
	var h bool
	call(t, ns, func(ctx context.Context) (err error) { h, err = v.Held(ctx); return err })
	return h
}

type family struct {
	six                        bool
	client, srv1, srv2, prefix string
}

// failover is the failover in miniature, for either family:
//  1. the VIP's address put on server 1 by hand does not move the client's
//     stale entry; Up on top of it (the "already there" path) announces, and
//     the entry moves to server 1's MAC without the client asking (STALE, not
//     REACHABLE: the client sent nothing);
//  2. the client's TCP connection to the VIP reaches server 1;
//  3. Up twice is one address, with the broadcast the kernel would give it,
//     and the server's own address untouched;
//  4. Down twice on server 1; the client no longer reaches it;
//  5. Up on server 2 (the "add" path) moves the client's entry to server 2's
//     MAC and its connections to server 2.
func failover(t *testing.T, f family) {
	l := newLAN(t, f.six, f.client)
	s1, s2 := l.server(1, mac1, f.srv1), l.server(2, mac2, f.srv2)
	if !f.six {
		// Linux's default: update existing entries from gratuitous ARP,
		// create none.
		for _, k := range []string{"all", "default", "br0"} {
			sysctl(t, l.client, "net.ipv4.conf."+k+".arp_accept", "0")
		}
	}
	serve(t, s1, "server1")
	serve(t, s2, "server2")
	p := netip.MustParsePrefix(f.prefix)
	ip := p.Addr()
	v := &VIP{Prefix: p, Interface: "eth0"}

	// 1
	l.setNeigh(ip, wrong)
	sh(t, "ip", "-n", s1, "addr", "add", p.String(), "dev", "eth0") // IPv6: with duplicate address detection
	time.Sleep(300 * time.Millisecond)
	if got, _ := l.neigh(ip); got != wrong {
		t.Fatalf("adding the address by hand changed the client's entry to %q: the test cannot tell our announcement from the kernel's", got)
	}
	start := time.Now()
	call(t, s1, v.Up)
	if took := time.Since(start); took < 2*announceInterval {
		t.Errorf("Up took %s; %d rounds %s apart take at least %s", took, announceRounds, announceInterval, 2*announceInterval)
	}
	state := l.waitNeigh(ip, mac1)
	if state != "STALE" {
		t.Errorf("client's entry after the announcement is %s, want STALE (updated, not resolved)", state)
	}
	t.Logf("client's entry for %s moved from %s to %s (%s) by the announcement", ip, wrong, mac1, state)

	// 2
	l.mustReach(ip, "server1")

	// 3
	call(t, s1, v.Up)
	vips := holds(t, s1, "eth0", ip, f.srv1)
	if len(vips) != 1 || vips[0].PrefixLen != p.Bits() {
		t.Fatalf("after Up twice server 1 has %+v for the VIP, want one /%d", vips, p.Bits())
	}
	if !held(t, s1, v) || held(t, s2, v) {
		t.Fatal("Held: want true on server 1, false on server 2")
	}

	// 4
	call(t, s1, v.Down)
	call(t, s1, v.Down)
	if vips := holds(t, s1, "eth0", ip, f.srv1); len(vips) != 0 || held(t, s1, v) {
		t.Fatalf("after Down twice server 1 still has %+v", vips)
	}
	l.mustNotReach(ip)

	// 5
	call(t, s2, v.Up)
	state = l.waitNeigh(ip, mac2)
	t.Logf("takeover: client's entry for %s moved to server 2's %s (%s)", ip, mac2, state)
	vips = holds(t, s2, "eth0", ip, f.srv2)
	if len(vips) != 1 {
		t.Fatalf("server 2 has %+v for the VIP", vips)
	}
	if !f.six && vips[0].Broadcast != broadcast(p).String() {
		t.Errorf("VIP's broadcast is %q, want %s", vips[0].Broadcast, broadcast(p))
	}
	if f.six && vips[0].Tentative {
		t.Error("IPv6 VIP is tentative: it was added with duplicate address detection")
	}
	l.mustReach(ip, "server2")
	call(t, s2, v.Up) // re-announce while serving: still fine
	l.mustReach(ip, "server2")
	call(t, s2, v.Down)
	l.mustNotReach(ip)
	call(t, s2, v.Down)
	if held(t, s2, v) {
		t.Fatal("server 2 holds the VIP after Down")
	}

	if f.six {
		return
	}
	// With arp_accept=1 a client with no entry at all learns the VIP's MAC
	// from the announcement alone.
	sysctl(t, l.client, "net.ipv4.conf.all.arp_accept", "1")
	sysctl(t, l.client, "net.ipv4.conf.br0.arp_accept", "1")
	exec.Command("ip", "-n", l.client, "neigh", "del", ip.String(), "dev", "br0").Run() // absent is fine; checked below
	if got, _ := l.neigh(ip); got != "" {
		t.Fatalf("client still has an entry for %s: %s", ip, got)
	}
	call(t, s2, v.Up)
	state = l.waitNeigh(ip, mac2)
	t.Logf("arp_accept=1: client created an entry for %s at %s (%s) from the announcement", ip, mac2, state)
	l.mustReach(ip, "server2")
	call(t, s2, v.Down)
}

func TestPlatformVIPFailoverIPv4(t *testing.T) {
	t.Parallel()
	failover(t, family{client: "198.18.77.1/24", srv1: "198.18.77.11/24", srv2: "198.18.77.12/24", prefix: "198.18.77.100/24"})
}

func TestPlatformVIPFailoverIPv6(t *testing.T) {
	t.Parallel()
	failover(t, family{six: true, client: "2001:db8:77::1/64", srv1: "2001:db8:77::11/64", srv2: "2001:db8:77::12/64", prefix: "2001:db8:77::100/64"})
}

// The frames on the wire: per round one ARP request "who has VIP? tell VIP"
// and one ARP reply "VIP is at MAC", both broadcast, from the holder's MAC;
// three rounds; nothing else claims the VIP.
func TestPlatformVIPGratuitousARPFrames(t *testing.T) {
	t.Parallel()
	l := newLAN(t, false, "198.18.79.1/24")
	s1 := l.server(1, mac1, "198.18.79.11/24")
	p := netip.MustParsePrefix("198.18.79.100/24")
	var c *arp.Client
	if err := inNS(l.client, func() error {
		ifi, err := net.InterfaceByName("br0")
		if err != nil {
			return err
		}
		c, err = arp.Dial(ifi)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	type frame struct {
		p   *arp.Packet
		eth *ethernet.Frame
		at  time.Time
	}
	frames := make(chan frame, 64)
	go func() {
		defer close(frames)
		for {
			pk, eth, err := c.Read()
			if err != nil {
				return
			}
			frames <- frame{pk, eth, time.Now()}
		}
	}()
	call(t, s1, (&VIP{Prefix: p, Interface: "eth0"}).Up)
	c.SetReadDeadline(time.Now().Add(time.Second))
	var req, rep int
	var first, last time.Time
	for f := range frames {
		if f.p.SenderIP != p.Addr() {
			continue
		}
		if f.p.SenderHardwareAddr.String() != mac1 || f.eth.Source.String() != mac1 ||
			f.eth.Destination.String() != ethernet.Broadcast.String() || f.p.TargetIP != p.Addr() {
			t.Errorf("unexpected frame: %+v in %+v", f.p, f.eth)
		}
		switch {
		case f.p.Operation == arp.OperationRequest && f.p.TargetHardwareAddr.String() == "00:00:00:00:00:00":
			req++
		case f.p.Operation == arp.OperationReply && f.p.TargetHardwareAddr.String() == mac1:
			rep++
		default:
			t.Errorf("unexpected frame: %+v", f.p)
		}
		if first.IsZero() {
			first = f.at
		}
		last = f.at
	}
	if req != announceRounds || rep != announceRounds {
		t.Fatalf("saw %d requests and %d replies for the VIP, want %d of each", req, rep, announceRounds)
	}
	t.Logf("%d gratuitous requests and %d replies over %s", req, rep, last.Sub(first).Round(time.Millisecond))
}

// Nothing but the VIP is ever touched, and misconfiguration is refused
// with an error that says what to fix.
func TestPlatformVIPNeverTouchesOtherAddresses(t *testing.T) {
	t.Parallel()
	ns := newNS(t, "vs")
	sh(t, "ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
	sh(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	sh(t, "ip", "-n", ns, "link", "set", "eth1", "up")
	p := netip.MustParsePrefix("198.18.78.100/24")
	v := &VIP{Prefix: p, Interface: "eth0"}
	in := func(f func(ctx context.Context) error) error {
		return inNS(ns, func() error { return f(context.Background()) })
	}

	// Missing and down interfaces.
	missing := &VIP{Prefix: p, Interface: "eth9"}
	if err := in(missing.Up); !errors.Is(err, ErrInterfaceNotFound) || !strings.Contains(err.Error(), "check vip.interface") {
		t.Errorf("Up on a missing interface: %v", err)
	}
	if err := in(missing.Down); !errors.Is(err, ErrInterfaceNotFound) {
		t.Errorf("Down on a missing interface: %v", err)
	}
	sh(t, "ip", "-n", ns, "link", "set", "eth1", "down")
	if err := in((&VIP{Prefix: p, Interface: "eth1"}).Up); !errors.Is(err, ErrInterfaceDown) || !strings.Contains(err.Error(), "ip link set eth1 up") {
		t.Errorf("Up on a down interface: %v", err)
	}
	if a := addrsOf(t, ns, "eth1"); len(a) != 0 {
		t.Errorf("Up on a down interface added %+v", a)
	}

	// The same address with another prefix length is not ours.
	sh(t, "ip", "-n", ns, "addr", "add", "198.18.78.100/32", "dev", "eth0")
	for name, f := range map[string]func(context.Context) error{
		"Up": v.Up, "Down": v.Down, "Held": func(ctx context.Context) error { _, err := v.Held(ctx); return err },
	} {
		if err := in(f); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "198.18.78.100/32") {
			t.Errorf("%s with 198.18.78.100/32 present: %v", name, err)
		}
	}
	if a := addrsOf(t, ns, "eth0"); len(a) != 1 || a[0].PrefixLen != 32 {
		t.Fatalf("the /32 was touched: %+v", a)
	}
	sh(t, "ip", "-n", ns, "addr", "del", "198.18.78.100/32", "dev", "eth0")

	// The VIP as the primary address of its subnet: removing it would take
	// the secondaries with it unless promote_secondaries is on.
	sysctl(t, ns, "net.ipv4.conf.all.promote_secondaries", "0")
	sysctl(t, ns, "net.ipv4.conf.eth0.promote_secondaries", "0")
	if err := in(v.Up); err != nil {
		t.Fatal(err)
	}
	sh(t, "ip", "-n", ns, "addr", "add", "198.18.78.5/24", "dev", "eth0")
	sh(t, "ip", "-n", ns, "addr", "add", "198.18.79.5/24", "dev", "eth0")
	err := in(v.Down)
	if !errors.Is(err, ErrWouldRemoveOthers) || !strings.Contains(err.Error(), "198.18.78.5/24") || !strings.Contains(err.Error(), "promote_secondaries=1") {
		t.Fatalf("Down with a secondary behind the VIP: %v", err)
	}
	if vips := holds(t, ns, "eth0", p.Addr(), "198.18.78.5/24"); len(vips) != 1 {
		t.Fatalf("refused Down changed the VIP: %+v", vips)
	}
	sysctl(t, ns, "net.ipv4.conf.eth0.promote_secondaries", "1")
	if err := in(v.Down); err != nil {
		t.Fatal(err)
	}
	if vips := holds(t, ns, "eth0", p.Addr(), "198.18.78.5/24"); len(vips) != 0 {
		t.Fatalf("VIP still there: %+v", vips)
	}
	holds(t, ns, "eth0", p.Addr(), "198.18.79.5/24")

	// The VIP as a secondary: Down removes only it, whatever the setting.
	sysctl(t, ns, "net.ipv4.conf.eth0.promote_secondaries", "0")
	if err := in(v.Up); err != nil {
		t.Fatal(err)
	}
	if vips := holds(t, ns, "eth0", p.Addr(), "198.18.78.5/24"); len(vips) != 1 || !vips[0].Secondary {
		t.Fatalf("VIP added behind 198.18.78.5/24 should be secondary: %+v", vips)
	}
	if err := in(v.Down); err != nil {
		t.Fatal(err)
	}
	if a := addrsOf(t, ns, "eth0"); len(a) != 2 {
		t.Fatalf("after Down eth0 has %+v, want 198.18.78.5/24 and 198.18.79.5/24", a)
	}
}
