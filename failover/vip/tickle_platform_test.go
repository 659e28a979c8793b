//go:build platform

package vip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// tickle is a VIP move under an open connection, for either family: a
// client holds an idle TCP connection to the VIP on server 1; server 1
// lists it; the VIP moves to server 2 (which has no such connection) and
// the client notices nothing by itself; server 2's tickle ACKs make the
// client's read fail with a reset at once.
func tickle(t *testing.T, f family) {
	l := newLAN(t, f.six, f.client)
	s1, s2 := l.server(1, mac1, f.srv1), l.server(2, mac2, f.srv2)
	p := netip.MustParsePrefix(f.prefix)
	v := &VIP{Prefix: p, Interface: "eth0"}
	call(t, s1, v.Up)

	// A server on server 1 that accepts and keeps its connections open
	// (listening on the wildcard address: dual-stack, as smbd does).
	var ln net.Listener
	if err := inNS(s1, func() (err error) { ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port)); return err }); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	var c net.Conn
	if err := inNS(l.client, func() (err error) {
		c, err = net.DialTimeout("tcp", netip.AddrPortFrom(p.Addr(), port).String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	client := netip.MustParseAddrPort(c.LocalAddr().String())

	var conns []Conn
	deadline := time.Now().Add(5 * time.Second)
	for len(conns) == 0 && time.Now().Before(deadline) {
		if err := inNS(s1, func() (err error) { conns, err = v.Connections(); return err }); err != nil {
			t.Fatal(err)
		}
		if len(conns) == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	want := Conn{Local: netip.AddrPortFrom(p.Addr(), port), Remote: netip.AddrPortFrom(client.Addr().Unmap(), client.Port())}
	if len(conns) != 1 || conns[0] != want {
		t.Fatalf("server 1's connections to the VIP: %v, want [%v]", conns, want)
	}

	// The VIP moves; the idle client notices nothing.
	call(t, s1, v.Down)
	call(t, s2, v.Up)
	readErr := func(wait time.Duration) error {
		c.SetReadDeadline(time.Now().Add(wait))
		_, err := c.Read(make([]byte, 1))
		return err
	}
	if err := readErr(1500 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("before the tickle, the client's read: %v; want a timeout (the client has not noticed)", err)
	}
	var sent int
	call(t, s2, func(ctx context.Context) (err error) { sent, err = v.Tickle(ctx, conns); return err })
	start := time.Now()
	if err := readErr(2 * time.Second); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("after %d tickle ACKs, the client's read: %v (after %s); want a reset", sent, err, time.Since(start).Round(time.Millisecond))
	}
	t.Logf("%d tickle ACKs; the client's connection was reset", sent)
	// Connections of another address are not this VIP's to tickle.
	other := Conn{Local: netip.AddrPortFrom(netip.MustParseAddr(map[bool]string{false: "192.0.2.1", true: "2001:db8::1"}[f.six]), 445), Remote: want.Remote}
	call(t, s2, func(ctx context.Context) (err error) { sent, err = v.Tickle(ctx, []Conn{other}); return err })
	if sent != 0 {
		t.Fatalf("tickled %d connections of another address", sent)
	}
}

func TestPlatformVIPTickleResetsMovedConnectionsIPv4(t *testing.T) {
	t.Parallel()
	tickle(t, family{client: "198.18.76.1/24", srv1: "198.18.76.11/24", srv2: "198.18.76.12/24", prefix: "198.18.76.100/24"})
}

func TestPlatformVIPTickleResetsMovedConnectionsIPv6(t *testing.T) {
	t.Parallel()
	tickle(t, family{six: true, client: "2001:db8:76::1/64", srv1: "2001:db8:76::11/64", srv2: "2001:db8:76::12/64", prefix: "2001:db8:76::100/64"})
}
