// Package watchdog pets a Linux watchdog device (/dev/watchdog: a hardware
// timer, or softdog in the lab) so that a hung daemon cannot keep a node
// serving: if nobody pets the device within its timeout, the kernel resets
// the machine.
//
// The contract with the daemon:
//
//   - Open starts the timer. From then on the device must be petted at least
//     once per timeout, or the node resets.
//   - Pet only while the decision loop is alive. The daemon's loop calls Pet
//     itself, or Run pets every interval while the loop's alive() says it
//     made progress recently. A petting goroutine that runs on its own would
//     keep a node whose decision loop is stuck (a deadlock, a blocked zfs
//     call) serving forever, which is exactly what the watchdog is for.
//   - Close on a clean shutdown only. Close writes the magic character 'V'
//     before closing, which tells the driver the stop is intended. A crash
//     or a kill closes the descriptor without it; the driver then keeps
//     counting ("watchdog did not stop!") and the node resets. Never Close
//     from a panic handler or a fatal-error path.
//
// Drivers or kernels built with nowayout ignore the magic close: with them
// even a clean shutdown resets the node unless something else pets the
// device.
//
// watchdog imports nothing of zrepl-ha; failover drives it.
package watchdog
