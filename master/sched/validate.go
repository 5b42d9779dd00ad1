package sched

import (
	"context"
	"time"

	"github.com/anthill-project/anthill/master/trust"
	"github.com/anthill-project/anthill/protocol"
)

// Validators: an app may name a WASM module that says whether two
// results agree (floating-point tolerance, canonical ordering), in place
// of byte equality. Running one takes from microseconds to milliseconds,
// too long for the scheduler's lock, so a quorum that needs a comparison
// it has not made asks for it and waits: the comparisons run on a
// goroutine of their own, and the quorum is judged again when they are
// in. Byte-equal results agree without asking, so a validator runs only
// when copies differ.

// validatorTimeout bounds one comparison.
const validatorTimeout = 10 * time.Second

// pair names two copies, the lower id first.
type pair struct{ a, b uint64 }

func pairOf(x, y uint64) pair {
	if x > y {
		x, y = y, x
	}
	return pair{x, y}
}

// agreeLocked is the agreement of p's quorum, given its voters in the
// order of the votes: byte equality, then the app's validator through
// the group's cache. A pair not compared yet counts as disagreeing and is
// noted in missing.
func (s *Scheduler) agreeLocked(p *task, voters []*task, votes []trust.Vote, missing *[]pair) trust.Agree {
	module := p.app.conf.Validator
	if module == "" || s.opts.Agree == nil {
		return trust.Equal
	}
	g := p.group
	index := make(map[*trust.Vote]*task, len(votes))
	for i := range votes {
		index[&votes[i]] = voters[i]
	}
	return func(a, b *trust.Vote) bool {
		if trust.Equal(a, b) {
			return true
		}
		if a.OK != b.OK {
			return false // a result never agrees with an error
		}
		k := pairOf(index[a].id, index[b].id)
		agree, ok := g.compared[k]
		if !ok {
			*missing = append(*missing, k)
		}
		return agree
	}
}

// compareLocked runs the comparisons p's quorum is missing, unless a run
// is under way already; judgeLocked is called again once they are in.
func (s *Scheduler) compareLocked(p *task, missing []pair) {
	g := p.group
	if g.comparing {
		return
	}
	g.comparing = true
	byID := map[uint64]*task{}
	for _, c := range g.copies {
		byID[c.id] = c
	}
	type job struct {
		k    pair
		a, b []byte
	}
	jobs := make([]job, 0, len(missing))
	for _, k := range missing {
		jobs = append(jobs, job{k, byID[k.a].result, byID[k.b].result})
	}
	module := p.app.conf.Validator
	s.validating.Add(1)
	go func() {
		defer s.validating.Done()
		results := make(map[pair]bool, len(jobs))
		for _, j := range jobs {
			ctx, cancel := context.WithTimeout(s.bg, validatorTimeout)
			agree, err := s.opts.Agree(ctx, module, j.a, j.b)
			cancel()
			if err != nil {
				// A validator that fails says nothing agrees: the quorum
				// waits for more copies, or ends in "no quorum".
				s.opts.Logger.Warn("validator failed; the two results count as disagreeing",
					"app", p.app.name, "module", module, "task", p.id, "err", err)
			}
			results[j.k] = agree && err == nil
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		g.comparing = false
		if p.group != g || s.bg.Err() != nil {
			// The task ended meanwhile (canceled), or the scheduler
			// stopped, the comparisons cut short: judged after a restart.
			return
		}
		for k, v := range results {
			g.compared[k] = v
		}
		var ch change
		s.judgeLocked(p, s.opts.Now(), &ch)
		s.refillLocked(nil)
		s.commitChangeLocked(&ch)
	}()
}

// checkValidatorLocked refuses a validator the master cannot run.
func (s *Scheduler) checkValidatorLocked(module string) error {
	switch {
	case module == "":
		return nil
	case s.opts.Agree == nil:
		return &ConfigError{"validator", "this master runs no validators"}
	case !protocol.ValidModuleHash(module):
		return &ConfigError{"validator", "must be a module's hash: 64 lowercase hex digits"}
	}
	if _, ok := s.opts.Module(module); !ok {
		return &ConfigError{"validator", "no module " + module + " was uploaded (Modules.Upload)"}
	}
	return nil
}

// Validators counts the apps whose validator is module: while one does,
// the module is in use.
func (s *Scheduler) Validators(module string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.confs {
		if c.Validator == module {
			n++
		}
	}
	return n
}
