package failover

import "time"

// Observer hears what the node decides and does, for metrics and the events
// journal. Every method is called synchronously from the node's goroutines
// and must be quick; nil Observers are skipped.
type Observer interface {
	// Decision is called after every transition of the machine.
	Decision(d Decision)
	// Action is called when an action finishes.
	Action(a Action, took time.Duration, err error)
	// Step is called after each promotion, handover or rejoin step.
	Step(step string, took time.Duration, err error)
	// Heartbeat is called for each acknowledged heartbeat with its RTT.
	Heartbeat(path Path, rtt time.Duration)
}
