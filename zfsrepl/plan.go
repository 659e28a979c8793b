package zfsrepl

import (
	"errors"
	"fmt"
	"strings"
)

// StepKind is what one replication step sends.
type StepKind int

const (
	// StepResume continues an interrupted receive from its token. Always
	// planned before anything else on that dataset.
	StepResume StepKind = iota + 1
	// StepFull sends a whole snapshot to a dataset the receiver lacks.
	StepFull
	// StepIncremental sends from a common base (snapshot or bookmark).
	StepIncremental
)

func (k StepKind) String() string {
	switch k {
	case StepResume:
		return "resume"
	case StepFull:
		return "full"
	case StepIncremental:
		return "incremental"
	}
	return fmt.Sprintf("StepKind(%d)", int(k))
}

// Step is one zfs send | zfs recv.
type Step struct {
	Kind   StepKind
	Source string // dataset on the sender
	Target string // dataset on the receiver
	Send   SendOptions
	// To is the short name of the snapshot the step ends at ("" for a
	// resume, whose target is inside the token).
	To string
}

func (s Step) String() string {
	switch s.Kind {
	case StepResume:
		return fmt.Sprintf("resume %s", s.Target)
	case StepFull:
		return fmt.Sprintf("full %s -> %s", s.Send.Snapshot, s.Target)
	}
	flag := "-i"
	if s.Send.Intermediates {
		flag = "-I"
	}
	return fmt.Sprintf("incremental %s %s %s -> %s", flag, s.Send.From, s.Send.Snapshot, s.Target)
}

// ErrConflict is wrapped by every *ConflictError.
var ErrConflict = errors.New("replication conflict")

// ConflictError is a receiver dataset that cannot be updated without
// destroying something. zrepl-ha never uses -F to paper over it: it reports
// what differs and leaves both sides as they are.
type ConflictError struct {
	Dataset string // on the receiver
	Reason  string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("replication conflict on %s: %s", e.Dataset, e.Reason)
}

func (e *ConflictError) Unwrap() error { return ErrConflict }

// RawPolicy says when to send raw (-w).
type RawPolicy int

const (
	RawAuto   RawPolicy = iota // raw for encrypted datasets
	RawAlways                  // raw always (the dataset must be encrypted or -w is a plain send)
	RawNever
)

// PlanOptions shape a plan.
type PlanOptions struct {
	// InitialAll sends every zrepl-ha snapshot on the first replication of a
	// dataset; the default sends only the newest.
	InitialAll bool
	Raw        RawPolicy
}

// Plan is what one cycle does for one root.
type Plan struct {
	Steps     []Step
	Conflicts []*ConflictError
	// OnlyOnReceiver lists receiver datasets with no sender counterpart
	// (destroyed on the sender). They are reported, never destroyed.
	OnlyOnReceiver []string
	// Waiting lists sender datasets with no zrepl-ha snapshot yet (created
	// after the last snapshot); the next snapshot picks them up.
	Waiting []string
}

// HasResume reports whether any step is a resume.
func (p *Plan) HasResume() bool {
	for _, s := range p.Steps {
		if s.Kind == StepResume {
			return true
		}
	}
	return false
}

// TargetName maps a sender dataset below sourceRoot to its receiver name.
func TargetName(sourceRoot, targetRoot, dataset string) string {
	return targetRoot + strings.TrimPrefix(dataset, sourceRoot)
}

// PlanRoot compares sender and receiver by guid and plans the steps that
// bring the receiver up to the sender's newest zrepl-ha snapshot. receiver
// is nil when the target root does not exist yet. It is pure: the engine and
// the tests feed it trees.
func PlanRoot(sourceRoot string, sender []TreeDataset, targetRoot string, receiver []TreeDataset, o PlanOptions) *Plan {
	p := &Plan{}
	rcv := map[string]*TreeDataset{}
	for i := range receiver {
		rcv[receiver[i].Name] = &receiver[i]
	}
	seen := map[string]bool{}
	for i := range sender {
		s := &sender[i]
		target := TargetName(sourceRoot, targetRoot, s.Name)
		seen[target] = true
		r := rcv[target]
		raw := o.Raw == RawAlways || o.Raw == RawAuto && s.Encrypted
		if r != nil && r.ResumeToken != "" {
			p.Steps = append(p.Steps, Step{Kind: StepResume, Source: s.Name, Target: target, Send: SendOptions{ResumeToken: r.ResumeToken}})
			continue
		}
		var owned []Version
		for _, v := range s.Versions {
			if IsOwned(v) {
				owned = append(owned, v)
			}
		}
		if len(owned) == 0 {
			p.Waiting = append(p.Waiting, s.Name)
			continue
		}
		newest := owned[len(owned)-1]
		if r == nil {
			first := newest
			if o.InitialAll {
				first = owned[0]
			}
			p.Steps = append(p.Steps, Step{Kind: StepFull, Source: s.Name, Target: target, To: first.Short(),
				Send: SendOptions{Snapshot: first.Name, Raw: raw, Props: true, LargeBlocks: !raw, Embedded: !raw}})
			if first.GUID != newest.GUID {
				p.Steps = append(p.Steps, incremental(s, target, first, newest, raw))
			}
			continue
		}
		steps, conflict := planExisting(s, r, target, newest, raw)
		if conflict != nil {
			p.Conflicts = append(p.Conflicts, conflict)
			continue
		}
		p.Steps = append(p.Steps, steps...)
	}
	for _, r := range receiver {
		if !seen[r.Name] {
			p.OnlyOnReceiver = append(p.OnlyOnReceiver, r.Name)
		}
	}
	return p
}

// incremental sends from..to, with -I only when a snapshot of s lies
// between them: zfs send -I first runs a dry run and places a temporary
// hold on every snapshot it sends, then releases them when it exits, and
// both hold and release wait for a txg to sync. On a pool busy with
// client writes that was seconds of every cycle (the lab's handover
// under an SMB copy), for a stream -i makes the same.
func incremental(s *TreeDataset, target string, from, to Version, raw bool) Step {
	return Step{Kind: StepIncremental, Source: s.Name, Target: target, To: to.Short(),
		Send: SendOptions{Snapshot: to.Name, From: from.Name, Intermediates: from.Type == Snapshot && snapshotBetween(s.Versions, from, to),
			Raw: raw, Props: true, LargeBlocks: !raw, Embedded: !raw}}
}

// snapshotBetween reports whether vs holds a snapshot created after from
// and before to.
func snapshotBetween(vs []Version, from, to Version) bool {
	for _, v := range vs {
		if v.Type == Snapshot && v.CreateTXG > from.CreateTXG && v.CreateTXG < to.CreateTXG {
			return true
		}
	}
	return false
}

// planExisting plans an incremental onto a receiver dataset that exists.
func planExisting(s, r *TreeDataset, target string, newest Version, raw bool) ([]Step, *ConflictError) {
	var rsnaps []Version
	for _, v := range r.Versions {
		if v.Type == Snapshot {
			rsnaps = append(rsnaps, v)
		}
	}
	if len(rsnaps) == 0 {
		return nil, &ConflictError{target, "exists on the receiver but has no snapshot; zrepl-ha will not overwrite it (rename or destroy it to start a full replication)"}
	}
	rnewest := rsnaps[len(rsnaps)-1]
	var base *Version
	for i := len(s.Versions) - 1; i >= 0; i-- {
		v := s.Versions[i]
		if v.GUID == rnewest.GUID && (base == nil || v.Type == Snapshot) {
			base = &s.Versions[i]
		}
	}
	if base == nil {
		common := ""
		sg := map[uint64]string{}
		for _, v := range s.Versions {
			sg[v.GUID] = v.Name
		}
		for i := len(rsnaps) - 1; i >= 0; i-- {
			if n, ok := sg[rsnaps[i].GUID]; ok {
				common = n
				break
			}
		}
		if common == "" {
			return nil, &ConflictError{target, fmt.Sprintf("no common snapshot or bookmark with %s (the receiver's newest is %s); a full resend would destroy the receiver's data", s.Name, rnewest.Short())}
		}
		return nil, &ConflictError{target, fmt.Sprintf("the receiver's newest snapshot %s is not on the sender (the newest common one is %s): the receiver diverged", rnewest.Short(), common)}
	}
	if newest.CreateTXG <= base.CreateTXG {
		return nil, nil // up to date
	}
	if base.Type == Snapshot {
		return []Step{incremental(s, target, *base, newest, raw)}, nil
	}
	// From a bookmark: one -i to the next snapshot, then -I for the rest
	// (zfs send -I does not take a bookmark).
	var next *Version
	for i := range s.Versions {
		v := s.Versions[i]
		if v.Type == Snapshot && v.CreateTXG > base.CreateTXG {
			next = &s.Versions[i]
			break
		}
	}
	steps := []Step{incremental(s, target, *base, *next, raw)}
	if next.GUID != newest.GUID {
		steps = append(steps, incremental(s, target, *next, newest, raw))
	}
	return steps, nil
}
