package drill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"strings"
	"time"

	"github.com/zrepl-ha/zrepl-ha/failover/probe"
	"github.com/zrepl-ha/zrepl-ha/failover/shares"
	"github.com/zrepl-ha/zrepl-ha/internal/config"
)

// SharesCheck says whether m's shares would apply on this node after a
// promotion: the definitions are valid, the servers are installed, and
// every shared dataset is under a replicated root (otherwise it would not
// exist here). It changes nothing: the passive does not run the servers'
// reload. lookPath is exec.LookPath when nil.
func SharesCheck(m *shares.Manager, roots []string, lookPath func(string) (string, error)) func(context.Context) error {
	if lookPath == nil {
		lookPath = exec.LookPath
	}
	return func(ctx context.Context) error {
		var errs []error
		if err := m.Validate(); err != nil {
			errs = append(errs, err)
		}
		need := func(what, pkg string, bins ...string) {
			for _, b := range bins {
				if _, err := lookPath(b); err != nil {
					errs = append(errs, fmt.Errorf("%s shares need %s, which is not installed (install %s)", what, b, pkg))
				}
			}
		}
		var datasets []string
		if len(m.NFS) > 0 {
			need("NFS", "nfs-kernel-server", "exportfs", "rpc.nfsd")
			for _, s := range m.NFS {
				datasets = append(datasets, s.Dataset)
			}
		}
		if len(m.SMB) > 0 {
			need("SMB", "samba", "smbd", "smbcontrol")
			for _, s := range m.SMB {
				datasets = append(datasets, s.Dataset)
			}
		}
		for _, ds := range datasets {
			if !under(ds, roots) {
				errs = append(errs, fmt.Errorf("shared dataset %s is not under a replicated root (%s): it would not exist here after a failover", ds, strings.Join(roots, ", ")))
			}
		}
		return errors.Join(errs...)
	}
}

func under(ds string, roots []string) bool {
	for _, r := range roots {
		if ds == r || strings.HasPrefix(ds, r+"/") {
			return true
		}
	}
	return false
}

// TiebreakerCheck probes the configured tiebreaker targets once.
func TiebreakerCheck(targets []config.TiebreakTarget, timeout time.Duration) func(context.Context) error {
	return func(ctx context.Context) error {
		p := &probe.Prober{Targets: targets, Timeout: timeout, Log: slog.New(slog.DiscardHandler)}
		return answered(p.ProbeOnce(ctx), "no tiebreaker target answered: a passive that loses the active would not promote")
	}
}

// VIPCheck says whether the VIP answers from the active: the passive must
// not hold it, and an ICMP echo to the VIP's address (only that address)
// must come back. held reports whether this node holds it (vip.VIP.Held).
func VIPCheck(addr netip.Addr, timeout time.Duration, held func(context.Context) (bool, error)) func(context.Context) error {
	return func(ctx context.Context) error {
		h, err := held(ctx)
		if err != nil {
			return fmt.Errorf("cannot tell whether this node holds the VIP %s: %w", addr, err)
		}
		if h {
			return fmt.Errorf("this passive node holds the VIP %s: remove it (zrepl-ha demote) before clients reach the wrong node", addr)
		}
		p := &probe.Prober{Targets: []config.TiebreakTarget{{Address: addr.String(), Method: config.TiebreakICMP}}, Timeout: timeout, Log: slog.New(slog.DiscardHandler)}
		return answered(p.ProbeOnce(ctx), fmt.Sprintf("the VIP %s does not answer: the active does not serve it (zrepl-ha status on the active)", addr))
	}
}

func answered(res probe.Result, msg string) error {
	if res.Reachable {
		return nil
	}
	var errs []string
	for _, t := range res.Targets {
		if t.Err != nil {
			errs = append(errs, t.Err.Error())
		}
	}
	return fmt.Errorf("%s: %s", msg, strings.Join(errs, "; "))
}
