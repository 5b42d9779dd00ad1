package trust

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
)

// The saboteur simulator: a fleet of volunteers, some of whom lie, runs
// tasks under the scheduler's rules with the real policy (Policy, Decide,
// More, Credit), deterministically. docs/TRUST.md's table is its output.
//
// The rules it models, as master/sched applies them:
//   - a task goes first to a volunteer drawn at random; a suspect (caught,
//     not trusted again) is given it only with probability 1/(1+invalid),
//     else another is drawn: the scheduler gives caught volunteers work
//     that rarely;
//   - adaptive: a volunteer the app trusts runs the task as a single copy
//     unless Replicate says check; a check, and any task of an untrusted
//     volunteer, forks into n copies on distinct volunteers;
//   - ringers: a check of a trusted volunteer is a ringer (a task whose
//     answer is known from an earlier quorum) beside the task, which is
//     believed; without a known answer it forks as above;
//   - a fork's copies answer in a random order; after each, Decide; at a
//     quorum the copies not yet answered are not needed (their compute is
//     counted as spent, their volunteers not judged); without one, More
//     copies are issued, up to 2n+1, then the task fails "no quorum".
//   - saboteurs collude: every lie about a task is the same wrong value.

var update = flag.Bool("update", false, "rewrite docs/TRUST.md's table from the simulator")

type simMode int

const (
	modeNone simMode = iota
	modeFixed
	modeAdaptive
	modeRingers
)

var modeNames = [...]string{"none (1 copy)", "fixed 2-of-3", "adaptive (2 of 2)", "adaptive + ringers"}

type simConfig struct {
	volunteers int
	f, p       float64 // fraction of saboteurs, their lie probability
	patient    bool    // saboteurs tell the truth until trusted
	mode       simMode
	tasks      int
	policy     Policy
	seed       uint64
}

// simResult counts the settled half of the run (the second half of the
// tasks) apart from the whole.
type simResult struct {
	tasks, wrong, failed, runs int // whole run
	sTasks, sWrong, sRuns      int // settled half
}

func (r simResult) redundancy() float64 {
	return float64(r.sRuns-r.sTasks) / float64(r.sTasks)
}

func (r simResult) wrongRate() float64 { return float64(r.sWrong) / float64(r.sTasks) }

type simVolunteer struct {
	saboteur bool
	rec      Record
}

// ringer is a known answer: a task and the value its quorum accepted.
type ringer struct{ id, value int }

type sim struct {
	cfg     simConfig
	rng     *rand.Rand
	vols    []simVolunteer
	ringers []ringer // answers a quorum established
}

func simulate(cfg simConfig) simResult {
	s := &sim{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.seed, 0x5ab07e))}
	s.vols = make([]simVolunteer, cfg.volunteers)
	for i := range int(float64(cfg.volunteers) * cfg.f) {
		s.vols[i].saboteur = true
	}
	var r simResult
	for id := 1; id <= cfg.tasks; id++ {
		runs, value, ok := s.task(id)
		settled := id > cfg.tasks/2
		r.tasks++
		r.runs += runs
		if !ok {
			r.failed++
		} else if value != id {
			r.wrong++
		}
		if settled {
			r.sTasks++
			r.sRuns += runs
			if ok && value != id {
				r.sWrong++
			}
		}
	}
	return r
}

// answer is what volunteer v returns for task id (a ringer is a task).
func (s *sim) answer(v, id int) int {
	vol := &s.vols[v]
	// A patient saboteur waits for trust where there is trust to earn.
	patient := s.cfg.patient && (s.cfg.mode == modeAdaptive || s.cfg.mode == modeRingers)
	if !vol.saboteur || patient && !s.cfg.policy.Trusted(&vol.rec) {
		return id
	}
	if s.rng.Float64() < s.cfg.p {
		return -id
	}
	return id
}

// pick draws a volunteer not in taken, giving suspects work rarely.
func (s *sim) pick(taken []int) int {
	for {
		v := s.rng.IntN(len(s.vols))
		if slices.Contains(taken, v) {
			continue
		}
		rec := &s.vols[v].rec
		if s.cfg.policy.Suspect(rec) && s.rng.Float64() >= 1/(1+float64(rec.Invalid)) {
			continue
		}
		return v
	}
}

// task runs one task and returns the answers computed for it (copies and
// ringers), the accepted value, and false if it failed with no quorum.
func (s *sim) task(id int) (runs, value int, ok bool) {
	pol := s.cfg.policy
	first := s.pick(nil)
	rec := &s.vols[first].rec
	switch s.cfg.mode {
	case modeNone:
		return 1, s.answer(first, id), true
	case modeFixed:
		return s.fork(id, first, 3, 2, nil)
	}
	if pol.Trusted(rec) {
		check := pol.Replicate(rec, s.rng.Float64())
		if !check {
			pol.OnTrust(rec, 1)
			return 1, s.answer(first, id), true
		}
		if s.cfg.mode == modeRingers && len(s.ringers) > 0 {
			// The task waits for the ringer: believed if it passes,
			// replicated if not, its answer the first copy's.
			v := s.answer(first, id)
			known := s.ringers[s.rng.IntN(len(s.ringers))]
			if s.answer(first, known.id) == known.value {
				pol.Valid(rec, 1)
				pol.OnTrust(rec, 1)
				return 2, v, true
			}
			pol.Invalid(rec)
			runs, value, ok := s.fork(id, first, 2, 2, &v)
			return 2 + runs, value, ok
		}
	}
	return s.fork(id, first, 2, 2, nil)
}

// fork runs task id as n copies, the first on first, with quorum m. With
// answered, the first copy's answer is known already (and not counted
// again).
func (s *sim) fork(id, first, n, m int, answered *int) (runs, value int, ok bool) {
	pol := s.cfg.policy
	bound := min(2*n+1, 16)
	vols := []int{first}
	for len(vols) < n {
		vols = append(vols, s.pick(vols))
	}
	var votes []Vote
	var voters []int
	if answered != nil {
		votes = append(votes, Vote{OK: true, Output: fmt.Append(nil, *answered), Claim: 1}) // a suspect's: no weight
		voters = append(voters, first)
		vols = append(vols, s.pick(vols))
	}
	next := len(votes) // copies answer in the order drawn, itself random
	for {
		for next < len(vols) {
			v := vols[next]
			next++
			runs++
			w := 1
			if pol.Suspect(&s.vols[v].rec) {
				w = 0
			}
			votes = append(votes, Vote{OK: true, Output: fmt.Append(nil, s.answer(v, id)), Weight: w, Claim: 1})
			voters = append(voters, v)
			d := Decide(votes, m, Equal)
			if d.Canonical < 0 {
				continue
			}
			for i, vi := range voters {
				rec := &s.vols[vi].rec
				if d.Agrees[i] {
					pol.Valid(rec, Credit(votes, d, i))
				} else {
					pol.Invalid(rec)
				}
			}
			runs += len(vols) - next // running when the quorum came: spent, not judged
			var val int
			fmt.Sscan(string(votes[d.Canonical].Output), &val)
			// The master knows only what the quorum agreed on: a pool
			// entry may be a lie colluders agreed on.
			if d.Best >= 2 {
				r := ringer{id, val}
				if len(s.ringers) < 64 {
					s.ringers = append(s.ringers, r)
				} else {
					s.ringers[s.rng.IntN(64)] = r
				}
			}
			return runs, val, true
		}
		d := Decide(votes, m, Equal)
		more := More(d, 0, m)
		if more > bound-len(vols) {
			return runs, 0, false
		}
		for range more {
			vols = append(vols, s.pick(vols))
		}
	}
}

// simPolicy is the scheduler's default policy.
var simPolicy = Policy{}

func TestSaboteurAims(t *testing.T) {
	tasks := 200_000
	if testing.Short() || raceEnabled {
		tasks = 60_000
	}
	base := simConfig{volunteers: 100, f: 0.2, p: 0.5, tasks: tasks, policy: simPolicy, seed: 1}
	none, fixed, ringers := base, base, base
	none.mode, fixed.mode, ringers.mode = modeNone, modeFixed, modeRingers
	rn, rf, rr := simulate(none), simulate(fixed), simulate(ringers)
	t.Logf("none: wrong %.2e; fixed: wrong %.2e redundancy %.3f; ringers: wrong %.2e redundancy %.3f",
		rn.wrongRate(), rf.wrongRate(), rf.redundancy(), rr.wrongRate(), rr.redundancy())
	if w := rn.wrongRate(); w < 0.08 || w > 0.12 {
		t.Errorf("without replication %.3f of results are wrong; want about f·p = 0.1", w)
	}
	if r := rf.redundancy(); r < 1.9 {
		t.Errorf("fixed 2-of-3 costs %.2f redundant copies a task; want about 2", r)
	}
	if w, r := rr.wrongRate(), rr.redundancy(); w > 1e-4 || r > 0.10 {
		t.Errorf("adaptive with ringers, settled: wrong %.2e, redundancy %.3f; the aim is ≤ 1e-4 at ≤ 0.10", w, r)
	}
}

func TestSimulatorIsDeterministic(t *testing.T) {
	cfg := simConfig{volunteers: 30, f: 0.2, p: 0.5, tasks: 5000, mode: modeRingers, seed: 7}
	if a, b := simulate(cfg), simulate(cfg); a != b {
		t.Fatalf("two runs of one configuration differ: %+v and %+v", a, b)
	}
}

// table is docs/TRUST.md's table: every mode over a sweep of f and p.
func table(tasks int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "100 volunteers, %d tasks each run, measured over the second half (settled); seed 1.\n\n", tasks)
	b.WriteString("| saboteurs f | lie p | saboteurs |")
	for _, m := range modeNames {
		fmt.Fprintf(&b, " %s: wrong | redundancy |", m)
	}
	b.WriteString("\n|---:|---:|---|")
	for range modeNames {
		b.WriteString("---:|---:|")
	}
	b.WriteString("\n")
	for _, patient := range []bool{false, true} {
		for _, f := range []float64{0.05, 0.2, 0.4} {
			for _, p := range []float64{0.1, 0.5, 1} {
				kind := "naive"
				if patient {
					if p != 0.5 {
						continue
					}
					kind = "patient"
				}
				fmt.Fprintf(&b, "| %.0f %% | %.0f %% | %s |", 100*f, 100*p, kind)
				for m := range modeNames {
					r := simulate(simConfig{volunteers: 100, f: f, p: p, patient: patient, mode: simMode(m), tasks: tasks, policy: simPolicy, seed: 1})
					fmt.Fprintf(&b, " %s | %.3f |", rate(r), r.redundancy())
				}
				b.WriteString("\n")
			}
		}
	}
	return b.String()
}

// rate prints a settled wrong-result rate; failed tasks (no quorum) are
// reported beside it when there were any.
func rate(r simResult) string {
	s := "0"
	if r.sWrong > 0 {
		s = fmt.Sprintf("%.1e", r.wrongRate())
	}
	if r.failed > 0 {
		s += fmt.Sprintf(" (%d no quorum)", r.failed)
	}
	return s
}

const (
	tableBegin = "<!-- sim:begin -->\n"
	tableEnd   = "<!-- sim:end -->"
)

func TestTrustTable(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("the table's sweep takes seconds (twenty times that under the race detector); the plain run checks it")
	}
	got := table(100_000)
	doc, err := os.ReadFile("../../docs/TRUST.md")
	if err != nil {
		t.Fatal(err)
	}
	i, j := bytes.Index(doc, []byte(tableBegin)), bytes.Index(doc, []byte(tableEnd))
	if i < 0 || j < i {
		t.Fatalf("docs/TRUST.md lacks the markers %q and %q", tableBegin, tableEnd)
	}
	old := string(doc[i+len(tableBegin) : j])
	if old == got {
		return
	}
	if !*update {
		t.Fatalf("docs/TRUST.md's table is not what the simulator gives; run go test ./master/trust -run TestTrustTable -update\nwant:\n%s", got)
	}
	out := append(append(append([]byte{}, doc[:i+len(tableBegin)]...), got...), doc[j:]...)
	if err := os.WriteFile("../../docs/TRUST.md", out, 0o644); err != nil {
		t.Fatal(err)
	}
}
