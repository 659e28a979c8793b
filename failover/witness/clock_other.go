//go:build !linux

package witness

func defaultClock() clock { return monoClock{} }
