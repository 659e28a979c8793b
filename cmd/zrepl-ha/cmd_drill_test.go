package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/zrepl-ha/zrepl-ha/failover/drill"
)

func TestDrillOutputAndExitCode(t *testing.T) {
	yes := drill.Report{Ready: true, Checks: []drill.Check{{Name: "snapshot tank/data", OK: true, Reason: "matches"}}}
	no := drill.Report{Checks: []drill.Check{
		{Name: "snapshot tank/data", OK: true, Reason: "matches"},
		{Name: "vip", Reason: "the VIP 198.18.0.100 does not answer"},
	}}
	var b bytes.Buffer
	if err := printDrill(&b, yes, false); err != nil || exitCode(err) != 0 {
		t.Fatalf("ready: %v", err)
	}
	if !strings.HasSuffix(b.String(), "failover ready: yes\n") || !strings.Contains(b.String(), "ok  snapshot tank/data  matches") {
		t.Fatalf("%q", b.String())
	}
	b.Reset()
	err := printDrill(&b, no, false)
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "1 checks failed") {
		t.Fatalf("not ready: %v (exit %d)", err, exitCode(err))
	}
	if !strings.Contains(b.String(), "FAIL  vip") || !strings.HasSuffix(b.String(), "failover ready: no\n") {
		t.Fatalf("%q", b.String())
	}
	b.Reset()
	err = printDrill(&b, no, true)
	var got drill.Report
	if jerr := json.Unmarshal(b.Bytes(), &got); jerr != nil || got.Ready || len(got.Checks) != 2 || exitCode(err) != 1 {
		t.Fatalf("json: %v %+v %v", jerr, got, err)
	}
	if !strings.Contains(b.String(), `"failover_ready": false`) {
		t.Fatalf("%s", b.String())
	}
}
