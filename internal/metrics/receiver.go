package metrics

import (
	"context"
	"io"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

// CountReceived wraps the receiver the peer's streams go to (the passive's
// zfsrpc.Server.Receiver) so the bytes each root receives are counted as
// zfs recv reads them. roots are the replicated roots; a dataset outside
// them (refused by the server anyway) counts under "other", which keeps the
// label set bounded.
func (m *Metrics) CountReceived(r zfsrepl.Receiver, roots []string) zfsrepl.Receiver {
	return &countingReceiver{Receiver: r, roots: roots, c: m.received}
}

type countingReceiver struct {
	zfsrepl.Receiver
	roots []string
	c     *prometheus.CounterVec
}

func (r *countingReceiver) rootOf(ds string) string {
	best := ""
	for _, root := range r.roots {
		if (ds == root || strings.HasPrefix(ds, root+"/")) && len(root) > len(best) {
			best = root
		}
	}
	if best == "" {
		return "other"
	}
	return best
}

// Receive implements zfsrepl.Receiver.
func (r *countingReceiver) Receive(ctx context.Context, req zfsrepl.ReceiveRequest, stream io.Reader) error {
	return r.Receiver.Receive(ctx, req, &countReader{r: stream, c: r.c.WithLabelValues(r.rootOf(req.Dataset))})
}

type countReader struct {
	r io.Reader
	c prometheus.Counter
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.c.Add(float64(n))
	}
	return n, err
}
