package main

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/zrepl-ha/zrepl-ha/failover"
)

// systemd speaks sd_notify to the service manager of a Type=notify unit
// (docs/examples/zrepl-ha.service): READY=1 once the node runs and the
// control socket listens, WATCHDOG=1 from the failover loop, RELOADING=1
// around a SIGHUP and STOPPING=1 at shutdown. Outside systemd
// (NOTIFY_SOCKET unset) every call does nothing.
type systemd struct {
	log *slog.Logger
	// watchdog is WatchdogSec from the unit (WATCHDOG_USEC); 0 is off.
	watchdog time.Duration
	now      func() time.Time

	mu      sync.Mutex
	lastPet time.Time
}

func newSystemd(log *slog.Logger) *systemd {
	s := &systemd{log: log, now: time.Now}
	wd, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog settings unreadable; not petting it (check WatchdogSec in the unit)", "err", err)
	}
	s.watchdog = wd
	return s
}

// notify sends one state. A failure is logged: systemd would then time
// the start out or kill the unit, and the log says why.
func (s *systemd) notify(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		s.log.Warn("sd_notify failed", "state", state, "err", err)
	}
}

// Pet implements failover.Pinger. The loop pets every half heartbeat
// interval; systemd needs far fewer, so WATCHDOG=1 goes out at most every
// quarter of WatchdogSec.
func (s *systemd) Pet() error {
	if s.watchdog <= 0 {
		return nil
	}
	now := s.now()
	s.mu.Lock()
	if !s.lastPet.IsZero() && now.Sub(s.lastPet) < s.watchdog/4 {
		s.mu.Unlock()
		return nil
	}
	s.lastPet = now
	s.mu.Unlock()
	if _, err := daemon.SdNotify(false, daemon.SdNotifyWatchdog); err != nil {
		return fmt.Errorf("systemd watchdog: %w", err)
	}
	return nil
}

// pinger is the systemd watchdog as a failover.Pinger, nil when the unit
// has no WatchdogSec.
func (s *systemd) pinger() failover.Pinger {
	if s.watchdog <= 0 {
		return nil
	}
	return s
}

// watchdogs combines the kernel watchdog (watchdog.device) and systemd's:
// the node pets both from its decision loop.
func watchdogs(ps ...failover.Pinger) failover.Pinger {
	var out failover.Pingers
	for _, p := range ps {
		if p != nil {
			out = append(out, p)
		}
	}
	switch len(out) {
	case 0:
		return nil
	case 1:
		return out[0]
	}
	return out
}

// sdReloading is RELOADING=1 with the timestamp systemd 253+ expects.
func sdReloading() string {
	return daemon.SdNotifyReloading + "\n" + daemon.SdNotifyMonotonicUsec()
}
