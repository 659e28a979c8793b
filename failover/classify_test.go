package failover

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"testing"
)

func TestClassifyDecision(t *testing.T) {
	tests := []struct {
		to     State
		reason string
		want   DecisionClass
	}{
		{Promoting, "peer silent for 5.2s on every path and the tiebreaker answers: promote", DecisionClass{EventPromotion, "silence"}},
		{Promoting, "handover from the peer at epoch 4", DecisionClass{EventPromotion, "handover"}},
		{Promoting, "admin: failover --force", DecisionClass{EventPromotion, "admin"}},
		{Fenced, "resumed after a freeze of 4s: fence before serving anything", DecisionClass{EventFence, "freeze"}},
		{Fenced, "no peer contact for 3s and the tiebreaker is unreachable: self-fence", DecisionClass{EventFence, "isolated"}},
		{Demoting, "admin: switchover", DecisionClass{EventSwitchover, "admin"}},
		{Passive, "peer is active at epoch 5: rejoin as passive", DecisionClass{EventRejoin, "newer_epoch"}},
		{Passive, "admin: demote", DecisionClass{EventDemote, "admin"}},
		{Passive, "handed over: the peer promotes", DecisionClass{EventHandedOver, "handover"}},
		{Standalone, "no peer contact for 3s; the witness confirms us: serving standalone", DecisionClass{EventStandalone, "peer_lost"}},
		{Fenced, "something new", DecisionClass{EventFence, ReasonOther}},
	}
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			if got := ClassifyDecision(Decision{To: tt.to, Reason: tt.reason}); got != tt.want {
				t.Errorf("ClassifyDecision(%s, %q) = %+v, want %+v", tt.to, tt.reason, got, tt.want)
			}
		})
	}
}

// render turns a reason or step-name expression into sample text: string
// literals as written (format verbs included), anything else as "X".
func render(e ast.Expr) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "X", true
		}
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.BinaryExpr:
		l, lok := render(e.X)
		r, rok := render(e.Y)
		return l + r, lok || rok
	case *ast.CallExpr:
		if sel, ok := e.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Sprintf" && len(e.Args) > 0 {
			return render(e.Args[0])
		}
	case *ast.ParenExpr:
		return render(e.X)
	}
	return "X", false
}

func parseFile(t *testing.T, name string) *ast.File {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), name, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestEveryMachineReasonIsClassified reads machine.go: every literal reason
// passed to a transition must land in a class, so a reworded reason shows
// up here instead of as "other" in an admin's dashboard.
func TestEveryMachineReasonIsClassified(t *testing.T) {
	targets := map[string]State{"fence": Fenced, "promote": Promoting, "serve": Promoting, "handOver": Demoting}
	states := map[string]State{"Passive": Passive, "Promoting": Promoting, "Active": Active,
		"Standalone": Standalone, "Demoting": Demoting, "Fenced": Fenced}
	n := 0
	ast.Inspect(parseFile(t, "machine.go"), func(node ast.Node) bool {
		call, ok := node.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || len(call.Args) < 3 {
			return true
		}
		var to State
		switch name := sel.Sel.Name; name {
		case "fence", "promote", "serve", "handOver":
			to = targets[name]
		case "transition", "setState":
			id, ok := call.Args[len(call.Args)-2].(*ast.Ident)
			if !ok || states[id.Name] == 0 {
				return true // a variable state: the caller's literal is checked
			}
			to = states[id.Name]
		default:
			return true
		}
		reason, literal := render(call.Args[len(call.Args)-1])
		if !literal {
			return true
		}
		n++
		if c := ClassifyDecision(Decision{To: to, Reason: reason}); c.Reason == ReasonOther {
			t.Errorf("machine.go reason %q (-> %s) has no class in reasonRules", reason, to)
		}
		return true
	})
	if n < 15 {
		t.Fatalf("found only %d literal reasons in machine.go; the parser no longer sees them", n)
	}
}

// TestEveryStepIsClassified does the same for the step names of
// services.go.
func TestEveryStepIsClassified(t *testing.T) {
	n := 0
	ast.Inspect(parseFile(t, "services.go"), func(node ast.Node) bool {
		call, ok := node.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || sel.Sel.Name != "step" || len(call.Args) != 2 {
			return true
		}
		name, literal := render(call.Args[0])
		if !literal {
			return true
		}
		n++
		if StepClass(name) == ReasonOther {
			t.Errorf("services.go step %q has no class in stepRules", name)
		}
		return true
	})
	if n < 9 {
		t.Fatalf("found only %d steps in services.go; the parser no longer sees them", n)
	}
	if got := StepClass("roll back tank/data to zrepl-ha_20260101T000000Z_1"); got != "rollback" {
		t.Errorf("StepClass(roll back ...) = %q", got)
	}
	if got := StepClass("make tank/data writable and mount it"); got != "writable_mount" {
		t.Errorf("StepClass(make ... writable) = %q", got)
	}
}
