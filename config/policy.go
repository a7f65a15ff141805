package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// Talos kubelet defaults: system-reserved cpu 50m and memory 192Mi, plus a
// 100Mi hard eviction threshold. A new worker's allocatable is estimated
// as the VM's size less these until a managed node exists to learn it from.
const (
	kubeletReservedMilliCPU = 50
	kubeletReservedMemory   = (192 + 100) << 20
)

// ScalerPolicy converts the validated policy into the decision engine's form.
// Call it only on a config whose Validate found no problems.
func (c *Config) ScalerPolicy() (scaler.Policy, error) {
	p := c.Policy
	loc, err := time.LoadLocation(p.Timezone)
	if err != nil {
		return scaler.Policy{}, fmt.Errorf("policy.timezone: %w", err)
	}
	sp := scaler.Policy{
		MinWorkers:           p.MinWorkers,
		MaxWorkers:           p.MaxWorkers,
		CPU:                  scaler.Threshold{Up: p.CPU.ScaleUpAt, Down: p.CPU.ScaleDownAt, Target: p.CPU.Target},
		Memory:               scaler.Threshold{Up: p.Memory.ScaleUpAt, Down: p.Memory.ScaleDownAt, Target: p.Memory.Target},
		UpWindow:             p.ScaleUpAfter.D(),
		DownWindow:           p.ScaleDownAfter.D(),
		CooldownAfterUp:      p.Cooldown.AfterScaleUp.D(),
		CooldownAfterDown:    p.Cooldown.AfterScaleDown.D(),
		CooldownAfterFailure: p.Cooldown.AfterFailure.D(),
		MaxStep:              p.MaxNodesPerStep,
		PendingPods:          p.PendingPods.Enabled,
		PendingGrace:         p.PendingPods.Grace.D(),
		ScaleDownMargin:      p.ScaleDownMargin,
		AllowLocalStorage:    p.Drain.DeleteEmptyDirData,
		ScheduleLead:         p.ScheduleLead.D(),
		Location:             loc,
		Worker: scaler.Resources{
			MilliCPU: int64(c.Proxmox.VM.Cores)*1000 - kubeletReservedMilliCPU,
			Memory:   int64(c.Proxmox.VM.Memory) - kubeletReservedMemory,
		},
		VMMemory:      int64(c.Proxmox.VM.Memory),
		HostReserve:   int64(c.Proxmox.HostMemReserve),
		StandbySize:   p.Standby.Size,
		StandbyHosts:  p.Standby.Hosts,
		StandbyMaxAge: p.Standby.MaxAge.D(),
	}
	for i, s := range p.Schedules {
		w, err := ParseWindow(s.Window)
		if err != nil {
			return scaler.Policy{}, fmt.Errorf("policy.schedules[%d].window: %w", i, err)
		}
		w.Name = s.Name
		if w.Name == "" {
			w.Name = s.Window
		}
		w.MinWorkers = s.MinWorkers
		sp.Schedules = append(sp.Schedules, w)
	}
	return sp, nil
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

const windowHelp = `expected "DAYS HH:MM-HH:MM", e.g. "Fri 18:00-23:59", "Mon-Fri 08:00-18:00", "Sat,Sun 10:00-22:00" or "* 00:00-06:00"`

// ParseWindow reads a weekly window: days (names, ranges such as Mon-Fri,
// lists, or * for every day) and a time range. An end at or before the
// start runs past midnight into the next day; 24:00 is the end of the day.
func ParseWindow(s string) (scaler.Schedule, error) {
	var w scaler.Schedule
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
