package scaler

import (
	"testing"
	"time"
)

// TestNextCheck: a held condition tells the reconciler when it ripens, so
// a pod's grace or an up window is not rounded up to the next interval.
func TestNextCheck(t *testing.T) {
	p := testPolicy()
	p.PendingGrace = 30 * time.Second
	p.UpWindow = time.Minute

	// Two young pods: the earlier grace end wins.
	s := Snapshot{Nodes: workers(2, 50, 50)}
	s.PendingPods = append(pending(1, 4000, gi, t0.Add(-10*time.Second)), pending(1, 4000, gi, t0.Add(-20*time.Second))...)
	s.PendingPods[1].Name = "p-older"
	plan := Decide(s, p, History{}, t0)
	if want := t0.Add(10 * time.Second); !plan.NextCheck.Equal(want) || plan.Added() != 0 {
		t.Errorf("young pods: next check %s, added %d; want %s and none", plan.NextCheck, plan.Added(), want)
	}
	// At that moment the older pod is due and workers are added.
	plan = Decide(s, p, plan.Next, t0.Add(10*time.Second))
	if plan.Added() == 0 {
		t.Errorf("at the grace end nothing added: %+v", plan.Holds)
	}

	// CPU high for 20 s of a 60 s window: check again 40 s on.
	hot := Snapshot{Nodes: workers(2, 95, 50)}
	plan = Decide(hot, p, History{CPUHighSince: t0.Add(-20 * time.Second)}, t0)
	if want := t0.Add(40 * time.Second); !plan.NextCheck.Equal(want) {
		t.Errorf("up window: next check %s, want %s", plan.NextCheck, want)
	}

	// Nothing held: no early check.
	plan = Decide(Snapshot{Nodes: workers(2, 50, 50)}, p, History{}, t0)
	if !plan.NextCheck.IsZero() {
		t.Errorf("calm: next check %s, want none", plan.NextCheck)
	}
}

// TestCappedScaleUpContinues: a scale-up cut by max_nodes_per_step adds the
// rest at the next decision although the cooldown after scale-up runs, and
// nothing beyond it.
func TestCappedScaleUpContinues(t *testing.T) {
	p := testPolicy()
	p.MaxStep = 2
	p.MaxWorkers = 20
	p.CooldownAfterUp = 5 * time.Minute
	hot := Snapshot{Nodes: workers(2, 100, 50)}                           // 8 cores used; target 55% wants 14.5 cores: 2 more at least
	hot.Nodes[0].Usage.MilliCPU, hot.Nodes[1].Usage.MilliCPU = 8000, 8000 // 200%: usage as reported under overcommit
	first := Decide(hot, p, History{}, t0)
	if first.Added() != 2 || first.Next.UpOwed == 0 {
		t.Fatalf("first: added %d owed %d; want 2 and some owed (holds %+v)", first.Added(), first.Next.UpOwed, first.Holds)
	}
	owed := first.Next.UpOwed
	// A minute later, same load, the two in flight: the owed rest is added.
	hot.Operations = []Operation{{Kind: OpProvision, VMID: 6000}, {Kind: OpProvision, VMID: 6001}}
	second := Decide(hot, p, first.Next, t0.Add(time.Minute))
	if got := second.Added(); got != min(owed, p.MaxStep) {
		t.Fatalf("second: added %d, want the owed %d (capped at %d); holds %+v", got, owed, p.MaxStep, second.Holds)
	}
	// Once paid, the cooldown holds again.
	for i := range second.Added() {
		hot.Operations = append(hot.Operations, Operation{Kind: OpProvision, VMID: 6002 + i})
	}
	hot.Nodes[0].Usage.MilliCPU, hot.Nodes[1].Usage.MilliCPU = 16000, 16000 // even hotter
	third := Decide(hot, p, second.Next, t0.Add(2*time.Minute))
	if second.Next.UpOwed == 0 && (third.Added() != 0 || !third.Held(CodeCooldownUp)) {
		t.Fatalf("third: added %d during the cooldown with nothing owed; holds %+v", third.Added(), third.Holds)
	}
	// An uncapped scale-up owes nothing.
	p.MaxStep = 0
	if plan := Decide(Snapshot{Nodes: workers(2, 100, 50)}, p, History{}, t0); plan.Added() == 0 || plan.Next.UpOwed != 0 {
		t.Fatalf("uncapped: added %d owed %d", plan.Added(), plan.Next.UpOwed)
	}
}

// TestCooldownEndsWhenNewWorkersSettle: the cooldown after a scale-up holds
// utilization scale-ups only until the new workers have joined and had
// SettleTime to take load; scale-downs stay held for all of it.
func TestCooldownEndsWhenNewWorkersSettle(t *testing.T) {
	p := testPolicy()
	p.CooldownAfterUp = 10 * time.Minute
	h := History{LastScaleUp: t0.Add(-4 * time.Minute)}
	joinedAt := t0.Add(-30 * time.Second)
	hot := Snapshot{Nodes: append(workers(2, 95, 50), worker("new", 95, 50, created(joinedAt)))}
	hot.Nodes[2].VMID = 5009

	plan := Decide(hot, p, h, t0)
	if plan.Added() != 0 || !plan.Held(CodeCooldownUp) {
		t.Fatalf("30s after joining: added %d, holds %+v; want the cooldown", plan.Added(), plan.Holds)
	}
	if want := joinedAt.Add(SettleTime); !plan.NextCheck.Equal(want) {
		t.Errorf("next check %s, want %s (settled)", plan.NextCheck, want)
	}
	plan = Decide(hot, p, h, joinedAt.Add(SettleTime))
	if plan.Added() == 0 {
		t.Fatalf("settled and still hot: nothing added; holds %+v", plan.Holds)
	}
	// While one of the scale-up's workers is still on its way, it holds.
	hot.Operations = []Operation{{Kind: OpProvision, VMID: 5010}}
	if plan := Decide(hot, p, h, joinedAt.Add(SettleTime)); plan.Added() != 0 {
		t.Fatalf("a worker still in flight, yet %d added", plan.Added())
	}
	// Scale-down stays held for the whole cooldown.
	cold := Snapshot{Nodes: append(workers(2, 5, 5), worker("new", 5, 5, created(joinedAt)))}
	cold.Nodes[2].VMID = 5009
	if plan := Decide(cold, p, h, joinedAt.Add(2*SettleTime)); len(plan.Actions) != 0 {
		t.Fatalf("removal inside the cooldown after scale-up: %+v", plan.Actions)
	}
}

// TestNextCheckEndsTheSchedulerHold: a pod held on a just-joined worker
// wakes the decision when the hold ends, and that decision adds capacity.
func TestNextCheckEndsTheSchedulerHold(t *testing.T) {
	p := testPolicy()
	p.MinWorkers = 1
	s := Snapshot{Nodes: []Node{fresh("new", t0, t0)}, PendingPods: pending(1, 1500, gi, t0)}
	s.PendingPods[0].Message, s.PendingPods[0].MessageTime = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.", t0
	plan := Decide(s, p, History{}, t0)
	if want := t0.Add(NewWorkerRetry); plan.Added() != 0 || !plan.NextCheck.Equal(want) || len(plan.Awaiting) != 1 || !plan.Awaiting[0].Until.Equal(want) {
		t.Fatalf("joined in the pod's second: added %d, next check %s, awaiting %+v; want none, %s and the pod until then", plan.Added(), plan.NextCheck, plan.Awaiting, want)
	}
	plan = Decide(s, p, plan.Next, plan.NextCheck)
	if plan.Added() != 1 || len(plan.Awaiting) != 0 {
		t.Fatalf("at the next check: added %d, awaiting %+v; want 1 and none\n%s", plan.Added(), plan.Awaiting, dump(plan))
	}
}
