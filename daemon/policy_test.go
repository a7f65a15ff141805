package daemon

import (
	"testing"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/config"
)

func TestScalerPolicy(t *testing.T) {
	c := config.Default()
	c.Proxmox.VM.Cores = 4
	c.Proxmox.VM.Memory = 8 << 30
	c.Proxmox.HostMemReserve = 4 << 30
	c.Policy.Timezone = "UTC"
	c.Policy.Schedules = []config.ScheduleConfig{{Name: "movie-night", Window: "Fri 18:00-23:59", MinWorkers: 4}, {Window: "Sat 10:00-12:00", MinWorkers: 3}}
	p, err := ScalerPolicy(&c)
	if err != nil {
		t.Fatal(err)
	}
	if p.MinWorkers != 2 || p.MaxWorkers != 6 || p.CPU.Up != 80 || p.CPU.Down != 30 || p.Memory.Up != 85 || p.Memory.Down != 40 {
		t.Errorf("thresholds %+v", p)
	}
	if p.CooldownAfterUp != 5*time.Minute || p.UpWindow != time.Minute || p.PendingGrace != 30*time.Second {
		t.Errorf("durations %+v", p)
	}
	if p.Worker.MilliCPU != 3950 || p.Worker.Memory != 8<<30-292<<20 || p.VMMemory != 8<<30 || p.HostReserve != 4<<30 {
		t.Errorf("worker shape %+v", p.Worker)
	}
	if len(p.Schedules) != 2 || p.Schedules[0].Name != "movie-night" || p.Schedules[0].MinWorkers != 4 || p.Schedules[0].String() != "Fri 18:00-23:59" ||
		p.Schedules[1].Name != "Sat 10:00-12:00" || p.Schedules[1].MinWorkers != 3 {
		t.Errorf("schedules %+v", p.Schedules)
	}
	if p.Location.String() != "UTC" {
		t.Errorf("location %v", p.Location)
	}
	c.Policy.Timezone = "Nowhere/Atlantis"
	if _, err := ScalerPolicy(&c); err == nil {
		t.Error("an unknown time zone converted")
	}
}
