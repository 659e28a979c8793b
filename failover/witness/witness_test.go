package witness

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/internal/config"
)

const s = time.Second

// The client-side deadline must never be later than the earliest moment
// etcd may expire the lease (receipt of the keepalive + TTL, and receipt is
// after sending), and a renewal must leave room for more keepalives.
func TestHoldDeadlineIsBeforeServerExpiry(t *testing.T) {
	for _, ttl := range []time.Duration{1 * s, 2 * s, 5 * s, 60 * s} {
		h := newHold(ttl, 10*s)
		if h.deadline > 10*s+ttl {
			t.Errorf("ttl %v: grant deadline %v after server expiry %v", ttl, h.deadline, 10*s+ttl)
		}
		sent := 12 * s
		h.renew(sent, ttl)
		if got, max := h.deadline, sent+ttl; got > max || got < sent+ttl/2 {
			t.Errorf("ttl %v: renewed deadline %v, want in [%v, %v]", ttl, got, sent+ttl/2, max)
		}
		if n := (ttl - lossMargin(ttl)) / keepaliveInterval(ttl); n < 3 {
			t.Errorf("ttl %v: only %d keepalives fit before the deadline", ttl, n)
		}
	}
}

func TestHold(t *testing.T) {
	ttl := 5 * s // margin 1s: deadline = sent + 4s
	tests := []struct {
		name      string
		steps     func(h *hold) (held, just bool)
		wantHeld  bool
		wantJust  bool
		wantCause error
		wantAt    time.Duration
	}{
		{"fresh grant holds", func(h *hold) (bool, bool) { return h.check(3 * s) }, true, false, nil, 0},
		{"grant deadline passes", func(h *hold) (bool, bool) { return h.check(4 * s) }, false, true, ErrLeaseDeadline, 4 * s},
		{"renewal moves the deadline", func(h *hold) (bool, bool) {
			h.renew(3*s, ttl)
			return h.check(6900 * time.Millisecond)
		}, true, false, nil, 0},
		{"an older renewal arriving late does not move it back", func(h *hold) (bool, bool) {
			h.renew(3*s, ttl)
			h.renew(1*s, ttl)
			return h.check(6 * s)
		}, true, false, nil, 0},
		{"a shorter server TTL is honoured", func(h *hold) (bool, bool) {
			h.renew(3*s, 2*s) // deadline 3+2-1 = 4s: not moved
			return h.check(4 * s)
		}, false, true, ErrLeaseDeadline, 4 * s},
		{"loss is final: renewal after loss does nothing", func(h *hold) (bool, bool) {
			h.check(5 * s)
			h.renew(4900*time.Millisecond, ttl)
			return h.check(5 * s)
		}, false, false, ErrLeaseDeadline, 4 * s},
		{"explicit loss keeps its cause and time", func(h *hold) (bool, bool) {
			h.lose(2*s, ErrKeyDeleted)
			return h.check(2 * s)
		}, false, false, ErrKeyDeleted, 2 * s},
		{"explicit loss after the deadline reports the deadline", func(h *hold) (bool, bool) {
			h.lose(9*s, ErrSessionClosed)
			return h.check(9 * s)
		}, false, false, ErrLeaseDeadline, 4 * s},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHold(ttl, 0)
			held, just := tc.steps(&h)
			if held != tc.wantHeld || just != tc.wantJust {
				t.Fatalf("held, justLost = %v, %v; want %v, %v", held, just, tc.wantHeld, tc.wantJust)
			}
			if !errors.Is(h.cause, tc.wantCause) && !(h.cause == nil && tc.wantCause == nil) {
				t.Errorf("cause %v, want %v", h.cause, tc.wantCause)
			}
			if !tc.wantHeld && h.lostAt != tc.wantAt {
				t.Errorf("lost at %v, want %v", h.lostAt, tc.wantAt)
			}
		})
	}
}

func TestCheckEndpoint(t *testing.T) {
	tests := []struct {
		ep   string
		want string // substring of the error; "" = accepted
	}{
		{"127.0.0.1:2379", ""},
		{"etcd1.example:2379", ""},
		{"[2001:db8::1]:2379", ""},
		{"http://198.18.0.10:2379", ""},
		{"https://198.18.0.10:2379/", ""},
		{"198.18.0.10", "missing port"},
		{"http://198.18.0.10", "missing port"},
		{":2379", "empty host"},
		{"host:http", "not a number"},
		{"host:70000", "not a number"},
		{"unix://sock:1", "scheme \"unix\" not supported"},
		{"http://h:1/v3", "no path"},
		{"http://u:p@h:1", "no path, query or user"},
	}
	for _, tc := range tests {
		t.Run(tc.ep, func(t *testing.T) {
			err := checkEndpoint(tc.ep)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("accepted, want error containing %q", tc.want)
			case err != nil && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q does not contain %q", err, tc.want)
			case err != nil && !strings.Contains(err.Error(), tc.ep):
				t.Fatalf("error %q does not name the endpoint", err)
			}
		})
	}
}

func FuzzCheckEndpoint(f *testing.F) {
	for _, s := range []string{"127.0.0.1:2379", "https://h:1", "h", "::", "http://[::1]:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ep string) {
		if err := checkEndpoint(ep); err != nil && !strings.Contains(err.Error(), "want host:port") {
			t.Fatalf("error without the expected forms: %v", err)
		}
	})
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"empty", Config{}, []string{"node name is empty", "no etcd endpoints", "lease TTL 0s"}},
		{"fractional TTL", Config{Node: "a", Endpoints: []string{"h:1"}, LeaseTTL: 1500 * time.Millisecond}, []string{"whole seconds"}},
		{"bad endpoint", Config{Node: "a", Endpoints: []string{"h:1", "nope"}, LeaseTTL: s}, []string{`"nope"`}},
		{"prefix", Config{Node: "a", Endpoints: []string{"h:1"}, LeaseTTL: s, Prefix: "x/"}, []string{"must start with /"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := New(tc.cfg)
			if err == nil {
				w.Close()
				t.Fatal("New accepted it")
			}
			if !errors.Is(err, ErrBadConfig) {
				t.Errorf("error does not wrap ErrBadConfig: %v", err)
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

// New must not contact etcd: a witness that is down at start is a failure
// mode, not a reason to refuse to start. Nothing listens on port 1.
func TestNewDoesNotDial(t *testing.T) {
	w, err := New(Config{Node: "a", Endpoints: []string{"127.0.0.1:1"}, LeaseTTL: s})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, ok := w.Held(); ok {
		t.Fatal("held before any campaign")
	}
	if st := w.Status(); st.Held || st.Token != 0 {
		t.Fatalf("status %+v before any campaign", st)
	}
}

func TestFromConfig(t *testing.T) {
	c := config.Defaults()
	c.Node.Name = "alpha"
	if _, ok := FromConfig(c); ok {
		t.Fatal("witness configured by default")
	}
	c.Witness.Etcd = &config.Etcd{Endpoints: []string{"h:1"}, Prefix: "/p/", LeaseTTL: config.Duration(3 * s)}
	got, ok := FromConfig(c)
	if !ok || got.Node != "alpha" || got.Prefix != "/p/" || got.LeaseTTL != 3*s || len(got.Endpoints) != 1 {
		t.Fatalf("FromConfig = %+v, %v", got, ok)
	}
}
