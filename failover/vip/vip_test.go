package vip

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestValidate(t *testing.T) {
	long := strings.Repeat("e", 16)
	for _, tc := range []struct {
		prefix, iface string
		want          string // substring of the error; "" means valid
	}{
		{"198.18.0.100/24", "eth0", ""},
		{"198.18.0.100/32", "eth0", ""},
		{"198.18.0.0/31", "eth0", ""}, // RFC 3021: both addresses are hosts
		{"198.18.0.1/31", "eth0", ""},
		{"2001:db8::100/64", "eth0", ""},
		{"2001:db8::/64", "eth0", ""}, // IPv6 has no network address
		{"198.18.0.100/24", "eth0.100", ""},
		{"198.18.0.100/24", strings.Repeat("e", 15), ""},
		{"", "eth0", "vip.address is not set"},
		{"198.18.0.0/24", "eth0", "network address"},
		{"198.18.0.255/24", "eth0", "broadcast address of its prefix"},
		{"255.255.255.255/32", "eth0", "broadcast address"},
		{"0.0.0.0/0", "eth0", "unspecified"},
		{"::/0", "eth0", "unspecified"},
		{"127.0.0.2/8", "eth0", "loopback"},
		{"::1/128", "eth0", "loopback"},
		{"224.0.0.5/32", "eth0", "multicast"},
		{"ff02::1/128", "eth0", "multicast"},
		{"169.254.1.1/16", "eth0", "link-local"},
		{"fe80::1/64", "eth0", "link-local"},
		{"::ffff:198.18.0.100/120", "eth0", "IPv4-mapped"},
		{"198.18.0.100/24", "", "vip.interface is not set"},
		{"198.18.0.100/24", long, "longer than 15 bytes"},
		{"198.18.0.100/24", "eth0:1", "address label"},
		{"198.18.0.100/24", "eth/0", "slash or white space"},
		{"198.18.0.100/24", "eth 0", "slash or white space"},
		{"198.18.0.100/24", "..", "not an interface name"},
	} {
		t.Run(tc.prefix+"_"+tc.iface, func(t *testing.T) {
			var p netip.Prefix
			if tc.prefix != "" {
				p = netip.MustParsePrefix(tc.prefix)
			}
			err := (&VIP{Prefix: p, Interface: tc.iface}).Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("want ErrInvalid containing %q, got %v", tc.want, err)
			}
		})
	}
}

// Up, Down and Held check the configuration before they touch the system
// (this test runs unprivileged).
func TestMethodsValidateFirst(t *testing.T) {
	v := &VIP{Prefix: netip.MustParsePrefix("198.18.0.0/24"), Interface: "eth0"}
	ctx := context.Background()
	if err := v.Up(ctx); !errors.Is(err, ErrInvalid) {
		t.Errorf("Up: %v", err)
	}
	if err := v.Down(ctx); !errors.Is(err, ErrInvalid) {
		t.Errorf("Down: %v", err)
	}
	if _, err := v.Held(ctx); !errors.Is(err, ErrInvalid) {
		t.Errorf("Held: %v", err)
	}
	v.Prefix = netip.MustParsePrefix("198.18.0.100/24")
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := v.Up(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("Up with a cancelled context: %v", err)
	}
}

func TestBroadcast(t *testing.T) {
	for in, want := range map[string]string{
		"198.18.0.100/24": "198.18.0.255",
		"198.18.1.7/23":   "198.18.1.255",
		"198.18.0.100/30": "198.18.0.103",
		"10.1.2.3/8":      "10.255.255.255",
		"198.18.0.100/16": "198.18.255.255",
	} {
		if got := broadcast(netip.MustParsePrefix(in)); got.String() != want {
			t.Errorf("broadcast(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestToAdd(t *testing.T) {
	for _, tc := range []struct {
		prefix, ipnet, brd string
		flags              int
	}{
		{"198.18.0.100/24", "198.18.0.100/24", "198.18.0.255", 0},
		{"198.18.0.100/30", "198.18.0.100/30", "198.18.0.103", 0},
		{"198.18.0.100/31", "198.18.0.100/31", "<nil>", 0},
		{"198.18.0.100/32", "198.18.0.100/32", "<nil>", 0},
		{"2001:db8::100/64", "2001:db8::100/64", "<nil>", unix.IFA_F_NODAD},
	} {
		a := toAdd(netip.MustParsePrefix(tc.prefix))
		if a.IPNet.String() != tc.ipnet || a.Broadcast.String() != tc.brd || a.Flags != tc.flags || a.Label != "" {
			t.Errorf("toAdd(%s) = %s brd %s flags %#x label %q; want %s brd %s flags %#x", tc.prefix, a.IPNet, a.Broadcast, a.Flags, a.Label, tc.ipnet, tc.brd, tc.flags)
		}
	}
}

func nlAddr(cidr string, flags int) netlink.Addr {
	p := netip.MustParsePrefix(cidr)
	return netlink.Addr{IPNet: ipNet(p), Flags: flags}
}

func TestFind(t *testing.T) {
	vip := netip.MustParsePrefix("198.18.0.100/24")
	addrs := []netlink.Addr{nlAddr("198.18.0.11/24", 0), nlAddr("198.18.0.100/24", unix.IFA_F_SECONDARY), nlAddr("198.18.1.100/24", 0)}
	got, err := find(addrs, vip)
	if err != nil || got != &addrs[1] {
		t.Fatalf("present: %v %v", got, err)
	}
	if got, err := find(addrs[:1], vip); got != nil || err != nil {
		t.Fatalf("absent: %v %v", got, err)
	}
	if got, err := find(nil, vip); got != nil || err != nil {
		t.Fatalf("empty: %v %v", got, err)
	}
	// The same address with another prefix length is not ours.
	_, err = find([]netlink.Addr{nlAddr("198.18.0.100/32", 0)}, vip)
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "198.18.0.100/32") {
		t.Fatalf("conflict: %v", err)
	}
	v6 := netip.MustParsePrefix("2001:db8::100/64")
	a6 := []netlink.Addr{nlAddr("fe80::1/64", 0), nlAddr("2001:db8::100/64", unix.IFA_F_NODAD)}
	if got, err := find(a6, v6); err != nil || got != &a6[1] {
		t.Fatalf("IPv6: %v %v", got, err)
	}
	// An IPv4 address reported in 16-byte form still matches.
	a := netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("198.18.0.100"), Mask: net.CIDRMask(120, 128)}}
	if got, err := find([]netlink.Addr{a}, vip); err != nil || got == nil {
		t.Fatalf("16-byte IPv4: %v %v", got, err)
	}
}

func TestDropsSecondaries(t *testing.T) {
	sec := unix.IFA_F_SECONDARY
	for _, tc := range []struct {
		name  string
		addrs []netlink.Addr
		vip   netlink.Addr
		want  string
	}{
		{"vip is secondary", []netlink.Addr{nlAddr("198.18.0.11/24", 0), nlAddr("198.18.0.100/24", sec)}, nlAddr("198.18.0.100/24", sec), ""},
		{"vip alone", []netlink.Addr{nlAddr("198.18.0.100/24", 0)}, nlAddr("198.18.0.100/24", 0), ""},
		{"vip primary with secondaries", []netlink.Addr{nlAddr("198.18.0.100/24", 0), nlAddr("198.18.0.5/24", sec), nlAddr("198.18.0.6/24", sec)},
			nlAddr("198.18.0.100/24", 0), "198.18.0.5/24 198.18.0.6/24"},
		{"other subnet's secondaries", []netlink.Addr{nlAddr("198.18.0.100/24", 0), nlAddr("198.18.1.1/24", 0), nlAddr("198.18.1.5/24", sec)},
			nlAddr("198.18.0.100/24", 0), ""},
		{"same network, other length", []netlink.Addr{nlAddr("198.18.0.100/24", 0), nlAddr("198.18.0.5/25", sec)}, nlAddr("198.18.0.100/24", 0), ""},
		{"IPv6 has no secondaries", []netlink.Addr{nlAddr("2001:db8::100/64", 0), nlAddr("2001:db8::5/64", sec)}, nlAddr("2001:db8::100/64", 0), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, p := range dropsSecondaries(tc.addrs, tc.vip) {
				got = append(got, p.String())
			}
			if strings.Join(got, " ") != tc.want {
				t.Fatalf("got %v, want %q", got, tc.want)
			}
		})
	}
}

func TestGARPPackets(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0x77, 0x11}
	ip := netip.MustParseAddr("198.18.77.100")
	pkts, err := garpPackets(mac, ip)
	if err != nil || len(pkts) != 2 {
		t.Fatalf("%v %v", pkts, err)
	}
	hdr := func(op byte) []byte { return []byte{0, 1, 8, 0, 6, 4, 0, op} } // Ethernet, IPv4, 6, 4, op
	ipb := []byte{198, 18, 77, 100}
	want := [][]byte{
		// request: who has VIP? tell VIP at mac; target MAC zero
		concat(hdr(1), mac, ipb, make([]byte, 6), ipb),
		// reply: VIP is at mac; target MAC = sender MAC (Linux's gratuitous-reply rule)
		concat(hdr(2), mac, ipb, mac, ipb),
	}
	for i, p := range pkts {
		b, err := p.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, want[i]) {
			t.Errorf("packet %d:\n got % x\nwant % x", i, b, want[i])
		}
		var back arp.Packet
		if err := back.UnmarshalBinary(b); err != nil || back.SenderIP != ip || back.TargetIP != ip {
			t.Errorf("packet %d does not round-trip: %+v %v", i, back, err)
		}
	}
	if _, err := garpPackets(mac, netip.MustParseAddr("2001:db8::1")); err == nil {
		t.Error("an IPv6 address made an ARP packet")
	}
}

func TestUnsolicitedNA(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0x77, 0x11}
	ip := netip.MustParseAddr("2001:db8:77::100")
	b, err := ndp.MarshalMessage(unsolicitedNA(mac, ip))
	if err != nil {
		t.Fatal(err)
	}
	want := concat(
		[]byte{136, 0, 0, 0},  // type NA, code 0, checksum (the kernel fills it in)
		[]byte{0x20, 0, 0, 0}, // R=0 S=0 O=1
		ip.AsSlice(),
		[]byte{2, 1}, mac, // target link-layer address option, 8 bytes
	)
	if !bytes.Equal(b, want) {
		t.Fatalf("\n got % x\nwant % x", b, want)
	}
	m, err := ndp.ParseMessage(b)
	na, ok := m.(*ndp.NeighborAdvertisement)
	if err != nil || !ok || !na.Override || na.Solicited || na.Router || na.TargetAddress != ip {
		t.Fatalf("does not round-trip: %+v %v", m, err)
	}
}

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

type fakeRound struct {
	sends, perRound int
	failAt          int // fail on this send (1-based); 0 never
	cancelAt        int
	cancel          context.CancelFunc
	at              []time.Time
}

func (f *fakeRound) send() (int, error) {
	f.sends++
	f.at = append(f.at, time.Now())
	if f.sends == f.cancelAt {
		f.cancel()
	}
	if f.sends == f.failAt {
		return 0, errors.New("network is down")
	}
	return f.perRound, nil
}

func (f *fakeRound) Close() error { return nil }

func TestPace(t *testing.T) {
	ctx := context.Background()
	f := &fakeRound{perRound: 2}
	n, err := pace(ctx, f, 3, 5*time.Millisecond)
	if err != nil || n != 6 || f.sends != 3 {
		t.Fatalf("sent %d in %d rounds: %v", n, f.sends, err)
	}
	for i := 1; i < len(f.at); i++ {
		if d := f.at[i].Sub(f.at[i-1]); d < 5*time.Millisecond {
			t.Errorf("rounds %d and %d only %s apart", i-1, i, d)
		}
	}
	f = &fakeRound{perRound: 2, failAt: 2}
	if n, err := pace(ctx, f, 3, time.Millisecond); err == nil || n != 2 || f.sends != 2 {
		t.Fatalf("error stops the rounds: sent %d in %d rounds, %v", n, f.sends, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	f = &fakeRound{perRound: 2, cancelAt: 1, cancel: cancel}
	if n, err := pace(cctx, f, 3, time.Hour); !errors.Is(err, context.Canceled) || n != 2 || f.sends != 1 {
		t.Fatalf("cancel stops the wait: sent %d in %d rounds, %v", n, f.sends, err)
	}
}

func TestCarrierUp(t *testing.T) {
	for _, tc := range []struct {
		typ   uint16
		flags uint32
		want  bool
	}{
		{unix.RTM_NEWLINK, unix.IFF_UP | unix.IFF_LOWER_UP | unix.IFF_RUNNING, true},
		{unix.RTM_NEWLINK, unix.IFF_UP, false},       // no carrier
		{unix.RTM_NEWLINK, unix.IFF_LOWER_UP, false}, // set down
		{unix.RTM_DELLINK, unix.IFF_UP | unix.IFF_LOWER_UP, false},
	} {
		var u netlink.LinkUpdate
		u.Header.Type = tc.typ
		u.IfInfomsg.Flags = tc.flags
		if got := carrierUp(u); got != tc.want {
			t.Errorf("type %d flags %#x: carrier %v, want %v", tc.typ, tc.flags, got, tc.want)
		}
	}
}
