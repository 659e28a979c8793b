package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Request frame flags: a call expects one Response; a stream is followed by
// Data frames and an End from each side.
const (
	flagCall   uint8 = 0
	flagStream uint8 = 1
)

// streamID is the one stream a data connection carries in this version;
// the frame header has room for more.
const streamID = 1

// ErrStalled is a stream that moved no bytes for the stall timeout.
var ErrStalled = errors.New("transport: stream stalled")

// PeerError is a failure reported by the other side in its End frame: the
// zfs error on the receiver, the sender's failure, or a resumable cut (Token
// set).
type PeerError struct{ End End }

func (e *PeerError) Error() string {
	return fmt.Sprintf("peer reported %s (%s): %s", e.End.Status, e.End.Code, e.End.Message)
}

// StreamOptions shape one send stream.
type StreamOptions struct {
	Mode        Mode  // compression
	Level       int   // zstd level
	BytesPerSec int64 // 0 = unlimited; ignored when Limiter is set
	// Limiter, when set, is a bandwidth budget shared with other streams
	// (NewSharedLimiter).
	Limiter *rate.Limiter
	// Buffer absorbs zfs send bursts between the source and the link
	// (default 16 MiB): zfs send can keep reading the pool while the link
	// is briefly busy, as mbuffer would, without another process.
	Buffer int
	// Stall is how long the stream may move nothing before it is declared
	// stalled (default 30s).
	Stall time.Duration
	Stats *StreamStats
}

func (o StreamOptions) stall() time.Duration {
	if o.Stall <= 0 {
		return 30 * time.Second
	}
	return o.Stall
}

// Call sends one request and returns the response payload (a copy). An End
// frame instead of a Response comes back as *PeerError.
func (c *Conn) Call(ctx context.Context, req []byte, timeout time.Duration) ([]byte, error) {
	stop := closeOnDone(ctx, c)
	defer stop()
	c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	if err := c.Send(Frame{Type: FrameRequest, Flags: flagCall, Stream: streamID, Payload: req}); err != nil {
		return nil, ctxErr(ctx, err)
	}
	f, err := c.Recv()
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	switch f.Type {
	case FrameResponse:
		return append([]byte(nil), f.Payload...), nil
	case FrameEnd:
		var e End
		if err := e.UnmarshalBinary(f.Payload); err != nil {
			return nil, err
		}
		return nil, &PeerError{End: e}
	}
	return nil, fmt.Errorf("%w: expected Response, got %s", ErrUnexpectedFrame, f.Type)
}

// SendStream sends header, then src compressed in Data frames, then an End;
// it returns the receiver's End. A failure of src is sent to the receiver
// (so its zfs recv fails and keeps a resumable state) and returned.
func (c *Conn) SendStream(ctx context.Context, header []byte, src io.Reader, o StreamOptions) (End, error) {
	stop := closeOnDone(ctx, c)
	defer stop()
	stall := o.stall()
	c.SetWriteDeadline(time.Now().Add(stall))
	if err := c.Send(Frame{Type: FrameRequest, Flags: flagStream, Stream: streamID, Payload: header}); err != nil {
		return End{}, ctxErr(ctx, err)
	}
	// The receiver may answer early (its zfs recv failed): read concurrently.
	peerEnd := make(chan End, 1)
	readErr := make(chan error, 1)
	go func() {
		for {
			f, err := c.Recv()
			if err != nil {
				readErr <- err
				return
			}
			if f.Type == FrameEnd {
				var e End
				if err := e.UnmarshalBinary(f.Payload); err != nil {
					readErr <- err
					return
				}
				peerEnd <- e
				return
			}
		}
	}()
	fw := &frameWriter{c: c, stall: stall, done: peerEnd}
	var w io.Writer = fw
	switch {
	case o.Limiter != nil:
		w = NewSharedLimitedWriter(ctx, fw, o.Limiter)
	case o.BytesPerSec > 0:
		w = NewLimitedWriter(ctx, fw, o.BytesPerSec)
	}
	bufSize := o.Buffer
	if bufSize <= 0 {
		bufSize = 16 << 20
	}
	bw, br := NewBufferedPipe(bufSize)
	go func(in io.Reader) {
		_, err := io.CopyBuffer(bw, struct{ io.Reader }{in}, make([]byte, 1<<20))
		bw.CloseWithError(err)
	}(src)
	defer br.CloseWithError(io.ErrClosedPipe) // stops the filler if we give up early
	src = br
	cw, err := NewChunkWriter(w, o.Mode, o.Level, o.Stats)
	if err != nil {
		return End{}, err
	}
	_, copyErr := io.CopyBuffer(cw, struct{ io.Reader }{src}, make([]byte, 1<<20))
	if copyErr == nil {
		copyErr = cw.Close()
	}
	if fw.early != nil {
		return *fw.early, peerErr(*fw.early) // the receiver already gave up
	}
	end := End{Status: EndOK}
	if copyErr != nil {
		end = End{Status: EndError, Code: "send", Message: ClampText(copyErr.Error(), MaxMessageLen)}
	}
	payload, _ := end.MarshalBinary()
	c.SetWriteDeadline(time.Now().Add(stall))
	if err := c.Send(Frame{Type: FrameEnd, Stream: streamID, Payload: payload}); err != nil && copyErr == nil {
		copyErr = ctxErr(ctx, stalled(err))
	}
	// The receiver answers once zfs recv has committed; that can take a
	// while after the last byte, so the wait is bounded by the stall
	// timeout only once nothing else is happening.
	c.SetReadDeadline(time.Now().Add(stall + time.Minute))
	select {
	case e := <-peerEnd:
		// The receiver's verdict comes first: a write that failed because it
		// gave up (connection reset) is only a consequence.
		if err := peerErr(e); err != nil || copyErr == nil {
			return e, err
		}
		return e, copyErr
	case err := <-readErr:
		if copyErr != nil {
			return End{}, copyErr
		}
		return End{}, ctxErr(ctx, stalled(err))
	}
}

func peerErr(e End) error {
	if e.Status == EndOK {
		return nil
	}
	return &PeerError{End: e}
}

// frameWriter cuts a byte stream into Data frames, with a write deadline
// per frame so a peer that stops reading is detected as a stall.
type frameWriter struct {
	c     *Conn
	stall time.Duration
	done  chan End
	early *End
}

func (w *frameWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		select {
		case e := <-w.done:
			w.early = &e
			return n, &PeerError{End: e}
		default:
		}
		chunk := p
		if len(chunk) > DataMaxPayload {
			chunk = chunk[:DataMaxPayload]
		}
		w.c.SetWriteDeadline(time.Now().Add(w.stall))
		if err := w.c.Send(Frame{Type: FrameData, Stream: streamID, Payload: chunk}); err != nil {
			return n, stalled(err)
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

// Handler serves requests arriving on data connections.
type Handler interface {
	// Call answers a small request.
	Call(ctx context.Context, req []byte) ([]byte, error)
	// Stream consumes a send stream and says how it ended. r fails with
	// *PeerError when the sender failed, or ErrStalled.
	Stream(ctx context.Context, header []byte, r io.Reader) End
}

// ErrorEnd turns a handler error into an End; Code "error" unless the
// error says otherwise through a Code() method.
func ErrorEnd(err error) End {
	code := "error"
	var coded interface{ Code() string }
	if errors.As(err, &coded) {
		code = coded.Code()
	}
	return End{Status: EndError, Code: ClampText(code, MaxCodeLen), Message: ClampText(err.Error(), MaxMessageLen)}
}

// Serve answers the one request on c, then closes c.
func Serve(ctx context.Context, c *Conn, h Handler, stall time.Duration) error {
	defer c.Close()
	if stall <= 0 {
		stall = 30 * time.Second
	}
	stop := closeOnDone(ctx, c)
	defer stop()
	c.SetReadDeadline(time.Now().Add(stall))
	f, err := c.Recv()
	if err != nil {
		return err
	}
	if f.Type != FrameRequest {
		return fmt.Errorf("%w: expected Request, got %s", ErrUnexpectedFrame, f.Type)
	}
	req := append([]byte(nil), f.Payload...)
	if f.Flags == flagCall {
		resp, err := h.Call(ctx, req)
		c.SetWriteDeadline(time.Now().Add(stall))
		if err != nil {
			payload, _ := ErrorEnd(err).MarshalBinary()
			return c.Send(Frame{Type: FrameEnd, Stream: streamID, Payload: payload})
		}
		return c.Send(Frame{Type: FrameResponse, Stream: streamID, Payload: resp})
	}
	pr, pw := io.Pipe()
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		discard := false
		for {
			c.SetReadDeadline(time.Now().Add(stall))
			f, err := c.Recv()
			if err != nil {
				pw.CloseWithError(stalled(err))
				return
			}
			switch f.Type {
			case FrameData:
				if discard {
					continue
				}
				if _, err := pw.Write(f.Payload); err != nil {
					// The handler stopped reading (its zfs recv failed): keep
					// draining until the sender sees our End and stops, so
					// closing does not reset the connection under it.
					discard = true
				}
			case FrameEnd:
				var e End
				if err := e.UnmarshalBinary(f.Payload); err != nil {
					pw.CloseWithError(err)
				} else if e.Status != EndOK {
					pw.CloseWithError(&PeerError{End: e})
				} else {
					pw.Close()
				}
				return
			default:
				pw.CloseWithError(fmt.Errorf("%w: %s in a stream", ErrUnexpectedFrame, f.Type))
				return
			}
		}
	}()
	cr := NewChunkReader(pr, nil)
	end := h.Stream(ctx, req, cr)
	cr.Close()
	pr.CloseWithError(io.ErrClosedPipe)
	payload, _ := end.MarshalBinary()
	c.SetWriteDeadline(time.Now().Add(stall))
	err = c.Send(Frame{Type: FrameEnd, Stream: streamID, Payload: payload})
	<-readerDone // bounded by the stall deadline on every read
	return err
}

// stalled maps a deadline expiry to ErrStalled.
func stalled(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w: %v", ErrStalled, err)
	}
	return err
}

// closeOnDone closes c when ctx ends, unblocking any read or write.
func closeOnDone(ctx context.Context, c io.Closer) (stop func()) {
	var once sync.Once
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			c.Close()
		case <-done:
		}
	}()
	return func() { once.Do(func() { close(done) }) }
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}
