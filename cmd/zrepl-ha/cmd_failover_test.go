package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zrepl-ha/zrepl-ha/failover"
)

func passiveStatus() failover.Status {
	return failover.Status{Node: "alpha", Peer: "beta", Role: "passive", Epoch: 7,
		PeerView: &failover.PeerStatus{Role: "active", Epoch: 7}}
}

func TestFailoverNeedsForce(t *testing.T) {
	d := &fakeDaemon{status: passiveStatus()}
	sock := serveFake(t, d)
	code, _, stderr := runMain(t, "failover", "--socket", sock, "--yes")
	if code != exitUsage || !strings.Contains(stderr, "pass --force") || !strings.Contains(stderr, "admin's promote") {
		t.Fatalf("code %d stderr %q", code, stderr)
	}
	if len(d.Calls()) != 0 {
		t.Fatalf("daemon was asked: %q", d.Calls())
	}
}

func TestFailoverConfirmation(t *testing.T) {
	cases := []struct {
		name      string
		yes, tty  bool
		typed     string
		wantErr   string // "" for success
		wantUsage bool
		wantCalls string
	}{
		{name: "yes", yes: true, wantCalls: "promote ignore_peer=true"},
		{name: "no tty, no yes", wantErr: "stdin is not a terminal; pass --yes", wantUsage: true},
		{name: "typed the name", tty: true, typed: "alpha\n", wantCalls: "promote ignore_peer=true"},
		{name: "typed y", tty: true, typed: "y\n", wantErr: `not confirmed (typed "y", not "alpha"); nothing changed`},
		{name: "EOF", tty: true, typed: "", wantErr: "not confirmed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := &fakeDaemon{status: passiveStatus()}
			sock := serveFake(t, d)
			var out, prompt bytes.Buffer
			opts := failoverOptions{controlOptions: controlOptions{Socket: sock}, Force: true, IgnorePeer: true,
				Yes: tc.yes, TTY: tc.tty, In: strings.NewReader(tc.typed), Prompt: &prompt}
			err := runFailover(context.Background(), &out, opts)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(out.String(), "failover accepted; alpha is now passive at epoch 7") {
					t.Errorf("output %q", out.String())
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			} else if got := exitCode(err) == exitUsage; got != tc.wantUsage {
				t.Errorf("exit code %d", exitCode(err))
			}
			if strings.Join(d.Calls(), ",") != tc.wantCalls {
				t.Errorf("calls %q, want %q", d.Calls(), tc.wantCalls)
			}
			if tc.tty && !tc.yes {
				want := "Promote alpha to active at a new epoch? Type the node name to confirm: "
				if !strings.HasSuffix(prompt.String(), want) || !strings.Contains(prompt.String(), "The peer beta said it is active at epoch 7.") {
					t.Errorf("prompt %q", prompt.String())
				}
			}
		})
	}
}

// TestAdminRefusals: a refusal exits 1 with the daemon's reason; no daemon
// exits 1 with the hint to start one.
func TestAdminRefusals(t *testing.T) {
	reason := "the peer is visibly active at epoch 7 (heartbeat 180ms ago); demote it first or pass --ignore-peer"
	sock := serveFake(t, &fakeDaemon{status: passiveStatus(), err: errors.New(reason)})
	none := filepath.Join(t.TempDir(), "none.sock")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"failover", "--force", "--yes", "--socket", sock}, "zrepl-ha: failover refused: " + reason + "\n"},
		{[]string{"demote", "--socket", sock}, "zrepl-ha: demote refused: " + reason + "\n"},
		{[]string{"switchover", "--socket", sock}, "zrepl-ha: switchover refused: " + reason + "\n"},
		{[]string{"failover", "--force", "--yes", "--socket", none}, "zrepl-ha: no zrepl-ha daemon answers on " + none + ": is `zrepl-ha run` started?\n"},
		{[]string{"demote", "--socket", none}, "zrepl-ha: no zrepl-ha daemon answers on " + none + ": is `zrepl-ha run` started?\n"},
		{[]string{"switchover", "--socket", none}, "zrepl-ha: no zrepl-ha daemon answers on " + none + ": is `zrepl-ha run` started?\n"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args[:1], " "), func(t *testing.T) {
			code, stdout, stderr := runMain(t, tc.args...)
			if code != exitFailure || stdout != "" || stderr != tc.want {
				t.Fatalf("code %d stdout %q stderr %q, want 1 and %q", code, stdout, stderr, tc.want)
			}
		})
	}
}

func TestDemoteAndSwitchover(t *testing.T) {
	d := &fakeDaemon{status: passiveStatus()}
	sock := serveFake(t, d)
	for _, cmd := range []string{"demote", "switchover"} {
		code, stdout, stderr := runMain(t, cmd, "--socket", sock)
		if code != exitOK || stdout != cmd+" accepted; alpha is now passive at epoch 7\n" {
			t.Fatalf("%s: code %d stdout %q stderr %q", cmd, code, stdout, stderr)
		}
	}
	if got := strings.Join(d.Calls(), ","); got != "demote,switchover" {
		t.Fatalf("calls %q", got)
	}
	code, _, stderr := runMain(t, "demote", "extra", "--socket", sock)
	if code != exitUsage {
		t.Fatalf("extra argument: code %d %q", code, stderr)
	}
}
