package zfsrpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/zrepl-ha/zrepl-ha/transport"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

// request is the JSON body of every call and stream header.
type request struct {
	Method    string          `json:"method"` // tree, confirm, receive, drill.sample, drill.info
	Root      string          `json:"root,omitempty"`
	Snapshots []string        `json:"snapshots,omitempty"`
	Release   []string        `json:"release,omitempty"`
	Receive   *receiveRequest `json:"receive,omitempty"`
	// DrillSample is the request of drill.sample (drill.go).
	DrillSample *DrillSampleRequest `json:"drill_sample,omitempty"`
	Extra       map[string]string   `json:"extra,omitempty"` // room to grow without a version bump
}

type receiveRequest struct {
	Dataset string `json:"dataset"`
	Kind    int    `json:"kind"`
	To      string `json:"to"`
}

// End codes that map back to zfsrepl's typed errors on the sending side.
const (
	codeResumable   = "resumable"
	codeModified    = "modified"
	codeNoBase      = "no-common-base"
	codeNotFound    = "not-found"
	codeForbidden   = "forbidden"
	codeBadRequest  = "bad-request"
	codeZFS         = "zfs"
	codeNotReady    = "not-ready"
	callTimeout     = 2 * time.Minute
	treeResultLimit = 8 << 20
)

// Client is zfsrepl.Receiver over the network.
type Client struct {
	Addr string // the peer's transport address
	// Fallback, if set, is dialled when Addr does not answer: the public
	// path when the heartbeat link is down and replication.data_over_public
	// allows it.
	Fallback string
	Local    string // this node's name
	Peer     string // the peer's name, checked in the handshake
	Sec      transport.Security
	Stream   transport.StreamOptions
	Log      *slog.Logger

	mu sync.Mutex
	// linkDownUntil: until then calls dial Fallback first (the link did
	// not answer); zero while the link works.
	linkDownUntil time.Time
}

var _ zfsrepl.Receiver = (*Client)(nil)

// linkRetry is how long calls go straight to the fallback once the
// heartbeat link failed to answer: a link with no carrier but its route
// still up costs the whole dial bound (3 s) per call, and a cycle makes
// several calls.
const linkRetry = 10 * time.Second

func (c *Client) dial(ctx context.Context) (*transport.Conn, error) {
	if c.Fallback == "" {
		return transport.Dial(ctx, c.Addr, c.Local, c.Peer, transport.PurposeData, c.Sec, c.Log)
	}
	c.mu.Lock()
	skipLink := time.Now().Before(c.linkDownUntil)
	c.mu.Unlock()
	if skipLink {
		conn, err := transport.Dial(ctx, c.Fallback, c.Local, c.Peer, transport.PurposeData, c.Sec, c.Log)
		if err == nil || ctx.Err() != nil {
			return conn, err
		}
		// The public path failed too: the link may be back.
	}
	// Bound the first try so a dead link costs seconds, not the dial's
	// whole budget.
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	conn, err := transport.Dial(dctx, c.Addr, c.Local, c.Peer, transport.PurposeData, c.Sec, c.Log)
	cancel()
	if err == nil || ctx.Err() != nil {
		c.mu.Lock()
		back := err == nil && !c.linkDownUntil.IsZero()
		if err == nil {
			c.linkDownUntil = time.Time{}
		}
		c.mu.Unlock()
		if back && c.Log != nil {
			c.Log.Info("replication uses the heartbeat link again", "link", c.Addr)
		}
		return conn, err
	}
	conn, ferr := transport.Dial(ctx, c.Fallback, c.Local, c.Peer, transport.PurposeData, c.Sec, c.Log)
	if ferr != nil {
		return nil, fmt.Errorf("%w; fallback %s: %w", err, c.Fallback, ferr)
	}
	c.mu.Lock()
	first := c.linkDownUntil.IsZero()
	c.linkDownUntil = time.Now().Add(linkRetry)
	c.mu.Unlock()
	if first && c.Log != nil {
		c.Log.Warn("replication uses the public path: the heartbeat link does not answer", "link", c.Addr, "public", c.Fallback, "err", err)
	}
	return conn, nil
}

func (c *Client) call(ctx context.Context, req request) ([]byte, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	resp, err := conn.Call(ctx, body, callTimeout)
	return resp, fromEnd(err, "")
}

// Tree implements zfsrepl.Receiver.
func (c *Client) Tree(ctx context.Context, root string) ([]zfsrepl.TreeDataset, error) {
	resp, err := c.call(ctx, request{Method: "tree", Root: root})
	if err != nil {
		return nil, err
	}
	var tree []zfsrepl.TreeDataset
	if err := json.Unmarshal(resp, &tree); err != nil {
		return nil, fmt.Errorf("zfsrpc: tree from %s: %w", c.Peer, err)
	}
	return tree, nil
}

// Confirm implements zfsrepl.Receiver.
func (c *Client) Confirm(ctx context.Context, snapshots, release []string) error {
	_, err := c.call(ctx, request{Method: "confirm", Snapshots: snapshots, Release: release})
	return err
}

// Receive implements zfsrepl.Receiver: the stream goes compressed over a
// data connection; the receiver's verdict comes back in its End.
func (c *Client) Receive(ctx context.Context, req zfsrepl.ReceiveRequest, stream io.Reader) error {
	body, err := json.Marshal(request{Method: "receive", Receive: &receiveRequest{Dataset: req.Dataset, Kind: int(req.Kind), To: req.To}})
	if err != nil {
		return err
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.SendStream(ctx, body, stream, c.Stream)
	return fromEnd(err, req.Dataset)
}

// fromEnd maps the peer's End back to zfsrepl's typed errors, so the engine
// treats a remote conflict or cut exactly like a local one.
func fromEnd(err error, dataset string) error {
	var pe *transport.PeerError
	if !errors.As(err, &pe) {
		return err
	}
	remote := fmt.Errorf("on the peer: %s", pe.End.Message)
	switch pe.End.Code {
	case codeResumable:
		return &zfsrepl.ResumableError{Dataset: dataset, Token: pe.End.Token, Err: remote}
	case codeModified:
		return fmt.Errorf("%w: %w", zfsrepl.ErrDestinationModified, remote)
	case codeNoBase:
		return fmt.Errorf("%w: %w", zfsrepl.ErrNoCommonBase, remote)
	case codeNotFound:
		return fmt.Errorf("%w: %w", zfsrepl.ErrDatasetNotFound, remote)
	case codeNotReady:
		return fmt.Errorf("%w: %w", zfsrepl.ErrPeerNotReady, remote)
	}
	return remote
}

// NotReady marks a refusal that lasts only a while (the node is rejoining
// or starting): the client gets zfsrepl.ErrPeerNotReady.
func NotReady(err error) error { return &codedError{codeNotReady, err} }

// IsNotReady tells whether err is the peer's NotReady refusal, as a
// transport call (not through Client) returns it.
func IsNotReady(err error) bool {
	var pe *transport.PeerError
	return errors.As(err, &pe) && pe.End.Code == codeNotReady
}

// Server answers a Client with a local receiver.
type Server struct {
	Receiver zfsrepl.Receiver
	// Roots are the target roots the peer may touch; anything else is
	// refused.
	Roots []string
	// Drill answers `zrepl-ha drill` on the peer (drill.go); nil refuses
	// the drill calls.
	Drill DrillHandler
	Log   *slog.Logger
}

var _ transport.Handler = (*Server)(nil)

func (s *Server) allowed(name string) error {
	ds, _, _, _ := zfsrepl.SplitVersion(name)
	if err := zfsrepl.ValidateDataset(ds); err != nil {
		return err
	}
	for _, r := range s.Roots {
		if ds == r || strings.HasPrefix(ds, r+"/") {
			return nil
		}
	}
	return &codedError{codeForbidden, fmt.Errorf("%s is not under a replicated root of this node (%s)", name, strings.Join(s.Roots, ", "))}
}

type codedError struct {
	code string
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }
func (e *codedError) Code() string  { return e.code }

// Call implements transport.Handler.
func (s *Server) Call(ctx context.Context, body []byte) ([]byte, error) {
	var req request
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, &codedError{codeBadRequest, fmt.Errorf("malformed request: %w", err)}
	}
	switch req.Method {
	case "tree":
		if err := s.allowed(req.Root); err != nil {
			return nil, err
		}
		tree, err := s.Receiver.Tree(ctx, req.Root)
		if err != nil {
			return nil, coded(err)
		}
		out, err := json.Marshal(tree)
		if err == nil && len(out) > treeResultLimit {
			err = fmt.Errorf("tree of %s is %d bytes, over the %d-byte limit", req.Root, len(out), treeResultLimit)
		}
		return out, err
	case "confirm":
		for _, n := range append(append([]string(nil), req.Snapshots...), req.Release...) {
			if err := s.allowed(n); err != nil {
				return nil, err
			}
		}
		return []byte("{}"), coded(s.Receiver.Confirm(ctx, req.Snapshots, req.Release))
	}
	if out, ok, err := s.drillCall(ctx, req); ok {
		return out, err
	}
	return nil, &codedError{codeBadRequest, fmt.Errorf("unknown method %q", req.Method)}
}

// Stream implements transport.Handler.
func (s *Server) Stream(ctx context.Context, body []byte, r io.Reader) transport.End {
	var req request
	if err := json.Unmarshal(body, &req); err != nil || req.Method != "receive" || req.Receive == nil {
		return transport.ErrorEnd(&codedError{codeBadRequest, fmt.Errorf("malformed stream header")})
	}
	rr := req.Receive
	if err := s.allowed(rr.Dataset); err != nil {
		return transport.ErrorEnd(err)
	}
	err := s.Receiver.Receive(ctx, zfsrepl.ReceiveRequest{Dataset: rr.Dataset, Kind: zfsrepl.StepKind(rr.Kind), To: rr.To}, r)
	if err == nil {
		return transport.End{Status: transport.EndOK}
	}
	var re *zfsrepl.ResumableError
	if errors.As(err, &re) && len(re.Token) <= transport.MaxTokenLen {
		return transport.End{Status: transport.EndResumable, Code: codeResumable, Message: transport.ClampText(err.Error(), transport.MaxMessageLen), Token: re.Token}
	}
	return transport.ErrorEnd(coded(err))
}

func coded(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, zfsrepl.ErrDestinationModified):
		return &codedError{codeModified, err}
	case errors.Is(err, zfsrepl.ErrNoCommonBase):
		return &codedError{codeNoBase, err}
	case errors.Is(err, zfsrepl.ErrDatasetNotFound):
		return &codedError{codeNotFound, err}
	}
	return &codedError{codeZFS, err}
}

// ServeListener accepts connections and serves each on its own goroutine
// until ctx ends.
func ServeListener(ctx context.Context, ln *transport.Listener, h transport.Handler, stall time.Duration, log *slog.Logger) error {
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go func() {
			if err := transport.Serve(ctx, c, h, stall); err != nil && log != nil {
				log.Warn("zfsrpc: request failed", "peer", c.Peer, "err", err)
			}
		}()
	}
}
