package daemon

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/internal/world"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// Issue 15 end to end: a provisioning left half-done (the daemon crashed
// after configuring it) whose host then went offline is resumed, fails to
// start and backs off: stuck. It is no capacity: the minimum of one worker
// brings a worker up on another host (it used to count as a worker on its
// way, holding every scale-up through its backoff). /status lists it with
// why, and /metrics counts it.
func TestAStuckProvisionIsShownAndIsNoCapacity(t *testing.T) {
	w := newWorld(t)
	cfg := testConfig(w, 1, 3) // no failure cooldown: the backoff is the default 5 min
	var d *Daemon
	hook, crashed := crashAt(scaler.OpProvision, scaler.StepConfigured, func() { d.Reconciler.Abort() })
	d, _ = build(t, w, cfg, Options{AfterStep: hook})
	if _, err := d.Reconciler.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-crashed:
	case <-time.After(30 * time.Second):
		t.Fatal("never reached configured")
	}
	d.Reconciler.Wait()
	stuck, host := 0, ""
	for _, v := range w.Sim.VMs() {
		if !v.Template && v.VMID != world.ForeignVMID {
			stuck, host = v.VMID, v.Host
		}
	}
	w.Sim.SetHostOnline(host, false)
	t.Cleanup(func() { w.Sim.SetHostOnline(host, true) })

	d2, _ := build(t, w, cfg, Options{})
	srv := NewServer(d2.Reconciler, NewMetrics(), time.Second)
	srv.SetLeader(true)
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	converge(t, d2, "a worker on another host", 60*time.Second, func() bool {
		v, n := joined(t, w)
		return v == 1 && n == 1
	})
	d2.Reconciler.Wait()
	plan, err := d2.Reconciler.Tick(context.Background())
	srv.Ticked(plan, err)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Workers.Stuck != 1 {
		t.Errorf("plan workers %+v, want 1 stuck", plan.Workers)
	}
	get := func(path string) string {
		res, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	var st struct {
		Stuck []scaler.StuckVM `json:"stuck"`
	}
	if err := json.Unmarshal([]byte(get("/status")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Stuck) != 1 || st.Stuck[0].VMID != stuck || !strings.Contains(st.Stuck[0].Reason, "backing off") {
		t.Errorf("/status stuck %+v, want VM %d backing off", st.Stuck, stuck)
	}
	if m := get("/metrics"); !strings.Contains(m, "pve_autoscaler_stuck_vms 1") || !strings.Contains(m, `pve_autoscaler_workers{state="stuck"} 1`) {
		t.Errorf("/metrics does not count the stuck VM:\n%s", grepLines(m, "stuck"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
