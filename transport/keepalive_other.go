//go:build !linux

package transport

import (
	"syscall"
	"time"
)

// setUserTimeout: only Linux has TCP_USER_TIMEOUT; elsewhere the keepalive
// alone finds a dead peer.
func setUserTimeout(syscall.RawConn, time.Duration) error { return nil }
