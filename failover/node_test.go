package failover

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zrepl-ha/zrepl-ha/failover/vip"
	"github.com/zrepl-ha/zrepl-ha/transport"
	"github.com/zrepl-ha/zrepl-ha/transport/zfsrpc"
)

// cable is a loopback TCP forwarder that a test can pull and plug back.
type cable struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
}

func newCable(t *testing.T, target string) *cable {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cable{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); c.pull() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			if c.cut {
				c.mu.Unlock()
				in.Close()
				continue
			}
			out, err := net.DialTimeout("tcp", target, time.Second)
			if err != nil {
				c.mu.Unlock()
				in.Close()
				continue
			}
			c.conns = append(c.conns, in, out)
			c.mu.Unlock()
			go func() { io.Copy(out, in); out.Close() }()
			go func() { io.Copy(in, out); in.Close() }()
		}
	}()
	return c
}

func (c *cable) addr() string { return c.ln.Addr().String() }

func (c *cable) pull() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = true
	for _, x := range c.conns {
		x.Close()
	}
	c.conns = nil
}

func (c *cable) plug() {
	c.mu.Lock()
	c.cut = false
	c.mu.Unlock()
}

// port is a loopback socket a test holds for its whole run and lends to
// one node at a time (Node.Listen). Picking a free port and listening on it
// again later lost races with parallel tests' connections (bind: address
// already in use); a node that restarts gets the same port back.
type port struct {
	ln  net.Listener
	mu  sync.Mutex
	cur *portLease
}

func openPort(t *testing.T) *port {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &port{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			l := p.cur
			p.mu.Unlock()
			if l == nil { // no node listens: the peer sees its connection end at once
				c.Close()
				continue
			}
			select {
			case l.conns <- c:
			case <-l.done:
				c.Close()
			}
		}
	}()
	return p
}

func (p *port) addr() string { return p.ln.Addr().String() }

// lease is the node's listener until it closes it.
func (p *port) lease() (net.Listener, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != nil {
		return nil, fmt.Errorf("listen %s: a node already listens here", p.addr())
	}
	p.cur = &portLease{p: p, conns: make(chan net.Conn), done: make(chan struct{})}
	return p.cur, nil
}

type portLease struct {
	p     *port
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *portLease) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *portLease) Close() error {
	l.once.Do(func() {
		// Free the port before Accept returns, so a node restarted at once
		// can lease it.
		l.p.mu.Lock()
		if l.p.cur == l {
			l.p.cur = nil
		}
		l.p.mu.Unlock()
		close(l.done)
	})
	return nil
}
func (l *portLease) Addr() net.Addr { return l.p.ln.Addr() }

// recExec records the actions a node carried out.
type recExec struct {
	mu      sync.Mutex
	log     []string
	serving atomic.Bool
	epoch   atomic.Uint64
}

func (e *recExec) add(s string) { e.mu.Lock(); e.log = append(e.log, s); e.mu.Unlock() }
func (e *recExec) Serve(ctx context.Context, epoch uint64) error {
	e.add("serve")
	e.serving.Store(true)
	e.epoch.Store(epoch)
	return nil
}
func (e *recExec) Unserve(ctx context.Context) error {
	e.add("unserve")
	e.serving.Store(false)
	return nil
}
func (e *recExec) UnserveForHandOver(ctx context.Context) error {
	e.add("unserve for handover")
	e.serving.Store(false)
	return nil
}
func (e *recExec) HandOver(ctx context.Context, epoch uint64, ask func(context.Context) error) error {
	e.add("handover")
	return ask(ctx)
}
func (e *recExec) Rejoin(ctx context.Context, epoch uint64) error { e.add("rejoin"); return nil }
func (e *recExec) Prepare(ctx context.Context)                    { e.add("prepare") }

// index is where s first appears in the log, -1 if nowhere; count how often.
func (e *recExec) index(s string) (first, count int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	first = -1
	for i, x := range e.log {
		if x == s {
			if first < 0 {
				first = i
			}
			count++
		}
	}
	return first, count
}
func (e *recExec) has(s string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, x := range e.log {
		if x == s {
			return true
		}
	}
	return false
}

type pair struct {
	a, b           *Node
	ea, eb         *recExec
	link, pub      [2]*cable // [0]: to a, [1]: to b
	publicA, gw    atomic.Bool
	publicB        atomic.Bool
	timing         Timing
	cancelA, cancB context.CancelFunc
	mk             func(name string) *Node
	t              *testing.T
	ta, tb         *fakeTickler
}

// fakeTickler reports conns as its clients' connections and records the
// tickles it is asked for.
type fakeTickler struct {
	conns   []vip.Conn
	mu      sync.Mutex
	tickled [][]vip.Conn
}

func (f *fakeTickler) Connections() ([]vip.Conn, error) { return f.conns, nil }
func (f *fakeTickler) Tickle(ctx context.Context, conns []vip.Conn) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tickled = append(f.tickled, conns)
	return len(conns), nil
}
func (f *fakeTickler) got() [][]vip.Conn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.tickled)
}

// run starts n until the returned cancel is called (and waits for it to
// stop then, and at the end of the test).
func (p *pair) run(n *Node) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := n.Run(ctx); err != nil {
			p.t.Errorf("%s: %v", n.Options.Name, err)
		}
	}()
	stop := func() { cancel(); <-done }
	p.t.Cleanup(stop)
	return stop
}

var fastTiming = Timing{Interval: 50 * time.Millisecond, Threshold: 600 * time.Millisecond, Margin: 400 * time.Millisecond}

func startPair(t *testing.T) *pair { return startPairOpts(t, false) }

func startPairOpts(t *testing.T, failback bool) *pair {
	return startPairWith(t, func(n *Node) {
		if !failback {
			return
		}
		n.Failback, n.FailbackSettle = true, 300*time.Millisecond
		n.Newest = func() string { return "zrepl-ha_20261201T120000Z_000001" }
		n.Preferred = n.Options.Name == "a"
	})
}

// startPairWith starts the pair with each node (also one made again by
// p.mk) passed through set before it runs.
func startPairWith(t *testing.T, set func(*Node)) *pair {
	p := &pair{ea: &recExec{}, eb: &recExec{}, timing: fastTiming}
	client := func(port uint16) []vip.Conn {
		return []vip.Conn{{Local: netip.MustParseAddrPort("198.18.0.100:445"), Remote: netip.AddrPortFrom(netip.MustParseAddr("198.18.0.50"), port)}}
	}
	p.ta, p.tb = &fakeTickler{conns: client(40001)}, &fakeTickler{conns: client(40002)}
	p.publicA.Store(true)
	p.publicB.Store(true)
	p.gw.Store(true)
	ports := map[string]*port{}
	open := func() string {
		pt := openPort(t)
		ports[pt.addr()] = pt
		return pt.addr()
	}
	aLink, aPub, bLink, bPub := open(), open(), open(), open()
	p.link = [2]*cable{newCable(t, aLink), newCable(t, bLink)}
	p.pub = [2]*cable{newCable(t, aPub), newCable(t, bPub)}
	dir := t.TempDir()
	mk := func(name, peer string, e *recExec, init State, lLink, lPub string, toLink, toPub *cable, pubOK *atomic.Bool, tk *fakeTickler) *Node {
		return &Node{
			Tickler: tk,
			Options: Options{Name: name, PeerName: peer, Timing: p.timing},
			Persist: StateFile{Path: filepath.Join(dir, name, "state.json")},
			Initial: Persisted{State: init},
			Paths:   []PathConfig{{PathLink, lLink, toLink.addr()}, {PathPublic, lPub, toPub.addr()}},
			Sec:     transport.Security{Plaintext: true},
			Listen: func(addr string) (net.Listener, error) {
				if pt := ports[addr]; pt != nil {
					return pt.lease()
				}
				return nil, fmt.Errorf("listen %s: not a port of this pair", addr)
			},
			Exec: e,
			Probe: func(ctx context.Context) error {
				if pubOK.Load() && p.gw.Load() {
					return nil
				}
				<-ctx.Done()
				return errors.New("no answer")
			},
			ProbeTTL: 100 * time.Millisecond,
		}
	}
	p.mk = func(name string) *Node {
		var n *Node
		if name == "a" {
			n = mk("a", "b", p.ea, Active, aLink, aPub, p.link[1], p.pub[1], &p.publicA, p.ta)
		} else {
			n = mk("b", "a", p.eb, Passive, bLink, bPub, p.link[0], p.pub[0], &p.publicB, p.tb)
		}
		set(n)
		return n
	}
	p.t = t
	p.a, p.b = p.mk("a"), p.mk("b")
	p.cancelA, p.cancB = p.run(p.a), p.run(p.b)
	return p
}

func waitRole(t *testing.T, n *Node, role string, max time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < max {
		if n.Status().Role == role {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	s := n.Status()
	t.Fatalf("%s: not %s after %s: %s (%s)", n.Options.Name, role, max, s.Role, s.Decision.Reason)
	return 0
}

func waitPeer(t *testing.T, n *Node, role string, max time.Duration) {
	t.Helper()
	for end := time.Now().Add(max); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if s := n.Status(); s.PeerView != nil && s.PeerView.Role == role {
			return
		}
	}
	t.Fatalf("%s: peer not seen %s within %s", n.Options.Name, role, max)
}

func holdRole(t *testing.T, n *Node, role string, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if s := n.Status(); s.Role != role {
			t.Fatalf("%s: became %s (%s), want it to stay %s", n.Options.Name, s.Role, s.Decision.Reason, role)
		}
	}
}

// Two real nodes on loopback, real transport and heartbeats, cables that
// can be pulled; only the executor is a recorder. The timing is shortened
// (threshold 600 ms) so the test runs in seconds.
func TestNodePairOnLoopback(t *testing.T) {
	p := startPair(t)
	waitRole(t, p.a, "active", 5*time.Second)
	waitRole(t, p.b, "passive", time.Second)
	waitPeer(t, p.b, "active", time.Second)
	waitPeer(t, p.a, "passive", time.Second)
	if !p.ea.serving.Load() || p.eb.serving.Load() {
		t.Fatal("executors disagree with the roles")
	}

	t.Run("status", func(t *testing.T) {
		s := p.a.Status()
		if len(s.Paths) != 2 || !s.Paths[0].Up || !s.Paths[1].Up || s.PeerView == nil || s.PeerView.Role != "passive" || s.Tiebreaker == nil || !s.Tiebreaker.OK {
			t.Fatalf("status %+v", s)
		}
	})

	t.Run("admin promote refused while the peer is active", func(t *testing.T) {
		if err := p.b.Promote(context.Background(), false); err == nil {
			t.Fatal("accepted")
		}
	})

	t.Run("heartbeat cable pulled: no failover", func(t *testing.T) {
		p.link[0].pull()
		p.link[1].pull()
		holdRole(t, p.b, "passive", 4*p.timing.Threshold)
		waitRole(t, p.a, "active", 0+time.Millisecond)
		if up := p.a.Status().Paths[0].Up; up {
			t.Fatal("link still shown up")
		}
		p.link[0].plug()
		p.link[1].plug()
		if p.eb.has("prepare") {
			t.Error("the passive read a promotion plan ahead with the public path up")
		}
	})

	t.Run("active isolated: fences within the threshold, passive promotes after threshold+margin", func(t *testing.T) {
		start := time.Now()
		for _, c := range append(p.link[:], p.pub[:]...) {
			c.pull()
		}
		p.publicA.Store(false)
		fenced := waitRole(t, p.a, "fenced", 5*time.Second)
		for i := 0; p.ea.serving.Load(); i++ {
			if i > 100 {
				t.Fatal("fenced but still serving after 1s")
			}
			time.Sleep(10 * time.Millisecond)
		}
		waitRole(t, p.b, "standalone", 5*time.Second)
		promoted := time.Since(start)
		t.Logf("fenced after %s, promoted+served after %s", fenced, promoted)
		// The passive counts from the last beat it heard, up to one interval
		// before the cables went.
		if promoted < p.timing.Threshold+p.timing.Margin-p.timing.Interval {
			t.Fatalf("promoted after %s, before threshold+margin", promoted)
		}
		if p.eb.epoch.Load() != 1 {
			t.Fatalf("served at epoch %d", p.eb.epoch.Load())
		}
		// The plan was read ahead once, at the threshold, before the serve.
		prep, n := p.eb.index("prepare")
		srv, _ := p.eb.index("serve")
		if n != 1 || prep < 0 || prep > srv {
			t.Fatalf("passive's actions %q: want one prepare before the serve", p.eb.log)
		}
		// Cables back: the old active rejoins under the new epoch.
		p.publicA.Store(true)
		for _, c := range append(p.link[:], p.pub[:]...) {
			c.plug()
		}
		waitRole(t, p.a, "passive", 5*time.Second)
		waitRole(t, p.b, "active", 5*time.Second)
		waitPeer(t, p.b, "passive", time.Second)
		if !p.ea.has("rejoin") || p.a.Status().Epoch != 1 {
			t.Fatalf("old active: %v, epoch %d", p.ea.log, p.a.Status().Epoch)
		}
	})

	t.Run("switchover back", func(t *testing.T) {
		if err := p.b.Switchover(context.Background()); err != nil {
			t.Fatal(err)
		}
		waitRole(t, p.a, "active", 5*time.Second)
		waitRole(t, p.b, "passive", 5*time.Second)
		if p.a.Status().Epoch != 2 || !p.eb.has("handover") || p.eb.serving.Load() {
			t.Fatalf("epoch %d, b log %v", p.a.Status().Epoch, p.eb.log)
		}
		// The node stops serving the handover's way (the VIP first, the
		// unexport beside the final incremental), not the fence's.
		u, _ := p.eb.index("unserve for handover")
		if h, _ := p.eb.index("handover"); u < 0 || u > h {
			t.Fatalf("b log %v: want the handover's unserve before the handover", p.eb.log)
		}
		// b's clients' connections came with the handover; a, serving,
		// tickled them (once), and nothing else. The failover before
		// (no handover) tickled nothing on b.
		for i := 0; len(p.ta.got()) == 0 && i < 100; i++ {
			time.Sleep(10 * time.Millisecond)
		}
		if got := p.ta.got(); len(got) != 1 || !slices.Equal(got[0], p.tb.conns) {
			t.Fatalf("a tickled %v; want once %v", got, p.tb.conns)
		}
		if got := p.tb.got(); len(got) != 0 {
			t.Fatalf("b tickled %v after a failover without a handover", got)
		}
	})

	t.Run("restart of the active: resumes by consent under the same epoch", func(t *testing.T) {
		waitPeer(t, p.a, "passive", time.Second)
		p.cancelA()
		persisted, _, err := p.a.Persist.Load()
		if err != nil || persisted.State != Active || persisted.Epoch != 2 {
			t.Fatalf("persisted %+v, %v", persisted, err)
		}
		p.a = p.mk("a")
		p.cancelA = p.run(p.a)
		if s := p.a.Status(); s.Role != "fenced" && s.Role != "starting" {
			t.Fatalf("restarted as %s", s.Role)
		}
		waitRole(t, p.a, "active", 5*time.Second)
		if s := p.a.Status(); s.Epoch != 2 {
			t.Fatalf("resumed at epoch %d", s.Epoch)
		}
		holdRole(t, p.b, "passive", 2*p.timing.Threshold)
	})
}

// failback: auto: once the preferred node is back as a caught-up passive,
// the roles return to it with a switchover, under a new epoch.
func TestNodePairFailbackAuto(t *testing.T) {
	p := startPairOpts(t, true)
	waitRole(t, p.a, "active", 5*time.Second)
	waitPeer(t, p.b, "active", time.Second)
	for _, c := range append(p.link[:], p.pub[:]...) {
		c.pull()
	}
	p.publicA.Store(false)
	waitRole(t, p.b, "standalone", 5*time.Second)
	p.publicA.Store(true)
	for _, c := range append(p.link[:], p.pub[:]...) {
		c.plug()
	}
	waitRole(t, p.a, "passive", 5*time.Second)
	took := waitRole(t, p.a, "active", 10*time.Second)
	waitRole(t, p.b, "passive", 5*time.Second)
	if s := p.a.Status(); s.Epoch != 2 || !p.eb.has("handover") {
		t.Fatalf("a at epoch %d; b did %v", s.Epoch, p.eb.log)
	}
	t.Logf("failback %s after the old active rejoined", took.Round(time.Millisecond))
}

func TestRefuseReplication(t *testing.T) {
	now := time.Now()
	n := &Node{machine: NewMachine(Options{}, Persisted{State: Passive, Epoch: 1}, now)}
	for _, m := range []string{"tree", "confirm", "receive", "drill.info"} {
		if err := n.refuseReplication(m); err != nil {
			t.Errorf("passive refused %s: %v", m, err)
		}
	}
	n.machine.actionBusy = ActRejoin
	for m, refused := range map[string]bool{"tree": true, "confirm": true, "receive": true, "drill.sample": false} {
		if err := n.refuseReplication(m); (err != nil) != refused {
			t.Errorf("rejoining, %s: %v", m, err)
		}
	}
	n.machine = NewMachine(Options{}, Persisted{State: Passive, Epoch: 1}, now)
	n.machine.state = Active
	for m, refused := range map[string]bool{"tree": false, "confirm": true, "receive": true, "drill.info": false} {
		if err := n.refuseReplication(m); (err != nil) != refused {
			t.Errorf("active, %s: %v", m, err)
		}
	}
}

// A switchover asks the peer first: one that is rejoining (or busy) says
// so, and the active keeps serving instead of dropping its VIP for a
// handover the peer would refuse.
func TestSwitchoverRefusedWhileThePeerRejoins(t *testing.T) {
	p := startPair(t)
	waitRole(t, p.a, "active", 5*time.Second)
	waitPeer(t, p.a, "passive", time.Second)
	p.b.mu.Lock()
	p.b.machine.rejoinRetryAt = time.Now().Add(time.Hour) // a rejoin that failed, to be tried again
	p.b.mu.Unlock()
	err := p.a.Switchover(context.Background())
	if err == nil || !strings.Contains(err.Error(), "rejoining") || !strings.Contains(err.Error(), "try again") {
		t.Fatalf("switchover while the peer rejoins: %v, want a refusal that names the rejoin and says to try again", err)
	}
	holdRole(t, p.a, "active", 2*p.timing.Threshold)
	if p.ea.has("unserve for handover") || !p.ea.serving.Load() {
		t.Fatalf("a stopped serving for a refused switchover: %v", p.ea.log)
	}
	p.b.mu.Lock()
	p.b.machine.rejoinRetryAt = time.Time{}
	p.b.mu.Unlock()
	if err := p.a.Switchover(context.Background()); err != nil {
		t.Fatalf("switchover once the peer is ready: %v", err)
	}
	waitRole(t, p.b, "active", 5*time.Second)
}

func TestReadyToTakeOver(t *testing.T) {
	now := time.Now()
	if err := (&Node{}).readyToTakeOver(); !zfsrpc.IsNotReady(toPeerError(err)) {
		t.Errorf("starting node: %v, want not-ready", err)
	}
	n := &Node{machine: NewMachine(Options{}, Persisted{State: Passive, Epoch: 1}, now)}
	if err := n.readyToTakeOver(); err != nil {
		t.Errorf("idle passive: %v", err)
	}
	for _, busy := range []ActionKind{ActRejoin, ActServe} {
		n.machine.actionBusy = busy
		if err := n.readyToTakeOver(); !zfsrpc.IsNotReady(toPeerError(err)) {
			t.Errorf("passive busy with %s: %v, want not-ready", busy, err)
		}
	}
	n.machine.actionBusy = 0
	n.machine.state = Active
	if err := n.readyToTakeOver(); err == nil || zfsrpc.IsNotReady(toPeerError(err)) {
		t.Errorf("active: %v, want a plain refusal", err)
	}
}

// toPeerError turns a handler's error into what the caller of the
// transport sees.
func toPeerError(err error) error {
	if err == nil {
		return nil
	}
	return &transport.PeerError{End: transport.ErrorEnd(err)}
}

// A handover's VIP drop does not wait for the state file's fsync; every
// other action keeps its order.
func TestUnserveFirst(t *testing.T) {
	m := NewMachine(Options{Timing: fastTiming}, Persisted{State: Active, Epoch: 3}, time.Now())
	m.state = Active // serving, as when the cable goes
	acts := m.handOver(nil, time.Now(), "test")
	got := unserveFirst(acts)
	var kinds []ActionKind
	for _, a := range got {
		kinds = append(kinds, a.Kind)
	}
	if want := []ActionKind{ActUnserve, ActPersist, ActHandOver}; !slices.Equal(kinds, want) {
		t.Fatalf("handover actions run as %v, want %v", kinds, want)
	}
	if !got[0].HandOver || got[1].State != Demoting || got[2].Epoch != 3 {
		t.Fatalf("actions changed on the way: %+v", got)
	}
	// Nothing to move: the same slice back.
	plain := []Action{{Kind: ActPersist}, {Kind: ActServe}}
	if out := unserveFirst(plain); &out[0] != &plain[0] {
		t.Error("a list without an unserve was copied")
	}
}

// A handover's state is persisted beside its final incremental, and the
// ask waits for it: a state that cannot be written means the peer is
// never asked, so it never promotes on a handover this node could not
// record.
func TestHandoverAskWaitsForThePersist(t *testing.T) {
	p := startPair(t)
	waitRole(t, p.a, "active", 5*time.Second)
	waitPeer(t, p.a, "passive", time.Second)
	// A file where a's state directory was: every Save fails. The directory
	// is moved aside in one step: a's own save may be writing into it just
	// now, which made RemoveAll fail with "directory not empty".
	dir := filepath.Dir(p.a.Persist.Path)
	if err := os.Rename(dir, dir+".gone"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.a.Switchover(context.Background()); err != nil {
		t.Fatalf("switchover: %v", err)
	}
	// a starts the handover (its final incremental runs), but b is never
	// asked: it stays passive.
	for i := 0; !p.ea.has("handover") && i < 200; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if !p.ea.has("handover") {
		t.Fatalf("a did not start the handover: %v", p.ea.log)
	}
	holdRole(t, p.b, "passive", 3*p.timing.Threshold)
	if p.eb.has("serve") {
		t.Fatalf("b served on a handover a could not persist: %v", p.eb.log)
	}
	if s := p.a.Status(); s.Role == "passive" {
		t.Fatalf("a turned passive without the peer taking over (%s)", s.Decision.Reason)
	}
}
