package failover

import (
	"errors"
	"time"
)

// Observers hands every call to each non-nil Observer in order, so the
// metrics and the events journal can both hear one node.
type Observers []Observer

var _ Observer = Observers(nil)

func (os Observers) Decision(d Decision) {
	for _, o := range os {
		if o != nil {
			o.Decision(d)
		}
	}
}

func (os Observers) Action(a Action, took time.Duration, err error) {
	for _, o := range os {
		if o != nil {
			o.Action(a, took, err)
		}
	}
}

func (os Observers) Step(step string, took time.Duration, err error) {
	for _, o := range os {
		if o != nil {
			o.Step(step, took, err)
		}
	}
}

func (os Observers) Heartbeat(path Path, rtt time.Duration) {
	for _, o := range os {
		if o != nil {
			o.Heartbeat(path, rtt)
		}
	}
}

// Pingers pets every non-nil watchdog (the kernel's and systemd's): both
// are fed from the same decision loop, so a hung loop starves both. Every
// one is petted even when an earlier one fails.
type Pingers []Pinger

func (ps Pingers) Pet() error {
	var errs []error
	for _, p := range ps {
		if p != nil {
			if err := p.Pet(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
