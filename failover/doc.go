// Package failover decides which node of the pair serves, and makes it so.
//
// It owns the node state machine (machine.go: states, inputs, decisions and
// the actions they call for), the persisted role and epoch (state.go), and
// the runtime that feeds the machine from heartbeats, the tiebreaker and the
// witness and carries out its actions (node.go). The decision logic is pure:
// it takes the time and its inputs as arguments, so tests drive it with a
// fake clock through every row of docs/failover.md.
//
// Subpackages hold the pieces that touch the outside world: probe (the
// tiebreaker's ICMP and TCP probes), watchdog (/dev/watchdog petting) and
// witness (the optional etcd lease).
//
// failover may import zfsrepl, transport and scheduler; none of them may
// import failover.
package failover
