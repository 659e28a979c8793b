package witness

import "time"

// clock gives a monotonic reading as a duration since an arbitrary origin.
// Lease deadlines are points on it; tests use a fake.
type clock interface {
	Now() time.Duration
}

var processStart = time.Now()

// monoClock is Go's monotonic clock, which on Linux stops while the machine
// is suspended; used where CLOCK_BOOTTIME is unavailable.
type monoClock struct{}

func (monoClock) Now() time.Duration { return time.Since(processStart) }
