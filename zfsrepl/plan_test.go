package zfsrepl

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// snaps builds versions of ds: "s3" is owned snapshot #3 (guid 1000+3,
// txg 3), "b3" a bookmark of it, "x3" a foreign snapshot at txg 3.
func snaps(ds string, specs ...string) []Version {
	var vs []Version
	base := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for _, sp := range specs {
		var n int
		fmt.Sscanf(sp[1:], "%d", &n)
		short := SnapshotName(base.Add(time.Duration(n)*time.Second), uint64(n))
		v := Version{GUID: uint64(1000 + n), CreateTXG: uint64(n)}
		switch sp[0] {
		case 's':
			v.Name, v.Type = ds+"@"+short, Snapshot
		case 'b':
			v.Name, v.Type = ds+"#"+CursorName("beta", short), Bookmark
		case 'x':
			v.Name, v.Type, v.GUID = ds+"@manual"+sp[1:], Snapshot, uint64(5000+n)
		case 'd': // a diverged receiver snapshot: owned-looking name, unknown guid
			v.Name, v.Type, v.GUID = ds+"@"+short, Snapshot, uint64(9000+n)
		}
		vs = append(vs, v)
	}
	return vs
}

func short(n int) string {
	return SnapshotName(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC).Add(time.Duration(n)*time.Second), uint64(n))
}

func steps(p *Plan) string {
	var out []string
	for _, s := range p.Steps {
		out = append(out, s.String())
	}
	return strings.Join(out, "; ")
}

func TestPlanRoot(t *testing.T) {
	S, R := "tank/data", "backup/data"
	cases := []struct {
		name     string
		sender   []TreeDataset
		receiver []TreeDataset
		opts     PlanOptions
		want     string // steps
		conflict string
		waiting  string
		only     string
	}{
		{name: "initial newest only",
			sender: []TreeDataset{{Name: S, Versions: snaps(S, "s1", "s2", "s3")}},
			want:   "full tank/data@" + short(3) + " -> backup/data"},
		{name: "initial all",
			sender: []TreeDataset{{Name: S, Versions: snaps(S, "s1", "s2", "s3")}},
			opts:   PlanOptions{InitialAll: true},
			want:   "full tank/data@" + short(1) + " -> backup/data; incremental -I tank/data@" + short(1) + " tank/data@" + short(3) + " -> backup/data"},
		{name: "backlog coalesced into one -I",
			sender:   []TreeDataset{{Name: S, Versions: snaps(S, "s1", "s2", "s3", "s4", "s5")}},
			receiver: []TreeDataset{{Name: R, Versions: snaps(R, "s1", "s2")}},
			want:     "incremental -I tank/data@" + short(2) + " tank/data@" + short(5) + " -> backup/data"},
		{name: "up to date",
			sender:   []TreeDataset{{Name: S, Versions: snaps(S, "s1", "s2")}},
			receiver: []TreeDataset{{Name: R, Versions: snaps(R, "s1", "s2")}},
			want:     ""},
		{name: "base only as a bookmark: -i to the next, then -I",
			sender:   []TreeDataset{{Name: S, Versions: snaps(S, "b2", "s3", "s4", "s5")}},
			receiver: []TreeDataset{{Name: R, Versions: snaps(R, "s1", "s2")}},
			want: "incremental -i tank/data#" + CursorName("beta", short(2)) + " tank/data@" + short(3) + " -> backup/data; " +
				"incremental -I tank/data@" + short(3) + " tank/data@" + short(5) + " -> backup/data"},
		{name: "snapshot preferred over its bookmark",
			sender:   []TreeDataset{{Name: S, Versions: snaps(S, "s2", "b2", "s3")}},
			receiver: []TreeDataset{{Name: R, Versions: snaps(R, "s2")}},
			want:     "incremental -i tank/data@" + short(2) + " tank/data@" + short(3) + " -> backup/data"},
		{name: "one new snapshot: -i, which places no holds",
			sender:   []TreeDataset{{Name: S, Versions: snaps(S, "s1", "s2", "s3")}},
			receiver: []TreeDataset{{Name: R, Versions: snaps(R, "s1", "s2")}},
			want:     "incremental -i tank/data@" + short(2) + " tank/data@" + short(3) + " -> backup/data"},
		{name: "a bookmark between is not an intermediate",
			sender:   []TreeDataset{{Name: S, Versions: snaps(S, "s1", "s2", "b3", "s4")}},
			receiver: []TreeDataset{{Name: R, Versions: snaps(R, "s1", "s2")}},
			want:     "incremental -i tank/data@" + short(2) + " tank/data@" + short(4) + " -> backup/data"},
		{name: "resume first, nothing else on that dataset",
			sender:   []TreeDataset{{Name: S, Versions: snaps(S, "s1", "s2")}},
			receiver: []TreeDataset{{Name: R, Versions: snaps(R, "s1"), ResumeToken: "1-abc"}},
			want:     "resume backup/data"},
		{name: "new child gets a full send, parent incremental",
			sender:   []TreeDataset{{Name: S, Versions: snaps(S, "s1", "s2")}, {Name: S + "/new", Versions: snaps(S+"/new", "s2")}},
			receiver: []TreeDataset{{Name: R, Versions: snaps(R, "s1")}},
			want:     "incremental -i tank/data@" + short(1) + " tank/data@" + short(2) + " -> backup/data; full tank/data/new@" + short(2) + " -> backup/data/new"},
		{name: "child destroyed on sender is reported",
			sender:   []TreeDataset{{Name: S, Versions: snaps(S, "s1")}},
			receiver: []TreeDataset{{Name: R, Versions: snaps(R, "s1")}, {Name: R + "/gone", Versions: snaps(R+"/gone", "s1")}},
			want:     "", only: "backup/data/gone"},
		{name: "child without a snapshot yet waits",
			sender:   []TreeDataset{{Name: S, Versions: snaps(S, "s1")}, {Name: S + "/fresh"}},
			receiver: []TreeDataset{{Name: R, Versions: snaps(R, "s1")}},
			want:     "", waiting: "tank/data/fresh"},
		{name: "foreign snapshots are not targets",
			sender:   []TreeDataset{{Name: S, Versions: snaps(S, "s1", "x2")}},
			receiver: []TreeDataset{{Name: R, Versions: snaps(R, "s1")}},
			want:     ""},
		{name: "diverged receiver is a conflict",
			sender:   []TreeDataset{{Name: S, Versions: snaps(S, "s1", "s2")}},
			receiver: []TreeDataset{{Name: R, Versions: snaps(R, "s1", "d2")}},
			conflict: "diverged"},
		{name: "no common base is a conflict, never a full resend",
			sender:   []TreeDataset{{Name: S, Versions: snaps(S, "s5")}},
			receiver: []TreeDataset{{Name: R, Versions: snaps(R, "d1")}},
			conflict: "no common snapshot"},
		{name: "existing receiver without snapshots is a conflict",
			sender:   []TreeDataset{{Name: S, Versions: snaps(S, "s1")}},
			receiver: []TreeDataset{{Name: R}},
			conflict: "will not overwrite"},
		{name: "encrypted dataset sends raw",
			sender: []TreeDataset{{Name: S, Encrypted: true, Versions: snaps(S, "s1")}},
			want:   "full tank/data@" + short(1) + " -> backup/data"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := PlanRoot(S, c.sender, R, c.receiver, c.opts)
			if got := steps(p); got != c.want {
				t.Errorf("steps:\n got %s\nwant %s", got, c.want)
			}
			var conf []string
			for _, ce := range p.Conflicts {
				conf = append(conf, ce.Error())
				if !errors.Is(ce, ErrConflict) {
					t.Error("conflict does not wrap ErrConflict")
				}
			}
			if c.conflict == "" && len(conf) > 0 || c.conflict != "" && !strings.Contains(strings.Join(conf, ";"), c.conflict) {
				t.Errorf("conflicts %v, want %q", conf, c.conflict)
			}
			if got := strings.Join(p.Waiting, ","); got != c.waiting {
				t.Errorf("waiting %q want %q", got, c.waiting)
			}
			if got := strings.Join(p.OnlyOnReceiver, ","); got != c.only {
				t.Errorf("only on receiver %q want %q", got, c.only)
			}
			for _, s := range p.Steps {
				if s.Kind != StepResume {
					if s.Send.Raw != (c.sender[0].Encrypted && s.Source == S) {
						t.Errorf("raw=%v for %s", s.Send.Raw, s.Source)
					}
					if !s.Send.Props {
						t.Error("properties not sent (-p)")
					}
				}
			}
		})
	}
}

func TestReceivePolicyNeverForces(t *testing.T) {
	for _, k := range []StepKind{StepFull, StepIncremental, StepResume} {
		o := ReceivePolicy(k)
		if o.Force || !o.Resumable || !o.NoMount {
			t.Errorf("%s: %+v", k, o)
		}
	}
	if o := ReceivePolicy(StepFull); o.Set["readonly"] != "on" || o.Set["canmount"] != "noauto" {
		t.Errorf("full receive not read-only: %+v", o)
	}
}

func TestLatestConsistent(t *testing.T) {
	tree := []TreeDataset{
		{Name: "b/d", Versions: snaps("b/d", "s1", "s2", "s3")},
		{Name: "b/d/x", Versions: snaps("b/d/x", "s1", "s2", "x3")},
		{Name: "b/d/y", Versions: snaps("b/d/y", "s2", "s3")},
	}
	if got := LatestConsistent(tree); got != short(2) {
		t.Fatalf("got %s want %s", got, short(2))
	}
	if LatestConsistent(nil) != "" || LatestConsistent([]TreeDataset{{Name: "b"}}) != "" {
		t.Fatal("empty trees have no consistent snapshot")
	}
}
