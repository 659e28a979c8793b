package witness

import (
	"time"

	"golang.org/x/sys/unix"
)

// bootClock reads CLOCK_BOOTTIME: monotonic like Go's clock, but it also
// counts time the machine spent suspended, which a lease deadline must see.
type bootClock struct{}

func (bootClock) Now() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return monoClock{}.Now()
	}
	return time.Duration(ts.Nano())
}

func defaultClock() clock { return bootClock{} }
