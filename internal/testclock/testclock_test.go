package testclock

import (
	"testing"
	"time"
)

func TestShiftKeepsWeekdayAndHour(t *testing.T) {
	t.Setenv(Env, "-52")
	base := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	got := Date(2026, 11, 27, 12, 0)
	if got.Year() != 2025 || got.Weekday() != base.Weekday() || got.Hour() != 12 {
		t.Fatalf("shifted %v: want 2025, a %v at 12:00", got, base.Weekday())
	}
	t.Setenv(Env, "")
	if !Date(2026, 11, 27, 12, 0).Equal(base) {
		t.Fatal("unset shift moved the date")
	}
}

func TestBadShiftPanics(t *testing.T) {
	t.Setenv(Env, "a year")
	defer func() {
		if recover() == nil {
			t.Fatal("a mistyped shift was taken as none")
		}
	}()
	Shift()
}
