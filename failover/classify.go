package failover

import "strings"

// Metrics labels and journal entries need a small, fixed vocabulary for
// what a decision was and why: a reason string carries numbers and names
// ("peer silent for 5.2s ..."), and a label per distinct reason would grow
// the metric series without bound. The classes below are matched on the
// literal words of the reasons built in machine.go; classify_test.go parses
// machine.go and services.go and fails when a reason or step name no longer
// lands in a class, so the two cannot drift apart silently.

// Event kinds of a decision (DecisionClass.Event).
const (
	EventPromotion  = "promotion"  // -> promoting: failover, handover taken, admin, resume
	EventFence      = "fence"      // -> fenced
	EventSwitchover = "switchover" // -> demoting: this node hands over to the peer
	EventHandedOver = "handed_over"
	EventRejoin     = "rejoin"  // -> passive under the peer's newer epoch
	EventDemote     = "demote"  // admin demote
	EventServing    = "serving" // promoting -> active/standalone, standalone -> active
	EventStandalone = "standalone"
	EventOther      = "other"
)

// ReasonOther is the class of a reason no rule matched.
const ReasonOther = "other"

// DecisionClass is a decision sorted into bounded label values.
type DecisionClass struct {
	Event  string // one of the Event* constants
	Reason string // a short class of the reason, e.g. "silence", "freeze"
}

// reasonRule maps words of a reason to its class, for one target state.
type reasonRule struct {
	contains string
	class    string
}

var reasonRules = map[State][]reasonRule{
	Promoting: {
		{"peer silent for", "silence"},
		{"handover from the peer", "handover"},
		{"admin:", "admin"},
		{"consents: resume serving", "resume"},
	},
	Fenced: {
		{"resumed after a freeze", "freeze"},
		{"newer than ours", "newer_epoch"},
		{"peer is also", "both_serving"},
		{"lost the witness lease", "witness_lost"},
		{"self-fence", "isolated"},
		{"promotion failed", "promotion_failed"},
		{"handover failed", "handover_failed"},
	},
	Demoting: {
		{"admin: switchover", "admin"},
		{"public network is down", "public_lost"},
		{"failback:", "failback"},
	},
	Passive: {
		{"rejoin as passive", "newer_epoch"},
		{"admin: demote", "admin"},
		{"handed over", "handover"},
	},
	Active: {
		{"promotion finished", "promoted"},
		{"peer is back", "peer_back"},
	},
	Standalone: {
		{"promotion finished", "promoted"},
		{"confirms us", "peer_lost"},
	},
}

// ClassifyDecision sorts d into an event kind and a reason class.
func ClassifyDecision(d Decision) DecisionClass {
	c := DecisionClass{Event: EventOther, Reason: ReasonOther}
	for _, r := range reasonRules[d.To] {
		if strings.Contains(d.Reason, r.contains) {
			c.Reason = r.class
			break
		}
	}
	switch d.To {
	case Promoting:
		c.Event = EventPromotion
	case Fenced:
		c.Event = EventFence
	case Demoting:
		c.Event = EventSwitchover
	case Passive:
		switch c.Reason {
		case "admin":
			c.Event = EventDemote
		case "handover":
			c.Event = EventHandedOver
		default:
			c.Event = EventRejoin
		}
	case Active:
		c.Event = EventServing
	case Standalone:
		c.Event = EventServing
		if c.Reason == "peer_lost" {
			c.Event = EventStandalone
		}
	}
	return c
}

// stepRules map promotion, handover and rejoin step names (Services.step)
// to a bounded class; the names carry dataset and snapshot names.
var stepRules = []struct{ prefix, class string }{
	{"plan ", "plan"},
	{"abort partial receives", "abort_partial"},
	{"roll back ", "rollback"},
	{"make roots replicas", "make_replicas"},
	{"make ", "writable_mount"}, // "make <root> writable, record epoch N and mount it"
	{"bring up the VIP", "vip_up"},
	{"drop the VIP", "vip_down"},
	{"export the shares", "shares_export"},
	{"list the peer's ", "rejoin_list_peer"},
	{"rejoin ", "rejoin"},
	{"unexport the shares", "shares_unexport"},
	{"final incremental", "final_incremental"},
	{"ask the peer to promote", "ask_peer"},
}

// StepClass maps a step name to a bounded class ("roll back tank/data to
// X" -> "rollback"); unknown names are "other".
func StepClass(step string) string {
	for _, r := range stepRules {
		if strings.HasPrefix(step, r.prefix) {
			return r.class
		}
	}
	return ReasonOther
}
