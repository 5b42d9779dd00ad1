package sched

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/anthill-project/anthill/internal/modsig"
	"github.com/anthill-project/anthill/protocol"
)

// A WASM task's class is what the strategy queues it under: one queue per
// module, so a strategy stays kind-blind and a slave's view lists exactly
// the modules it may run. The prefix holds a NUL byte, which no kind may
// contain (see checkKinds), so a class never equals a kind.
const classPrefix = "\x00wasm/"

func classOf(kind, module string) string {
	if module == "" {
		return kind
	}
	return classPrefix + module
}

// module is a WASM module the scheduler holds tasks of, or has held since
// it started: its class stays in the views of the slaves that may run it
// until ForgetModule.
type module struct {
	hash       string
	class      Class
	signers    []string // public keys, canonical text, of valid signatures
	unfinished int      // tasks naming it that are not final
}

// ModuleTasks counts the unfinished tasks that name the module: while
// there are any, the master must keep the module's bytes.
func (s *Scheduler) ModuleTasks(hash string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.modules[hash]; m != nil {
		return m.unfinished
	}
	return 0
}

// ModuleChanged tells the scheduler that the module's signers changed (a
// new signature was uploaded): slaves that trust only some keys may now
// run it.
func (s *Scheduler) ModuleChanged(hash string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.modules[hash]
	if m == nil {
		return
	}
	m.signers = s.signersOf(hash)
	for sl := range s.slaves {
		s.offerLocked(sl, m)
	}
	s.pumpLocked()
}

// ForgetModule drops a module no unfinished task names from every view.
// It reports false, changing nothing, while one does.
func (s *Scheduler) ForgetModule(hash string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.modules[hash]
	if m == nil {
		return true
	}
	if m.unfinished > 0 {
		return false
	}
	delete(s.modules, hash)
	for sl := range s.slaves {
		sl.view.Classes = without(sl.view.Classes, m.class)
		sl.held.Classes = without(sl.held.Classes, m.class)
	}
	return true
}

// checkModules refuses a batch naming a module the master does not have.
// Called without the lock: Options.Module reads the master's registry.
func (s *Scheduler) checkModules(tasks []protocol.NewTask) *protocol.TaskError {
	var seen string
	for i := range tasks {
		h := tasks[i].Module
		if h == "" || h == seen {
			continue
		}
		if _, ok := s.opts.Module(h); !ok {
			return &protocol.TaskError{Index: i, Field: protocol.FieldModule, Code: protocol.CodeInvalidTask,
				Problem: fmt.Sprintf("%s is not a module uploaded to this master (upload it first: Modules.Upload)", h)}
		}
		seen = h
	}
	return nil
}

// signersOf asks the master for a module's signers; a module it does not
// know (deleted under a task reloaded from the store) has none.
func (s *Scheduler) signersOf(hash string) []string {
	keys, _ := s.opts.Module(hash)
	return canonicalKeys(keys)
}

// canonicalKeys re-encodes valid public keys, so keys compare as strings
// however they were pasted; invalid ones are dropped.
func canonicalKeys(keys []string) []string {
	var out []string
	for _, k := range keys {
		if pub, err := modsig.ParsePublic(k); err == nil {
			out = append(out, modsig.PublicText(pub))
		}
	}
	return out
}

// moduleLocked returns the module of a task being added, registering it
// and offering it to the slaves that may run it the first time.
func (s *Scheduler) moduleLocked(hash string) *module {
	m := s.modules[hash]
	if m != nil {
		return m
	}
	// The master's registry answers from memory or a read transaction;
	// it never calls back into the scheduler, so holding s.mu is safe.
	m = &module{hash: hash, class: s.classLocked(classOf(protocol.KindWASM, hash)), signers: s.signersOf(hash)}
	s.modules[hash] = m
	for sl := range s.slaves {
		s.offerLocked(sl, m)
	}
	return m
}

// mayRun reports whether sl runs WASM and trusts m's code: with trust
// keys, only a module one of them signed.
func (sl *Slave) mayRun(m *module) bool {
	if !sl.wasm {
		return false
	}
	if len(sl.trust) == 0 {
		return true
	}
	for _, k := range m.signers {
		if slices.Contains(sl.trust, k) {
			return true
		}
	}
	return false
}

// offerLocked puts m's class in sl's views as far as sl may run it and
// holds it.
func (s *Scheduler) offerLocked(sl *Slave, m *module) {
	if !sl.mayRun(m) {
		return
	}
	sl.view.Classes = with(sl.view.Classes, m.class)
	if sl.holds[m.hash] {
		sl.held.Classes = with(sl.held.Classes, m.class)
	}
}

// Held records the modules a slave holds now (its Modules frame): its
// view of held modules is rebuilt, so the next dispatches prefer them.
func (s *Scheduler) Held(sl *Slave, hashes []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setHeldLocked(sl, hashes)
	s.dispatchLocked(sl, false)
}

func (s *Scheduler) setHeldLocked(sl *Slave, hashes []string) {
	sl.holds = make(map[string]bool, len(hashes))
	for _, h := range hashes {
		sl.holds[h] = true
	}
	sl.held.Classes = s.kindClassesLocked(sl.kinds)
	for _, h := range hashes {
		if m := s.modules[h]; m != nil && sl.mayRun(m) {
			sl.held.Classes = with(sl.held.Classes, m.class)
		}
	}
}

// with inserts v into the sorted set ks.
func with[T cmp.Ordered](ks []T, v T) []T {
	i, found := slices.BinarySearch(ks, v)
	if found {
		return ks
	}
	return slices.Insert(ks, i, v)
}

// without removes v from the sorted set ks.
func without[T cmp.Ordered](ks []T, v T) []T {
	if i, found := slices.BinarySearch(ks, v); found {
		return slices.Delete(ks, i, i+1)
	}
	return ks
}
