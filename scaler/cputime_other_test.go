//go:build !unix

package scaler

import "time"

// cpuTime is unknown here: the benchmark's cpu-ms/op reads 0.
func cpuTime() time.Duration { return 0 }
