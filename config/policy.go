package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Window is a weekly window of policy.schedules, as ParseWindow reads it.
type Window struct {
	// Days the window starts on (time.Sunday .. time.Saturday).
	Days [7]bool
	// Start and End are minutes after midnight; End <= Start runs past midnight.
	Start, End int
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

const windowHelp = `expected "DAYS HH:MM-HH:MM", e.g. "Fri 18:00-23:59", "Mon-Fri 08:00-18:00", "Sat,Sun 10:00-22:00" or "* 00:00-06:00"`

// ParseWindow reads a weekly window: days (names, ranges such as Mon-Fri,
// lists, or * for every day) and a time range. An end at or before the
// start runs past midnight into the next day; 24:00 is the end of the day.
func ParseWindow(s string) (Window, error) {
	var w Window
	fields := strings.Fields(s)
	if len(fields) != 2 {
		return w, fmt.Errorf("%q: %s", s, windowHelp)
	}
	if fields[0] == "*" {
		for d := range w.Days {
			w.Days[d] = true
		}
	} else {
		for _, part := range strings.Split(fields[0], ",") {
			from, to, isRange := strings.Cut(part, "-")
			a, ok1 := dayNames[strings.ToLower(from)]
			b, ok2 := a, true
			if isRange {
				b, ok2 = dayNames[strings.ToLower(to)]
			}
			if !ok1 || !ok2 {
				return w, fmt.Errorf("%q: unknown day %q: %s", s, part, windowHelp)
			}
			for d := a; ; d = (d + 1) % 7 {
				w.Days[d] = true
				if d == b {
					break
				}
			}
		}
	}
	from, to, ok := strings.Cut(fields[1], "-")
	if !ok {
		return w, fmt.Errorf("%q: %s", s, windowHelp)
	}
	var err error
	if w.Start, err = clock(from, false); err != nil {
		return w, fmt.Errorf("%q: %v: %s", s, err, windowHelp)
	}
	if w.End, err = clock(to, true); err != nil {
		return w, fmt.Errorf("%q: %v: %s", s, err, windowHelp)
	}
	if w.Start == w.End {
		return w, fmt.Errorf("%q: the window is empty (start equals end)", s)
	}
	if w.End == 24*60 {
		w.End = 0 // until midnight: the past-midnight form with nothing after it
	}
	return w, nil
}

func clock(s string, end bool) (int, error) {
	hh, mm, ok := strings.Cut(s, ":")
	h, err1 := strconv.Atoi(hh)
	m, err2 := strconv.Atoi(mm)
	if !ok || err1 != nil || err2 != nil || len(mm) != 2 || h < 0 || m < 0 || m > 59 || h > 24 || (h == 24 && (m != 0 || !end)) {
		return 0, fmt.Errorf("bad time %q", s)
	}
	return h*60 + m, nil
}
