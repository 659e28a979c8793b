package zfsrepl

import (
	"errors"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

const pipeSize = 1 << 20

// growPipe raises a pipe's kernel buffer to 1 MiB so zfs send and recv move
// more per system call. Best effort. (SyscallConn, not Fd: Fd would switch
// the file to blocking mode.)
func growPipe(f *os.File) {
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeSize) })
	}
}

// spliceAll moves everything from pipe src to pipe dst inside the kernel
// (splice(2)), counting bytes, until src reaches EOF (zfs send exited and
// its end is closed) or dst's reader is gone (EPIPE). This goroutine owns
// both files until it returns: they are switched to blocking mode (Fd) so
// the splice waits in the kernel instead of spinning, and neither may be
// closed before it returns.
func spliceAll(src, dst *os.File, c *byteCounter) error {
	sfd, dfd := int(src.Fd()), int(dst.Fd())
	defer runtime.KeepAlive(src)
	defer runtime.KeepAlive(dst)
	for {
		n, err := unix.Splice(sfd, nil, dfd, nil, pipeSize, unix.SPLICE_F_MOVE)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil:
			return err
		case n == 0:
			return nil
		}
		c.add(int(n))
	}
}
