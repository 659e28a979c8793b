package zfsrepl

import "golang.org/x/sys/unix"

func setNice(pid, nice int) error {
	return unix.Setpriority(unix.PRIO_PROCESS, pid, nice)
}
