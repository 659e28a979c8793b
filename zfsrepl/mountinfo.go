package zfsrepl

import (
	"slices"
	"strconv"
	"strings"
)

// ZFSMounts reads mountinfo(5) (/proc/self/mountinfo): dataset -> mount
// point of each ZFS filesystem mounted at its own root (bind mounts of a
// subdirectory are skipped). The first mount of a dataset wins. It is
// what `zfs list -o mounted` reads too, without starting a zfs process.
func ZFSMounts(mountinfo []byte) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(string(mountinfo), "\n") {
		f := strings.Fields(line)
		sep := slices.Index(f, "-")
		if sep < 6 || len(f) < sep+3 || f[sep+1] != "zfs" || f[3] != "/" {
			continue
		}
		ds := UnescapeMount(f[sep+2])
		if _, seen := out[ds]; !seen {
			out[ds] = UnescapeMount(f[4])
		}
	}
	return out
}

// UnescapeMount undoes mountinfo's octal escapes (\040 for a space).
func UnescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
