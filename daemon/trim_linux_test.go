package daemon

import "testing"

// TestReleaseStartupPages: the executable's clean pages that start-up
// touched leave the resident set (the benchmark BenchmarkIdleDaemon in
// cmd/pve-autoscaler measures the effect on the real binary).
func TestReleaseStartupPages(t *testing.T) {
	before := rssFile()
	if before == 0 {
		t.Skip("no RssFile in /proc/self/status")
	}
	n := ReleaseStartupPages()
	if n <= 0 {
		t.Fatalf("released %d bytes of %d resident file pages (the kernel needs MADV_PAGEOUT, Linux 5.4)", n, before)
	}
	if after := rssFile(); after >= before {
		t.Errorf("file-backed resident memory %d before, %d after", before, after)
	}
	t.Logf("released %.1f MiB of %.1f MiB", float64(n)/(1<<20), float64(before)/(1<<20))
}
