package pvesim

import (
	"sync"
	"time"
)

// Clock is the simulator's time. Latencies are in simulated time; a
// ScaledClock runs them faster than real time (tests: milliseconds; the
// demo: real or accelerated).
type Clock interface {
	Now() time.Time
	// AfterFunc calls f once d of simulated time has passed.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer can be stopped.
type Timer interface{ Stop() bool }

// ScaledClock runs Speed times faster than the wall clock (Speed 1: real time).
type ScaledClock struct {
	mu    sync.Mutex
	start time.Time // wall time at creation
	base  time.Time // simulated time at creation
	speed float64
}

// NewScaledClock starts a clock at the wall clock's now, running speed times faster.
func NewScaledClock(speed float64) *ScaledClock {
	if speed <= 0 {
		speed = 1
	}
	now := time.Now()
	return &ScaledClock{start: now, base: now, speed: speed}
}

// Speed is how many simulated seconds pass per real second.
func (c *ScaledClock) Speed() float64 { return c.speed }

// Now returns the simulated time.
func (c *ScaledClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.base.Add(time.Duration(float64(time.Since(c.start)) * c.speed))
}

// AfterFunc runs f after d of simulated time.
func (c *ScaledClock) AfterFunc(d time.Duration, f func()) Timer {
	return time.AfterFunc(c.Real(d), f)
}

// Real converts a simulated duration to wall-clock time.
func (c *ScaledClock) Real(d time.Duration) time.Duration {
	return time.Duration(float64(d) / c.speed)
}
