// Package probe is the tiebreaker: it tells a node whether its public network
// still reaches the outside world, by ICMP echo or TCP connect to configured
// targets (the gateway, a DNS server).
//
// The failover logic asks it one question when heartbeats are lost: "is the
// peer gone, or am I the one cut off?". The answer is Status: Reachable is
// true when at least one target answered in the latest round (any, not all:
// one live gateway is enough to show the network path works, and requiring
// every target would turn the failure of one far-away target into a false
// "isolated"). An answer only counts if it arrived within Timeout of its
// probe being sent, as measured by the Prober's clock, and Status carries the
// send time of the freshest answered probe, so the caller can refuse
// evidence older than a freeze or a heartbeat loss (Status.ReachableAfter).
//
// ICMP uses unprivileged ping sockets ("udp4"/"udp6") when the kernel allows
// them (net.ipv4.ping_group_range) and raw sockets otherwise, which need
// root or CAP_NET_RAW. TCP counts only a completed handshake: a refusal can
// come from a firewall anywhere on the path, so it proves nothing about the
// target.
//
// probe imports only internal/config (for the target type); it must not
// import failover or anything that serves data, so that it can run in
// `zrepl-ha drill` and `status` without a daemon.
package probe
