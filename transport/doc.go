// Package transport owns everything that crosses the wire between the two
// nodes:
//
//   - the connections: TCP with mutual TLS and a pinned peer certificate,
//     dialled and accepted on the dedicated heartbeat link (and optionally
//     the public network);
//   - the versioned frame protocol (frame.go) and the version handshake that
//     opens every connection (handshake.go), so two different releases
//     refuse each other with a readable reason instead of misparsing;
//   - heartbeats, on a connection of their own (Purpose "control"), so that a
//     heartbeat never waits behind megabytes of stream data in a TCP send
//     buffer and a busy link cannot look like a dead peer;
//   - compressed zfs send streams on "data" connections, each ending in an
//     End frame that carries a failure's type and resume token to the other
//     side;
//   - flow control: Credit frames let the receiver bound what is in flight,
//     so a slow receive pushes back on the sender instead of filling memory.
//
// The package carries payloads; it does not interpret them. The meaning of a
// heartbeat (roles, epochs, fencing) belongs to failover, the meaning of a
// stream to zfsrepl. To keep it that way transport must not import failover,
// zfsrepl or any other zrepl-ha package: they depend on transport, never the
// other way round.
//
// Deadlines are the caller's: the frame Decoder and Encoder only read and
// write, and a peer that stalls mid-frame is detected by the deadline the
// caller sets on the net.Conn. Underneath, every TCP connection has
// keepalive and a user timeout (keepalive.go): a pulled cable or a frozen
// peer fails a connection within seconds even while it waits for a slow
// answer, which no deadline can tell apart from a busy peer. See
// docs/transport.md for the wire format.
package transport
