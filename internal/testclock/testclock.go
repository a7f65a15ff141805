// Package testclock gives tests their fixed dates, shifted by whole weeks
// when PVE_AUTOSCALER_TEST_SHIFT_WEEKS is set (e.g. -52 or 52), so that
// `make test` can prove no result depends on today's date. Whole weeks
// keep the weekday and the time of day that schedule tests rely on.
package testclock

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

// Env names the variable holding the shift in weeks.
const Env = "PVE_AUTOSCALER_TEST_SHIFT_WEEKS"

// Shift is the shift the environment asks for (0 when unset). A value that
// is not a whole number panics: a test run with a mistyped shift must not
// pass as if it had been shifted.
func Shift() time.Duration {
	v := os.Getenv(Env)
	if v == "" {
		return 0
	}
	w, err := strconv.Atoi(v)
	if err != nil {
		panic(fmt.Sprintf("%s=%q: expected a whole number of weeks, e.g. -52", Env, v))
	}
	return time.Duration(w) * 7 * 24 * time.Hour
}

// Date is time.Date in UTC, shifted.
func Date(year int, month time.Month, day, hour, min int) time.Time {
	return At(time.Date(year, month, day, hour, min, 0, 0, time.UTC))
}

// At shifts t.
func At(t time.Time) time.Time { return t.Add(Shift()) }
