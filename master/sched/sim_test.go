package sched

import (
	"container/heap"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// A deterministic simulator of a volunteer fleet, on a virtual clock,
// driving the strategies' real code through the scheduler's queue: the
// figures of docs/STRATEGIES.md come from it. What it models: slaves of
// a speed each (work units a second), one slot each; tasks of a work each,
// submitted by apps at set times; hosts that leave mid-task (the work done
// is lost, the task requeued) and come back. What it leaves out: the
// network, the store, leases (a host that leaves is noticed at once).
//
// go test ./master/sched -run TestSimulated -v -sim.table prints the
// tables.

var simTable = flag.Bool("sim.table", false, "print the simulator's tables (docs/STRATEGIES.md)")

type simSlave struct {
	speed float64
	view  SlaveView
	task  *simTask // running, nil when idle
	from  float64  // when task began
	gone  bool
}

type simTask struct {
	q      QueuedTask
	app    int
	work   float64
	submit float64
	end    float64
}

type simEvent struct {
	at    float64
	kind  int // simArrive, simFinish, simLeave, simJoin, simSample
	slave int
	task  *simTask
	run   int // the slave's run the finish is of: a leave ends a run early
	seq   int // ties break in the order scheduled
}

const (
	simArrive = iota
	simFinish
	simLeave
	simJoin
	simSample
)

type simEvents []simEvent

func (e simEvents) Len() int { return len(e) }
func (e simEvents) Less(i, j int) bool {
	if e[i].at != e[j].at {
		return e[i].at < e[j].at
	}
	return e[i].seq < e[j].seq
}
func (e simEvents) Swap(i, j int) { e[i], e[j] = e[j], e[i] }
func (e *simEvents) Push(x any)   { *e = append(*e, x.(simEvent)) }
func (e *simEvents) Pop() any {
	old := *e
	x := old[len(old)-1]
	*e = old[:len(old)-1]
	return x
}

// simScenario is a fleet and the work given it.
type simScenario struct {
	name    string
	speeds  []float64
	weights []int // per app; the apps are 1..len(weights)
	// arrivals: at time at, app submits n tasks of work each.
	arrivals []simArrival
	// churn: the share of hosts that leave, at a random time in the
	// first leaveWithin seconds, and come back after away seconds.
	churn       float64
	leaveWithin float64
	away        float64
	// horizon stops the run (0: when every task is done); fairness is
	// sampled up to it.
	horizon float64
	seed    uint64
}

type simArrival struct {
	at   float64
	app  int
	n    int
	work float64
}

// simResult is what one run measured.
type simResult struct {
	makespan  float64 // the last task's end
	mean, p99 float64 // task latency: submit to end
	busy      float64 // slave-seconds spent on work that counted
	wasted    float64 // slave-seconds lost to hosts that left mid-task
	done      int
	shares    []float64 // per app: mean share of the slots while every app had work queued
	jain      float64   // Jain's index of the shares over their targets
	deviation float64   // the largest |share - target| / target
}

func simulate(t testing.TB, sc simScenario, strategy string) simResult {
	st, err := NewStrategy(strategy)
	if err != nil {
		t.Fatal(err)
	}
	q := newQueue(st)
	keeper, _ := st.(SlotKeeper)
	if w, ok := st.(Weigher); ok {
		for a, wt := range sc.weights {
			w.Weigh(AppRef(a+1), wt)
		}
	}
	rng := rand.New(rand.NewPCG(sc.seed, 7))
	slaves := make([]*simSlave, len(sc.speeds))
	runs := make([]int, len(slaves))
	var ev simEvents
	seq := 0
	at := func(e simEvent) {
		seq++
		e.seq = seq
		heap.Push(&ev, e)
	}
	for i, sp := range sc.speeds {
		slaves[i] = &simSlave{speed: sp, view: SlaveView{Name: fmt.Sprint("s", i), Classes: []Class{ck}}}
		if rng.Float64() < sc.churn {
			leave := rng.Float64() * sc.leaveWithin
			at(simEvent{at: leave, kind: simLeave, slave: i})
			at(simEvent{at: leave + sc.away, kind: simJoin, slave: i})
		}
	}
	for _, a := range sc.arrivals {
		at(simEvent{at: a.at, kind: simArrive, task: &simTask{app: a.app, work: a.work, q: QueuedTask{ID: uint64(a.n)}}})
	}
	if sc.horizon > 0 {
		for s := 1.0; s <= sc.horizon; s++ {
			at(simEvent{at: s, kind: simSample})
		}
	}

	var res simResult
	var latencies []float64
	byID := map[uint64]*simTask{} // the queued and running, by id
	nextID := uint64(1)
	queued := make([]int, len(sc.weights)+1)
	held := make([]int, len(sc.weights)+1)
	shareSum := make([]float64, len(sc.weights)+1)
	samples := 0
	start := func(i int, now float64) {
		sl := slaves[i]
		qt, ok := q.next(&sl.view)
		if !ok {
			return
		}
		tk := byID[qt.ID]
		queued[tk.app]--
		held[tk.app]++
		if keeper != nil {
			keeper.Took(qt)
		}
		sl.task, sl.from = tk, now
		runs[i]++
		at(simEvent{at: now + tk.work/sl.speed, kind: simFinish, slave: i, task: tk, run: runs[i]})
	}
	idle := func(now float64) {
		for i, sl := range slaves {
			if !sl.gone && sl.task == nil && !q.empty() {
				start(i, now)
			}
		}
	}
	free := func(sl *simSlave) {
		tk := sl.task
		held[tk.app]--
		if keeper != nil {
			keeper.Freed(tk.q)
		}
		sl.task = nil
	}
	for ev.Len() > 0 {
		e := heap.Pop(&ev).(simEvent)
		now := e.at
		if sc.horizon > 0 && now > sc.horizon {
			break
		}
		switch e.kind {
		case simArrive:
			a := e.task
			for range int(a.q.ID) {
				tk := &simTask{app: a.app, work: a.work * (0.5 + rng.Float64()), submit: now}
				tk.q = QueuedTask{ID: nextID, Class: ck, App: AppRef(a.app)}
				nextID++
				byID[tk.q.ID] = tk
				q.push(tk.q)
				queued[tk.app]++
			}
			idle(now)
		case simFinish:
			sl := slaves[e.slave]
			if sl.task != e.task || runs[e.slave] != e.run {
				continue // the host left during this run
			}
			tk := sl.task
			free(sl)
			tk.end = now
			res.busy += now - sl.from
			res.done++
			res.makespan = max(res.makespan, now)
			latencies = append(latencies, now-tk.submit)
			delete(byID, tk.q.ID)
			start(e.slave, now)
		case simLeave:
			sl := slaves[e.slave]
			sl.gone = true
			if tk := sl.task; tk != nil {
				res.wasted += now - sl.from
				free(sl)
				runs[e.slave]++
				q.push(tk.q)
				queued[tk.app]++
				idle(now)
			}
		case simJoin:
			slaves[e.slave].gone = false
			idle(now)
		case simSample:
			every := true
			total := 0
			for a := 1; a < len(queued); a++ {
				every = every && queued[a] > 0
				total += held[a]
			}
			if every && total > 0 {
				samples++
				for a := 1; a < len(held); a++ {
					shareSum[a] += float64(held[a]) / float64(total)
				}
			}
		}
	}
	slices.Sort(latencies)
	if n := len(latencies); n > 0 {
		sum := 0.0
		for _, l := range latencies {
			sum += l
		}
		res.mean, res.p99 = sum/float64(n), latencies[min(n-1, int(math.Ceil(0.99*float64(n)))-1)]
	}
	if samples > 0 {
		wsum := 0
		for _, w := range sc.weights {
			wsum += w
		}
		var sx, sxx float64
		for a := 1; a < len(shareSum); a++ {
			share := shareSum[a] / float64(samples)
			target := float64(sc.weights[a-1]) / float64(wsum)
			res.shares = append(res.shares, share)
			x := share / target
			sx, sxx = sx+x, sxx+x*x
			res.deviation = max(res.deviation, math.Abs(share-target)/target)
		}
		res.jain = sx * sx / (float64(len(res.shares)) * sxx)
	}
	return res
}

// spread is n speeds from 1 down to 1/ratio, evenly on a log scale,
// shuffled by seed: a fleet from phones to workstations.
func spread(n int, ratio float64, seed uint64) []float64 {
	sp := make([]float64, n)
	for i := range sp {
		sp[i] = math.Pow(ratio, -float64(i)/float64(max(n-1, 1)))
	}
	rng := rand.New(rand.NewPCG(seed, 3))
	rng.Shuffle(n, func(i, j int) { sp[i], sp[j] = sp[j], sp[i] })
	return sp
}

// twoApps is ten minutes of two apps submitting every second, one ten
// times more than the other, both more than the fleet can run.
func twoApps(weights []int) simScenario {
	sc := simScenario{
		name:   fmt.Sprintf("two apps, load 10:1, weights %d:%d", weights[0], weights[1]),
		speeds: spread(200, 10, 1), weights: weights, horizon: 600, seed: 1,
	}
	for s := 0.0; s < 600; s++ {
		sc.arrivals = append(sc.arrivals, simArrival{at: s, app: 1, n: 100, work: 10}, simArrival{at: s, app: 2, n: 10, work: 10})
	}
	return sc
}

// A job on a fleet with a 10x speed spread where a tenth of the hosts
// leave mid-task: the baseline the strategies share for one app.
func churnJob() simScenario {
	return simScenario{
		name:   "one job of 5,000 tasks, 10x spread, 10% of hosts leave for 2 min",
		speeds: spread(100, 10, 2), weights: []int{1},
		arrivals: []simArrival{{at: 0, app: 1, n: 5000, work: 20}},
		churn:    0.1, leaveWithin: 600, away: 120, seed: 2,
	}
}

var simStrategies = []string{StrategyFIFO, StrategyPriority, StrategyFair}

// The fair strategy holds each app within 5 % of its weighted share over
// ten minutes at a 10:1 load, where fifo gives the smaller app what it
// submits, a tenth; every strategy finishes a job on a churning fleet.
func TestSimulatedStrategies(t *testing.T) {
	var table strings.Builder
	for _, weights := range [][]int{{1, 1}, {3, 1}} {
		sc := twoApps(weights)
		fmt.Fprintf(&table, "\n%s (%d slaves):\n\n| strategy | share of app 1 | share of app 2 | Jain's index | max deviation | mean latency |\n|---|---:|---:|---:|---:|---:|\n", sc.name, len(sc.speeds))
		for _, name := range simStrategies {
			r := simulate(t, sc, name)
			fmt.Fprintf(&table, "| %s | %.1f %% | %.1f %% | %.3f | %.1f %% | %.0f s |\n", name, 100*r.shares[0], 100*r.shares[1], r.jain, 100*r.deviation, r.mean)
			switch {
			case name == StrategyFair && r.deviation > 0.05:
				t.Errorf("%s, fair: shares %v, %.1f %% from the target (aim: 5 %%)", sc.name, r.shares, 100*r.deviation)
			case name == StrategyFIFO && weights[0] == 1 && r.deviation < 0.5:
				t.Errorf("%s, fifo: shares %v, only %.1f %% from the target: the scenario does not load one app ten times more", sc.name, r.shares, 100*r.deviation)
			}
		}
	}
	sc := churnJob()
	fmt.Fprintf(&table, "\n%s (%d slaves):\n\n| strategy | makespan | mean latency | p99 latency | wasted slave-time |\n|---|---:|---:|---:|---:|\n", sc.name, len(sc.speeds))
	for _, name := range simStrategies {
		r := simulate(t, sc, name)
		fmt.Fprintf(&table, "| %s | %.0f s | %.0f s | %.0f s | %.1f %% |\n", name, r.makespan, r.mean, r.p99, 100*r.wasted/(r.busy+r.wasted))
		if r.done != 5000 || r.wasted == 0 {
			t.Errorf("%s: %d of 5000 tasks done, %.0f slave-seconds wasted", name, r.done, r.wasted)
		}
	}
	if *simTable {
		t.Log(table.String())
	}
}

// The simulator is deterministic: the same scenario gives the same
// figures, so the tables in the docs can be made again.
func TestSimulatorIsDeterministic(t *testing.T) {
	a, b := simulate(t, churnJob(), StrategyFair), simulate(t, churnJob(), StrategyFair)
	if a.makespan != b.makespan || a.mean != b.mean || a.wasted != b.wasted {
		t.Fatalf("two runs differ: %+v and %+v", a, b)
	}
}
