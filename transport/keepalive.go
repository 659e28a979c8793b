package transport

import (
	"net"
	"time"
)

// deadPeer is how long a connection may go without any sign of life from
// the peer's kernel before it fails. A pulled cable or a frozen peer sends
// no FIN and no RST; without this a call waiting for its answer waits out
// its whole timeout (minutes for a tree listing) and a write waits out the
// kernel's retransmissions (about 15 minutes). A live peer's kernel answers
// keepalive probes and acknowledges data however busy its zfs commands
// are, so a slow answer is not a dead peer.
const deadPeer = 10 * time.Second

// keepAlive probes an idle connection after 2 s, then every second: with
// the user timeout below, it fails deadPeer after the peer last answered.
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 2 * time.Second, Interval: time.Second, Count: 4}

// detectDeadPeer sets the user timeout (unacknowledged data) on a TCP
// connection; the keepalive is set by the dialer or the listener.
func detectDeadPeer(c net.Conn) error {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil // not TCP (tests over net.Pipe)
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	return setUserTimeout(rc, deadPeer)
}
