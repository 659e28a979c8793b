//go:build !linux

package zfsrepl

import "errors"

// Only Linux names OpenZFS's kernel threads in /proc.
func setNice(pid, nice int) error {
	return errors.New("raising zfs's kernel threads is supported on Linux only")
}
