package zfsrpc

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/transport"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

type fakeReceiver struct {
	tree      []zfsrepl.TreeDataset
	got       []byte
	confirmed []string
	recvErr   error
	treeErr   error
}

func (f *fakeReceiver) Tree(ctx context.Context, root string) ([]zfsrepl.TreeDataset, error) {
	return f.tree, f.treeErr
}
func (f *fakeReceiver) Receive(ctx context.Context, req zfsrepl.ReceiveRequest, r io.Reader) error {
	f.got, _ = io.ReadAll(r)
	return f.recvErr
}
func (f *fakeReceiver) Confirm(ctx context.Context, snaps, release []string) error {
	f.confirmed = append(f.confirmed, snaps...)
	return nil
}

func setup(t *testing.T, f *fakeReceiver) *Client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sec := transport.Security{Plaintext: true}
	ln, err := transport.Listen("127.0.0.1:0", "beta", "alpha", sec, nil)
	if err != nil {
		t.Fatal(err)
	}
	go ServeListener(ctx, ln, &Server{Receiver: f, Roots: []string{"backup/data"}}, 5*time.Second, nil)
	return &Client{Addr: ln.Addr().String(), Local: "alpha", Peer: "beta", Sec: sec, Stream: transport.StreamOptions{Mode: transport.ModeZstd, Level: 3}}
}

func TestTreeConfirmReceive(t *testing.T) {
	f := &fakeReceiver{tree: []zfsrepl.TreeDataset{{Name: "backup/data", Versions: []zfsrepl.Version{{Name: "backup/data@s1", Type: zfsrepl.Snapshot, GUID: 7}}}}}
	c := setup(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tree, err := c.Tree(ctx, "backup/data")
	if err != nil || len(tree) != 1 || tree[0].Versions[0].GUID != 7 {
		t.Fatalf("%+v %v", tree, err)
	}
	if err := c.Confirm(ctx, []string{"backup/data@s1"}, nil); err != nil || len(f.confirmed) != 1 {
		t.Fatal(err, f.confirmed)
	}
	data := bytes.Repeat([]byte("zfs stream "), 300000)
	if err := c.Receive(ctx, zfsrepl.ReceiveRequest{Dataset: "backup/data/a", Kind: zfsrepl.StepFull, To: "s1"}, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.got, data) {
		t.Fatalf("received %d bytes", len(f.got))
	}
}

func TestOutsideRootsRefused(t *testing.T) {
	f := &fakeReceiver{}
	c := setup(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, call := range []func() error{
		func() error { _, err := c.Tree(ctx, "rpool/ROOT"); return err },
		func() error { return c.Confirm(ctx, []string{"backup/data-evil@s"}, nil) },
		func() error {
			return c.Receive(ctx, zfsrepl.ReceiveRequest{Dataset: "rpool/ROOT", Kind: zfsrepl.StepFull}, strings.NewReader("x"))
		},
		func() error { _, err := c.Tree(ctx, "-F"); return err },
	} {
		if err := call(); err == nil || !strings.Contains(err.Error(), "on the peer") {
			t.Errorf("want a refusal from the peer, got %v", err)
		}
	}
	if f.got != nil {
		t.Fatal("a refused stream reached the receiver")
	}
}

func TestRemoteErrorsAreTyped(t *testing.T) {
	cases := []struct {
		err   error
		check func(error) bool
	}{
		{&zfsrepl.ResumableError{Dataset: "backup/data", Token: "1-tok"}, func(err error) bool {
			var re *zfsrepl.ResumableError
			return errors.As(err, &re) && re.Token == "1-tok" && re.Dataset == "backup/data"
		}},
		{&zfsrepl.Error{Cmd: "zfs receive", Stderr: "modified", Kind: zfsrepl.ErrDestinationModified}, func(err error) bool {
			return errors.Is(err, zfsrepl.ErrDestinationModified)
		}},
		{&zfsrepl.Error{Cmd: "zfs receive", Stderr: "no match", Kind: zfsrepl.ErrNoCommonBase}, func(err error) bool {
			return errors.Is(err, zfsrepl.ErrNoCommonBase)
		}},
	}
	for _, tc := range cases {
		f := &fakeReceiver{recvErr: tc.err}
		c := setup(t, f)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := c.Receive(ctx, zfsrepl.ReceiveRequest{Dataset: "backup/data", Kind: zfsrepl.StepIncremental, To: "s2"}, strings.NewReader("stream"))
		cancel()
		if !tc.check(err) {
			t.Errorf("%v came back as %v", tc.err, err)
		}
	}
}

// With the link address dead, the client reaches the peer on Fallback (the
// public path, when data_over_public allows it).
func TestFallbackAddress(t *testing.T) {
	f := &fakeReceiver{tree: []zfsrepl.TreeDataset{{Name: "backup/data"}}}
	c := setup(t, f)
	c.Addr, c.Fallback = "127.0.0.1:1", c.Addr
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Tree(ctx, "backup/data"); err != nil {
		t.Fatalf("tree through the fallback: %v", err)
	}
	c.Fallback = "127.0.0.1:2"
	_, err := c.Tree(ctx, "backup/data")
	if err == nil || !strings.Contains(err.Error(), "fallback 127.0.0.1:2") {
		t.Fatalf("both dead: %v", err)
	}
}

// Once the link failed to answer, calls go to the fallback first for
// linkRetry (a link without carrier costs the whole dial bound per call);
// when the fallback fails too the link is tried again at once.
func TestFallbackSticksForAWhile(t *testing.T) {
	f := &fakeReceiver{tree: []zfsrepl.TreeDataset{{Name: "backup/data"}}}
	c := setup(t, f)
	// A "link" that accepts and hangs up: each try is one accept.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	var tries atomic.Int32
	go func() {
		for {
			conn, err := dead.Accept()
			if err != nil {
				return
			}
			tries.Add(1)
			conn.Close()
		}
	}()
	c.Addr, c.Fallback = dead.Addr().String(), c.Addr
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; i < 3; i++ {
		if _, err := c.Tree(ctx, "backup/data"); err != nil {
			t.Fatalf("call %d through the fallback: %v", i, err)
		}
	}
	if n := tries.Load(); n != 1 {
		t.Fatalf("the dead link was tried %d times in three calls; want once", n)
	}
	// The public path fails as well: the link is tried again.
	c.Fallback = "127.0.0.1:1"
	if _, err := c.Tree(ctx, "backup/data"); err == nil {
		t.Fatal("a call with both paths dead succeeded")
	}
	if n := tries.Load(); n != 2 {
		t.Fatalf("with the fallback dead the link was tried %d times in all; want 2", n)
	}
}

// notReadyHandler refuses every request as a rejoining node does.
type notReadyHandler struct{}

func (notReadyHandler) Call(context.Context, []byte) ([]byte, error) {
	return nil, NotReady(errors.New("this node is rejoining"))
}

func (notReadyHandler) Stream(context.Context, []byte, io.Reader) transport.End {
	return transport.ErrorEnd(NotReady(errors.New("this node is rejoining")))
}

// A refusal marked NotReady reaches the client as zfsrepl.ErrPeerNotReady,
// for calls and for streams; other refusals do not.
func TestNotReadyCrossesTheLink(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sec := transport.Security{Plaintext: true}
	ln, err := transport.Listen("127.0.0.1:0", "beta", "alpha", sec, nil)
	if err != nil {
		t.Fatal(err)
	}
	go ServeListener(ctx, ln, notReadyHandler{}, 5*time.Second, nil)
	c := &Client{Addr: ln.Addr().String(), Local: "alpha", Peer: "beta", Sec: sec}
	if _, err := c.Tree(ctx, "backup/data"); !errors.Is(err, zfsrepl.ErrPeerNotReady) || !strings.Contains(err.Error(), "rejoining") {
		t.Fatalf("tree: %v", err)
	}
	if err := c.Receive(ctx, zfsrepl.ReceiveRequest{Dataset: "backup/data", Kind: zfsrepl.StepIncremental, To: "s2"}, strings.NewReader("stream")); !errors.Is(err, zfsrepl.ErrPeerNotReady) {
		t.Fatalf("receive: %v", err)
	}
	f := &fakeReceiver{treeErr: errors.New("zfs list failed")}
	other := setup(t, f)
	if _, err := other.Tree(ctx, "backup/data"); err == nil || errors.Is(err, zfsrepl.ErrPeerNotReady) {
		t.Fatalf("a zfs failure: %v", err)
	}
}
