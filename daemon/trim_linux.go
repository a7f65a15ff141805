package daemon

import (
	"bufio"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ReleaseStartupPages hands the kernel back the pages of the executable
// that only start-up touched (package initialisation of a large client
// library set: Kubernetes API schemes, Talos protobuf descriptors). They
// are clean file pages; the kernel would drop them under memory pressure
// anyway, this drops them now, so the daemon's resident memory is its
// working set. Pages the daemon needs again fault back in from the page
// cache or the disk. It returns the bytes released (0 where unsupported:
// MADV_PAGEOUT needs Linux 5.4).
func ReleaseStartupPages() int64 {
	exe, err := os.Executable()
	if err != nil {
		return 0
	}
	before := rssFile()
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 00400000-019bb000 r-xp 00000000 fd:01 123 /usr/bin/pve-autoscaler
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe || strings.Contains(fields[1], "w") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		_ = madvise(uintptr(start), uintptr(end-start))
	}
	return max(before-rssFile(), 0)
}

func madvise(addr, length uintptr) error {
	_, _, errno := unix.Syscall(unix.SYS_MADVISE, addr, length, unix.MADV_PAGEOUT)
	if errno != 0 {
		return errno
	}
	return nil
}

// rssFile is the process's resident file-backed memory in bytes.
func rssFile() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
