package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// connectTCP completes a TCP handshake with address (host:port) and closes
// the connection at once. Only a completed handshake counts: a refusal (RST)
// may come from a firewall on the path or on this host, not from the target.
func connectTCP(ctx context.Context, address string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		if derr := deadlineErr(ctx, err); derr != nil {
			return fmt.Errorf("no answer: %w: %w", derr, err)
		}
		return fmt.Errorf("connect: %w", err)
	}
	// The close error says nothing about reachability.
	c.Close()
	return nil
}

// deadlineErr returns ctx's error when err happened because time ran out,
// so that every timeout reads as context.DeadlineExceeded whichever fired
// first: ctx's timer, or the socket deadline derived from it.
func deadlineErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return context.DeadlineExceeded
	}
	return nil
}
