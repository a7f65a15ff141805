//go:build !linux

package daemon

// ReleaseStartupPages does nothing off Linux.
func ReleaseStartupPages() int64 { return 0 }
