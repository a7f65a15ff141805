package scaler

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

type decideCase struct {
	name   string
	nodes  []Node
	pend   []PendingPod
	ops    []Operation
	hosts  []Host
	stale  bool
	policy func(*Policy)
	hist   History

	wantAdd    int
	wantRemove string // node name; "" for none
	wantCodes  []Code // reason codes of the actions, in order
	wantHolds  []Code // each must be among the holds or notes
	notHolds   []Code // none may be among them
	wantCur    int    // -1: don't check
	check      func(*testing.T, Plan)
}

func ago(d time.Duration) time.Time { return t0.Add(-d) }

// ordered gives w0..w2 increasing creation times (w2 newest) and optional
// changes to the newest node, for the eligibility cases.
func ordered(cpu float64, newest ...nodeOpt) []Node {
	ns := workers(3, cpu, cpu)
	for i := range ns {
		ns[i].Created = ago(time.Duration(3-i) * time.Hour)
	}
	for _, o := range newest {
		o(&ns[2])
	}
	return ns
}

func decideCases() []decideCase {
	return []decideCase{
		// --- scale-up on utilization ---
		{name: "cpu high adds workers sized to the target", nodes: workers(2, 90, 50), wantAdd: 2, wantCodes: []Code{CodeCPUHigh}, wantCur: 2},
		{name: "memory high adds workers sized to the target", nodes: workers(2, 50, 90), wantAdd: 1, wantCodes: []Code{CodeMemoryHigh}},
		{name: "cpu exactly at the threshold scales up", nodes: workers(3, 80, 50), wantAdd: 2, wantCodes: []Code{CodeCPUHigh}},
		{name: "cpu just below the threshold does nothing", nodes: workers(3, 79.9, 50), wantHolds: []Code{CodeNotLow, CodeNoScaleUpNeed}},
		{name: "custom target sizes the step", nodes: workers(2, 90, 50), policy: func(p *Policy) { p.CPU.Target = 70 }, wantAdd: 1},
		{name: "up window not yet held", nodes: workers(2, 90, 50), policy: func(p *Policy) { p.UpWindow = time.Minute }, wantHolds: []Code{CodeUpWindow},
			notHolds: []Code{CodeNoScaleUpNeed}, // CPU 90% is not "under 80%"
			check: func(t *testing.T, p Plan) {
				if !p.Next.CPUHighSince.Equal(t0) {
					t.Errorf("CPUHighSince = %v, want %v", p.Next.CPUHighSince, t0)
				}
			}},
		{name: "up window held long enough", nodes: workers(2, 90, 50), policy: func(p *Policy) { p.UpWindow = time.Minute },
			hist: History{CPUHighSince: ago(61 * time.Second)}, wantAdd: 2, wantCodes: []Code{CodeCPUHigh}},
		{name: "cooldown after scale-up holds a utilization scale-up", nodes: workers(2, 90, 50),
			policy: func(p *Policy) { p.CooldownAfterUp = 5 * time.Minute }, hist: History{LastScaleUp: ago(100 * time.Second)},
			wantHolds: []Code{CodeCooldownUp}, notHolds: []Code{CodeNoScaleUpNeed}},
		{name: "memory held by the up window is not said to be under its threshold", nodes: workers(2, 50, 90), policy: func(p *Policy) { p.UpWindow = time.Minute },
			wantHolds: []Code{CodeUpWindow}, notHolds: []Code{CodeNoScaleUpNeed}},
		{name: "without pending-pod scaling the note says nothing of pods", nodes: workers(3, 50, 50), policy: func(p *Policy) { p.PendingPods = false },
			wantHolds: []Code{CodeNoScaleUpNeed}, check: func(t *testing.T, p Plan) {
				for _, r := range append(p.Holds, p.Notes...) {
					if r.Code == CodeNoScaleUpNeed && strings.Contains(r.Message, "pod") {
						t.Errorf("note %q speaks of pods it did not look at", r.Message)
					}
				}
			}},
		{name: "cooldown after scale-up has passed", nodes: workers(2, 90, 50),
			policy: func(p *Policy) { p.CooldownAfterUp = 5 * time.Minute }, hist: History{LastScaleUp: ago(301 * time.Second)}, wantAdd: 2},
		{name: "VMs in flight cover the need", nodes: workers(2, 90, 50), ops: provisions(2), wantHolds: []Code{CodeInFlight, CodeProvisioning},
			notHolds: []Code{CodeNoScaleUpNeed}, wantCur: 4},
		{name: "VMs in flight cover part of the need", nodes: workers(2, 90, 50), ops: provisions(1), wantAdd: 1, wantCur: 3},
		{name: "max step caps the step", nodes: workers(2, 100, 50), policy: func(p *Policy) { p.MaxStep = 1 }, wantAdd: 1, wantHolds: []Code{CodeMaxStep}},
		{name: "max workers reached", nodes: workers(6, 95, 50), wantHolds: []Code{CodeMaxWorkers, CodeCapacityWanted}, notHolds: []Code{CodeUnderutilized}},
		{name: "max workers caps the step", nodes: workers(5, 95, 50), wantAdd: 1, wantHolds: []Code{CodeMaxWorkers}},
		{name: "host room caps the step", nodes: workers(3, 100, 50), hosts: []Host{{Name: "pve1", Online: true, MemoryFree: 20 * gi}},
			wantAdd: 2, wantHolds: []Code{CodeHostRoom}},
		{name: "no host room", nodes: workers(2, 90, 50), hosts: []Host{{Name: "pve1", Online: true, MemoryFree: 10 * gi}},
			wantHolds: []Code{CodeHostRoom, CodeCapacityWanted}},
		{name: "offline hosts give no room", nodes: workers(2, 90, 50),
			hosts:   []Host{{Name: "pve1", Online: false, MemoryFree: 100 * gi}, {Name: "pve2", Online: true, MemoryFree: 12 * gi}},
			wantAdd: 1, wantHolds: []Code{CodeHostRoom}},
		{name: "unknown host room is noted, not capped", nodes: workers(2, 90, 50), wantAdd: 2, wantHolds: []Code{CodeHostsUnknown}},
		{name: "control-plane nodes are not workers", nodes: append(workers(2, 90, 50), worker("cp", 0, 0, controlPlane)), wantAdd: 2, wantCur: 2},
		{name: "cordoned nodes leave the utilization set", nodes: append(workers(2, 90, 50), worker("c", 0, 0, cordoned)), wantAdd: 2, wantCur: 3},

		// --- minimum and schedules ---
		{name: "below the minimum", nodes: workers(1, 50, 50), wantAdd: 1, wantCodes: []Code{CodeBelowMin}},
		{name: "no workers at all", nodes: nil, wantAdd: 2, wantCodes: []Code{CodeBelowMin}, wantHolds: []Code{CodeNoCapacity}},
		{name: "stale metrics still bring the count to the minimum", nodes: workers(1, 50, 50), stale: true, wantAdd: 1, wantHolds: []Code{CodeMetricsStale}},
		{name: "schedule raises the minimum in its window", nodes: workers(2, 50, 50),
			policy:  func(p *Policy) { p.Schedules = []Schedule{win("fri", time.Friday, 11*60, 13*60, 4)} },
			wantAdd: 2, wantCodes: []Code{CodeScheduleMin}, wantHolds: []Code{CodeScheduleActive}},
		{name: "schedule applies its lead time before the window", nodes: workers(2, 50, 50),
			policy: func(p *Policy) {
				p.Schedules = []Schedule{win("fri", time.Friday, 12*60+5, 14*60, 4)}
				p.ScheduleLead = 10 * time.Minute
			}, wantAdd: 2, wantCodes: []Code{CodeScheduleMin}},
		{name: "schedule outside its window and lead", nodes: workers(2, 50, 50),
			policy: func(p *Policy) {
				p.Schedules = []Schedule{win("fri", time.Friday, 13*60, 14*60, 4)}
				p.ScheduleLead = 10 * time.Minute
			}, notHolds: []Code{CodeScheduleActive}},
		{name: "schedule running past midnight from the day before", nodes: workers(2, 50, 50),
			policy: func(p *Policy) { p.Schedules = []Schedule{win("night", time.Thursday, 22*60, 12*60+30, 3)} }, wantAdd: 1},
		{name: "schedule in another time zone", nodes: workers(2, 50, 50),
			policy: func(p *Policy) {
				// 12:00 UTC is 13:00 in Berlin in November.
				p.Location = time.FixedZone("CET", 3600)
				p.Schedules = []Schedule{win("fri", time.Friday, 13*60, 14*60, 3)}
			}, wantAdd: 1},

		// --- scale-up for pending pods ---
		{name: "pending pods sized by first-fit decreasing", nodes: workers(2, 50, 50), pend: pending(5, 1500, gi, ago(time.Minute)),
			policy: func(p *Policy) { p.PendingGrace = 30 * time.Second }, wantAdd: 3, wantCodes: []Code{CodePendingPods}},
		{name: "pending pods mixed sizes pack tightly", nodes: workers(2, 50, 50),
			pend: append(pending(2, 2500, gi, ago(time.Minute)), pending(2, 1500, gi, ago(time.Minute))...), wantAdd: 2},
		{name: "pending pods that fit a worker newer than them wait for the scheduler",
			nodes: []Node{worker("old", 50, 50), worker("new", 0, 0, created(ago(10*time.Second)))}, pend: pending(2, 1500, gi, ago(time.Minute)),
			wantHolds: []Code{CodeNewNodes}},
		{name: "pending pods older than every worker still scale up",
			nodes: []Node{worker("old", 0, 0)}, pend: pending(2, 1500, gi, ago(time.Minute)), policy: func(p *Policy) { p.MinWorkers = 1 },
			wantAdd: 1, wantCodes: []Code{CodePendingPods}},
		{name: "pending pods within the grace", nodes: workers(3, 50, 50), pend: pending(5, 1500, gi, ago(10*time.Second)),
			policy: func(p *Policy) { p.PendingGrace = 30 * time.Second }, wantHolds: []Code{CodePendingGrace, CodePendingHold}},
		{name: "pending trigger disabled", nodes: workers(2, 50, 50), pend: pending(5, 1500, gi, ago(time.Hour)),
			policy: func(p *Policy) { p.PendingPods = false }},
		{name: "pending pod larger than a worker", nodes: workers(2, 50, 50), pend: pending(1, 5000, gi, ago(time.Hour)),
			wantHolds: []Code{CodeNoWorkerFits}},
		{name: "pending pods counted against VMs in flight", nodes: workers(2, 50, 50), ops: provisions(1), pend: pending(4, 1500, gi, ago(time.Minute)), wantAdd: 1},
		{name: "pending pods scale up with stale metrics", nodes: workers(2, 50, 50), stale: true, pend: pending(2, 1500, gi, ago(time.Minute)),
			wantAdd: 1, wantHolds: []Code{CodeMetricsStale}},
		{name: "pending pods are not held by the cooldown after scale-up", nodes: workers(2, 50, 50), pend: pending(2, 1500, gi, ago(time.Minute)),
			policy: func(p *Policy) { p.CooldownAfterUp = 5 * time.Minute }, hist: History{LastScaleUp: ago(time.Minute)}, wantAdd: 1},
		{name: "failure cooldown holds every scale-up", nodes: workers(2, 50, 50), pend: pending(2, 1500, gi, ago(time.Minute)),
			policy: func(p *Policy) { p.CooldownAfterFailure = 5 * time.Minute }, hist: History{LastFailure: ago(time.Minute)},
			wantHolds: []Code{CodeCooldownFailure}},

		// --- scale-down ---
		{name: "low utilization removes the least utilized node",
			nodes:      []Node{worker("a", 20, 20), worker("b", 10, 10), worker("c", 25, 20)},
			wantRemove: "b", wantCodes: []Code{CodeUnderutilized, CodeCandidateSelection}},
		{name: "ties go to the newest node", nodes: ordered(10), wantRemove: "w2"},
		{name: "unmanaged nodes are never removed", nodes: workers(3, 10, 10, unmanaged), wantHolds: []Code{CodeNoCandidate}},
		{name: "an unmanaged node is skipped for a managed one",
			nodes:      []Node{worker("u", 5, 5, unmanaged), worker("m1", 10, 10), worker("m2", 10, 10, created(ago(time.Minute)))},
			wantRemove: "m2"},
		{name: "pve-autoscaler scale-down-disabled annotation", nodes: ordered(10, annotated(AnnotationScaleDownDisabled, "true")), wantRemove: "w1"},
		{name: "cluster-autoscaler scale-down-disabled annotation", nodes: ordered(10, annotated(AnnotationCAScaleDownDisabled, "true")), wantRemove: "w1"},
		{name: "pod with safe-to-evict=false", nodes: ordered(10, withPod(Pod{Name: "db", OwnerKind: "StatefulSet", Annotations: map[string]string{AnnotationSafeToEvict: "false"}})), wantRemove: "w1"},
		{name: "pod with do-not-disrupt=true", nodes: ordered(10, withPod(Pod{Name: "job", OwnerKind: "Job", Annotations: map[string]string{AnnotationDoNotDisrupt: "true"}})), wantRemove: "w1"},
		{name: "bare pod without a controller", nodes: ordered(10, withPod(Pod{Name: "bare"})), wantRemove: "w1"},
		{name: "pod with local storage", nodes: ordered(10, withPod(Pod{Name: "cache", OwnerKind: "ReplicaSet", LocalStorage: true})), wantRemove: "w1"},
		{name: "pod with local storage when allowed", nodes: ordered(10, withPod(Pod{Name: "cache", OwnerKind: "ReplicaSet", LocalStorage: true})),
			policy: func(p *Policy) { p.AllowLocalStorage = true }, wantRemove: "w2"},
		{name: "pod whose PDB allows no disruption", nodes: ordered(10, withPod(Pod{Name: "web", OwnerKind: "ReplicaSet", PDB: &PDBStatus{Name: "web", DisruptionsAllowed: 0}})), wantRemove: "w1"},
		{name: "pod whose PDB allows one disruption", nodes: ordered(10, withPod(Pod{Name: "web", OwnerKind: "ReplicaSet", PDB: &PDBStatus{Name: "web", DisruptionsAllowed: 1}})), wantRemove: "w2"},
		{name: "DaemonSet and mirror pods do not block", nodes: ordered(10,
			withPod(Pod{Name: "ds", OwnerKind: OwnerDaemonSet, LocalStorage: true, Annotations: map[string]string{AnnotationSafeToEvict: "false"}}),
			withPod(Pod{Name: "static", OwnerKind: OwnerNode})), wantRemove: "w2"},
		{name: "at the minimum", nodes: workers(2, 10, 10), wantHolds: []Code{CodeAtMin}},
		{name: "schedule minimum holds scale-down", nodes: workers(3, 10, 10),
			policy: func(p *Policy) { p.Schedules = []Schedule{win("fri", time.Friday, 11*60, 13*60, 3)} }, wantHolds: []Code{CodeAtMin}},
		{name: "cooldown after scale-down", nodes: workers(3, 10, 10), policy: func(p *Policy) { p.CooldownAfterDown = 5 * time.Minute },
			hist: History{LastScaleDown: ago(time.Minute)}, wantHolds: []Code{CodeCooldownDown}},
		{name: "cooldown after scale-up holds scale-down", nodes: workers(3, 10, 10), policy: func(p *Policy) { p.CooldownAfterUp = 5 * time.Minute },
			hist: History{LastScaleUp: ago(time.Minute)}, wantHolds: []Code{CodeCooldownUp}},
		{name: "cooldown after a failure holds scale-down", nodes: workers(3, 10, 10), policy: func(p *Policy) { p.CooldownAfterFailure = 5 * time.Minute },
			hist: History{LastFailure: ago(time.Minute)}, wantHolds: []Code{CodeCooldownFailure}},
		{name: "down window not yet held", nodes: workers(3, 10, 10), policy: func(p *Policy) { p.DownWindow = 5 * time.Minute },
			wantHolds: []Code{CodeDownWindow},
			check: func(t *testing.T, p Plan) {
				if !p.Next.LowSince.Equal(t0) {
					t.Errorf("LowSince = %v, want %v", p.Next.LowSince, t0)
				}
			}},
		{name: "down window held long enough", nodes: workers(3, 10, 10), policy: func(p *Policy) { p.DownWindow = 5 * time.Minute },
			hist: History{LowSince: ago(6 * time.Minute)}, wantRemove: "w0"},
		{name: "only memory low is not low", nodes: workers(3, 50, 10), wantHolds: []Code{CodeNotLow}},
		{name: "stale metrics hold scale-down", nodes: workers(3, 10, 10), stale: true, wantHolds: []Code{CodeMetricsStale}},
		{name: "more than 3 managed nodes unready", nodes: append(workers(6, 10, 10), workers(4, 0, 0, notReady)...),
			policy: func(p *Policy) { p.MaxWorkers = 12 }, wantHolds: []Code{CodeUnready}},
		{name: "more than 45% of managed nodes unready", nodes: append(workers(2, 10, 10), workers(2, 0, 0, notReady)...),
			policy: func(p *Policy) { p.MinWorkers = 1 }, wantHolds: []Code{CodeUnready}},
		{name: "a NotReady worker does not count toward min_workers for a removal", nodes: append(workers(2, 10, 10), worker("down", 0, 0, notReady)),
			wantHolds: []Code{CodeAtMin}, notHolds: []Code{CodeUnready}},
		{name: "one of four managed nodes unready is healthy enough", nodes: append(workers(3, 10, 10), worker("down", 0, 0, notReady)),
			wantRemove: "w0", notHolds: []Code{CodeUnready}},
		{name: "projection over the up threshold minus margin", nodes: workers(3, 49, 10),
			policy: func(p *Policy) { p.CPU = Threshold{Up: 70, Down: 50} }, wantHolds: []Code{CodeProjection}},
		{name: "projection under the up threshold minus margin", nodes: workers(4, 49, 10),
			policy: func(p *Policy) { p.CPU = Threshold{Up: 80, Down: 50} }, wantRemove: "w0"},
		{name: "pods that fit nowhere else", nodes: workers(3, 10, 10, func(n *Node) {
			n.Requests = Resources{MilliCPU: 3500, Memory: gi}
			n.Pods[0].Requests = n.Requests
		}), wantHolds: []Code{CodePodsDoNotFit}},
		{name: "pending pods no worker can run hold no scale-down", nodes: workers(3, 10, 10), pend: pending(1, 5000, gi, ago(time.Hour)),
			wantRemove: "w0", wantHolds: []Code{CodeNoWorkerFits}, notHolds: []Code{CodePendingHold}},
		{name: "provisioning holds scale-down", nodes: workers(3, 10, 10), ops: provisions(1), wantHolds: []Code{CodeProvisioning}, wantCur: 4},
		{name: "a removal in progress holds the next and is not counted", nodes: workers(4, 10, 10),
			ops: []Operation{{Kind: OpRemove, Node: "w3", VMID: 5003}}, wantHolds: []Code{CodeRemoving}, wantCur: 3},
		// --- consolidation (consolidate.go) ---
		{name: "an unneeded worker waits for twice the down window", nodes: workers(4, 50, 50),
			policy: func(p *Policy) { p.DownWindow = 5 * time.Minute }, wantHolds: []Code{CodeNotLow, CodeUnneededClock},
			check: func(t *testing.T, p Plan) {
				if len(p.Next.Unneeded) != 4 || !p.Next.Unneeded["w0"].Equal(t0) || !p.NextCheck.Equal(t0.Add(10*time.Minute)) {
					t.Errorf("unneeded %v, next check %v; want all four since now, a check in 10m", p.Next.Unneeded, p.NextCheck)
				}
			}},
		{name: "an unneeded worker goes after twice the down window", nodes: workers(4, 50, 50),
			policy: func(p *Policy) { p.DownWindow = 5 * time.Minute }, hist: History{Unneeded: map[string]time.Time{"w0": ago(10 * time.Minute)}},
			wantRemove: "w0", wantCodes: []Code{CodeUnneeded, CodeCandidateSelection}},
		{name: "an unneeded clock older than its Node starts over", nodes: workers(4, 50, 50),
			policy: func(p *Policy) { p.DownWindow = 5 * time.Minute }, hist: History{Unneeded: map[string]time.Time{"w0": ago(2 * time.Hour)}},
			wantHolds: []Code{CodeUnneededClock}},
		{name: "a worker needed by the projection is not unneeded", nodes: workers(3, 50, 50),
			policy: func(p *Policy) { p.DownWindow = 5 * time.Minute }, hist: History{Unneeded: map[string]time.Time{"w0": ago(time.Hour)}},
			wantHolds: []Code{CodeProjection},
			check: func(t *testing.T, p Plan) {
				if p.Next.Unneeded != nil {
					t.Errorf("unneeded %v, want none", p.Next.Unneeded)
				}
			}},
		{name: "an empty worker goes after the down window", nodes: append(workers(3, 50, 50), worker("e", 1, 1, func(n *Node) {
			n.Pods = []Pod{{Name: "ds", OwnerKind: OwnerDaemonSet, Requests: n.Requests}}
		})), policy: func(p *Policy) { p.DownWindow = 5 * time.Minute }, hist: History{Empty: map[string]time.Time{"e": ago(5 * time.Minute)}},
			wantRemove: "e", wantCodes: []Code{CodeEmpty, CodeCandidateSelection}},
		{name: "a busy cluster keeps its empty worker", nodes: append(workers(3, 72, 50), worker("e", 1, 1, func(n *Node) { n.Pods = nil })),
			policy: func(p *Policy) { p.DownWindow = 5 * time.Minute }, hist: History{Empty: map[string]time.Time{"e": ago(time.Hour)}},
			wantHolds: []Code{CodeProjection}},
		{name: "min_workers 0: the last worker goes when empty", nodes: []Node{worker("e", 2, 4, func(n *Node) {
			n.Pods = []Pod{{Name: "ds", OwnerKind: OwnerDaemonSet, Requests: n.Requests}}
		})}, policy: func(p *Policy) { p.MinWorkers, p.DownWindow = 0, 5*time.Minute }, hist: History{Empty: map[string]time.Time{"e": ago(5 * time.Minute)}},
			wantRemove: "e", wantCodes: []Code{CodeEmpty, CodeCandidateSelection}},
		{name: "min_workers 0: the last worker stays while it runs a pod", nodes: workers(1, 2, 4),
			policy: func(p *Policy) { p.MinWorkers, p.DownWindow = 0, 5*time.Minute }, hist: History{LowSince: ago(time.Hour), Unneeded: map[string]time.Time{"w0": ago(time.Hour)}},
			wantHolds: []Code{CodeProjection}},
		{name: "above max removes even when busy", nodes: workers(8, 50, 50), wantRemove: "w0", wantCodes: []Code{CodeAboveMax, CodeCandidateSelection}},
		{name: "a registered, not yet Ready provision still holds pending pods",
			nodes: append(workers(2, 50, 50), worker("new0", 0, 0, notReady)), ops: provisions(1), pend: pending(2, 1500, gi, ago(time.Minute)),
			policy:    func(p *Policy) { p.MinWorkers = 1 }, // two Ready workers are above it
			wantHolds: []Code{CodeInFlight, CodeProvisioning}, wantCur: 3},
		// --- stuck provisions (issue 15): against max_workers, never capacity ---
		{name: "a stuck provision holds no pending pod", nodes: workers(2, 50, 50), ops: stuck(provisions(1)),
			pend: pending(4, 1500, gi, ago(time.Minute)), wantAdd: 2, wantCodes: []Code{CodePendingPods}, wantCur: 3,
			notHolds: []Code{CodeInFlight},
			check: func(t *testing.T, p Plan) {
				if p.Workers.Stuck != 1 || p.Workers.Provisioning != 0 {
					t.Errorf("workers = %+v, want 1 stuck and 0 provisioning", p.Workers)
				}
			}},
		{name: "a stuck provision counts against max_workers", nodes: workers(2, 50, 50), ops: stuck(provisions(2)),
			policy: func(p *Policy) { p.MaxWorkers = 5 }, pend: pending(4, 1500, gi, ago(time.Minute)),
			wantAdd: 1, wantHolds: []Code{CodeMaxWorkers}, wantCur: 4},
		{name: "stuck provisions over a lowered max_workers remove no serving worker", nodes: workers(3, 50, 50), ops: stuck(provisions(2)),
			policy: func(p *Policy) { p.MaxWorkers = 4 }, wantCur: 5, notHolds: []Code{CodeAboveMax},
			check: func(t *testing.T, p Plan) {
				if _, ok := p.Removal(); ok {
					t.Errorf("a serving worker removed for stuck provisions:\n%s", dump(p))
				}
			}},
		{name: "a stuck provision does not meet the minimum", nodes: workers(1, 50, 50), ops: stuck(provisions(1)),
			wantAdd: 1, wantCodes: []Code{CodeBelowMin}, wantCur: 2},
		{name: "a stuck provision holds no scale-down and keeps no worker", nodes: workers(3, 10, 10), ops: stuck(provisions(1)),
			wantRemove: "w0", notHolds: []Code{CodeProvisioning}, wantCur: 4},
		{name: "a provision whose node registered counts once",
			nodes: append(workers(2, 50, 50), worker("new0", 0, 0, notReady)), ops: provisions(1), wantCur: 3,
			check: func(t *testing.T, p Plan) {
				if p.Workers.Provisioning != 0 || p.Workers.NotReady != 1 {
					t.Errorf("workers = %+v, want 0 provisioning and 1 not ready", p.Workers)
				}
			}},
	}
}

func win(name string, day time.Weekday, start, end, minWorkers int) Schedule {
	s := Schedule{Name: name, Start: start, End: end, MinWorkers: minWorkers}
	s.Days[day] = true
	return s
}

func TestDecide(t *testing.T) {
	for _, tc := range decideCases() {
		t.Run(tc.name, func(t *testing.T) {
			p := testPolicy()
			if tc.policy != nil {
				tc.policy(&p)
			}
			snap := Snapshot{Nodes: tc.nodes, PendingPods: tc.pend, Operations: tc.ops, Hosts: tc.hosts, Metrics: MetricsState{Stale: tc.stale}}
			plan := Decide(snap, p, tc.hist, t0)

			if got := plan.Added(); got != tc.wantAdd {
				t.Errorf("added %d workers, want %d\n%s", got, tc.wantAdd, dump(plan))
			}
			rm, ok := plan.Removal()
			if got := rm.Node; ok != (tc.wantRemove != "") || got != tc.wantRemove {
				t.Errorf("removed %q, want %q\n%s", got, tc.wantRemove, dump(plan))
			}
			if tc.wantCodes != nil {
				var got []Code
				for _, a := range plan.Actions {
					for _, r := range a.Reasons {
						got = append(got, r.Code)
					}
				}
				if !slices.Equal(got, tc.wantCodes) {
					t.Errorf("action reasons %v, want %v\n%s", got, tc.wantCodes, dump(plan))
				}
			}
			for _, c := range tc.wantHolds {
				if !plan.Held(c) {
					t.Errorf("no hold or note %q\n%s", c, dump(plan))
				}
			}
			for _, c := range tc.notHolds {
				if plan.Held(c) {
					t.Errorf("unexpected hold or note %q\n%s", c, dump(plan))
				}
			}
			if tc.wantCur > 0 && plan.Workers.Current != tc.wantCur {
				t.Errorf("current workers %d, want %d", plan.Workers.Current, tc.wantCur)
			}
			for _, a := range plan.Actions {
				if len(a.Reasons) == 0 {
					t.Errorf("action %+v has no reason", a)
				}
			}
			for _, r := range append(append([]Reason{}, plan.Holds...), plan.Notes...) {
				if r.Code == "" || r.Message == "" {
					t.Errorf("reason without code or message: %+v", r)
				}
			}
			if plan.Workers.Desired < plan.Workers.Min || plan.Workers.Desired > plan.Workers.Max {
				t.Errorf("desired %d outside [%d, %d]", plan.Workers.Desired, plan.Workers.Min, plan.Workers.Max)
			}
			if tc.check != nil {
				tc.check(t, plan)
			}
		})
	}
	if n := len(decideCases()); n < 40 {
		t.Errorf("only %d cases", n)
	}
}

func dump(p Plan) string {
	var b strings.Builder
	for _, a := range p.Actions {
		b.WriteString("  action " + string(a.Kind) + "\n")
		for _, r := range a.Reasons {
			b.WriteString("    " + string(r.Code) + ": " + r.Message + "\n")
		}
	}
	for _, r := range p.Holds {
		b.WriteString("  hold " + string(r.Code) + ": " + r.Message + "\n")
	}
	for _, r := range p.Notes {
		b.WriteString("  note " + string(r.Code) + ": " + r.Message + "\n")
	}
	return b.String()
}

// TestAwaitScheduler: a pending pod that fits a worker registered after it
// was marked unschedulable is counted there, not toward new workers, until
// the scheduler has had its chance: NewWorkerRetry after the worker turned
// Ready, or a refusal written after that which counts the worker.
func TestAwaitScheduler(t *testing.T) {
	s := func(d time.Duration) time.Time { return t0.Add(d * time.Second) }
	gpu := "0/%d nodes are available: 1 Insufficient nvidia.com/gpu."
	type await struct {
		pod, node string
		until     time.Time
	}
	cases := []struct {
		name    string
		since   time.Time // the pod's PodScheduled lastTransitionTime
		newer   []Node    // workers besides "old" (registered an hour ago, half full)
		msg     string
		msgTime time.Time
		alone   bool // no "old" worker: the new one is the only Node

		wantAdd   int
		wantAwait []await
		wantNext  time.Time
		wantCodes []Code
	}{
		{name: "same second, just Ready: held until the scheduler had its retry",
			since: s(-2), newer: []Node{fresh("new", s(-2), s(-2))}, msg: fmt.Sprintf(gpu, 1), msgTime: s(-2), alone: true,
			wantAwait: []await{{"p0", "new", s(13)}}, wantNext: s(13), wantCodes: []Code{CodeNewNodes}},
		{name: "same second, Ready for the whole retry: counted for a new worker",
			since: s(-15), newer: []Node{fresh("new", s(-15), s(-15))}, msg: fmt.Sprintf(gpu, 1), msgTime: s(-15), alone: true,
			wantAdd: 1, wantCodes: []Code{CodeNewNodesTried, CodePendingPods}},
		{name: "same second, the hold ends at the retry's end to the second",
			since: s(-15), newer: []Node{fresh("new", s(-15), s(-14))},
			wantAwait: []await{{"p0", "new", s(1)}}, wantNext: s(1)},
		{name: "same second, refused after the worker turned Ready and counting it",
			since: s(-3), newer: []Node{fresh("new", s(-3), s(-3))}, msg: fmt.Sprintf(gpu, 2), msgTime: s(-2),
			wantAdd: 1, wantCodes: []Code{CodeNewNodesTried}},
		{name: "same second, the refusal written in the second the worker turned Ready proves nothing",
			since: s(-3), newer: []Node{fresh("new", s(-3), s(-3))}, msg: fmt.Sprintf(gpu, 2), msgTime: s(-3),
			wantAwait: []await{{"p0", "new", s(12)}}},
		{name: "joined strictly after: held",
			since: s(-60), newer: []Node{fresh("new", s(-5), s(-4))}, msg: fmt.Sprintf(gpu, 1), msgTime: s(-60),
			wantAwait: []await{{"p0", "new", s(11)}}, wantNext: s(11)},
		{name: "joined strictly after, Ready unknown: held from its registration",
			since: s(-60), newer: []Node{fresh("new", s(-5), time.Time{})},
			wantAwait: []await{{"p0", "new", s(10)}}},
		{name: "joined strictly after, Ready for the whole retry",
			since: s(-60), newer: []Node{fresh("new", s(-20), s(-16))},
			wantAdd: 1, wantCodes: []Code{CodeNewNodesTried}},
		{name: "joined strictly after, refused there",
			since: s(-60), newer: []Node{fresh("new", s(-5), s(-4))}, msg: "0/2 nodes are available: 1 node(s) didn't have free ports for the requested pod ports, 1 Insufficient cpu.", msgTime: s(-1),
			wantAdd: 1, wantCodes: []Code{CodeNewNodesTried}},
		{name: "a refusal whose count leaves the worker out: the scheduler had not seen it",
			since: s(-60), newer: []Node{fresh("new", s(-5), s(-4))}, msg: fmt.Sprintf(gpu, 1), msgTime: s(-1),
			wantAwait: []await{{"p0", "new", s(11)}}},
		{name: "two workers in one second: a count of one of them proves nothing for either",
			since: s(-60), newer: []Node{fresh("a", s(-5), s(-4)), fresh("b", s(-5), s(-4))}, msg: fmt.Sprintf(gpu, 2), msgTime: s(-1),
			wantAwait: []await{{"p0", "a", s(11)}}},
		{name: "refused on one newer worker, still held on a newer one",
			since: s(-60), newer: []Node{fresh("a", s(-10), s(-9)), fresh("b", s(-2), s(-1))}, msg: fmt.Sprintf(gpu, 2), msgTime: s(-1),
			wantAwait: []await{{"p0", "b", s(14)}}},
		{name: "a message of another kind proves nothing",
			since: s(-60), newer: []Node{fresh("new", s(-5), s(-4))}, msg: "running PreBind plugin \"VolumeBinding\": binding volumes: timed out", msgTime: s(-1),
			wantAwait: []await{{"p0", "new", s(11)}}},
		{name: "a worker registered before the pod is no reason to wait",
			since: s(-60), newer: []Node{fresh("new", s(-61), s(-61))},
			wantAdd: 1, wantCodes: []Code{CodePendingPods}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := testPolicy()
			p.MinWorkers = 1
			var nodes []Node
			if !tc.alone {
				nodes = append(nodes, worker("old", 50, 50))
			}
			nodes = append(nodes, tc.newer...)
			pend := pending(1, 1500, gi, tc.since)
			pend[0].Message, pend[0].MessageTime = tc.msg, tc.msgTime
			plan := Decide(Snapshot{Nodes: nodes, PendingPods: pend}, p, History{}, t0)
			if got := plan.Added(); got != tc.wantAdd {
				t.Errorf("added %d, want %d\n%s", got, tc.wantAdd, dump(plan))
			}
			var got []await
			for _, a := range plan.Awaiting {
				got = append(got, await{a.Name, a.Node, a.Until})
			}
			if !slices.Equal(got, tc.wantAwait) {
				t.Errorf("awaiting %v, want %v\n%s", got, tc.wantAwait, dump(plan))
			}
			if !tc.wantNext.IsZero() && !plan.NextCheck.Equal(tc.wantNext) {
				t.Errorf("next check %s, want %s", plan.NextCheck, tc.wantNext)
			}
			if len(tc.wantAwait) > 0 && (!plan.Held(CodeNewNodes) || plan.NextCheck.IsZero()) {
				t.Errorf("awaiting pods without the %s note or a next check\n%s", CodeNewNodes, dump(plan))
			}
			for _, c := range tc.wantCodes {
				if !plan.Held(c) && !slices.ContainsFunc(plan.Actions, func(a Action) bool {
					return slices.ContainsFunc(a.Reasons, func(r Reason) bool { return r.Code == c })
				}) {
					t.Errorf("no %s\n%s", c, dump(plan))
				}
			}
		})
	}
}

// fresh is an empty worker registered at created that turned Ready at ready.
func fresh(name string, registered, ready time.Time) Node {
	n := worker(name, 0, 0, created(registered))
	n.ReadySince = ready
	return n
}
