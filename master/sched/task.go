package sched

import (
	"time"

	"github.com/anthill-project/anthill/master/store"
	"github.com/anthill-project/anthill/protocol"
)

// task is one task's life on the master. Its fields are the scheduler's
// own: store.Record is only how a task is written down (recordOf) and read
// back (taskOf), so the disk format can change without touching
// scheduling.
type task struct {
	// What the application asked for; fixed once accepted.
	id          uint64
	app         *App
	kind        string
	module      string // the WASM module's hash, when kind is "wasm"
	key         string
	priority    int32
	timeout     time.Duration
	maxAttempts uint32
	createdAt   time.Time
	payload     []byte // dropped from memory once final: the store keeps it
	// quiet marks a task submitted through the operator API: no
	// application connection acknowledges it, so it is written
	// acknowledged once final.
	quiet bool
	// replicas and quorum are what the task asked for (0: its app's
	// defaults); on a copy, what its task forked with.
	replicas, quorum uint8

	// Where it is in its life.
	state      protocol.State
	attempts   uint32
	startedAt  time.Time // of the last attempt; zero if never started
	finishedAt time.Time // zero unless final
	ranOn      string    // the slave of the last attempt
	result     []byte
	err        string
	acked      bool
	history    []Attempt // the most recent attempts, oldest first

	// Scheduling state, rebuilt after a restart.
	q         QueuedTask // its entry in the queue, set when first pushed
	queued    bool       // q is in the queue
	slave     *Slave     // running on it, while state is running
	lease     uint64     // the running attempt's lease: its result must echo it
	seq       uint64     // dispatch order of the running attempt, for DetachSlave
	size      int        // payload bytes, counted in the window of the slaves holding it
	deadline  time.Time  // lease end while running
	retryAt   time.Time  // while waiting for a retry
	retrySlot int        // index+1 in the retry heap; 0 when not waiting
	settled   bool       // final, and that is durable
	counted   bool       // counted by the queue quotas (see queuedLocked)
	push      *push      // the batch it came in, until acknowledged

	// Replication (see replicas.go).
	group   *group  // a forked task's copies, until the verdict
	parent  *task   // on a copy: the task it is a copy of
	ringer  *ringer // on a ringer: the known answer; never stored
	onTrust bool    // the running attempt is a trusted volunteer's single copy
	// A trusted volunteer's single copy checked by a ringer waits for it:
	// check is the ringer (on the task; checks on the ringer), held the
	// result that waits, checkFailed says the ringer failed first.
	check, checks *task
	holding       bool
	held          []byte
	heldClaim     time.Duration
	checkFailed   bool
	remote        string        // on a copy: the address of the volunteer it ran on
	claim         time.Duration // on a copy: the CPU time its result claims
}

// Outcome is how an attempt ended.
type Outcome uint8

// Outcomes of an attempt.
const (
	OutcomeRunning   Outcome = iota // not ended yet
	OutcomeDone                     // the handler succeeded
	OutcomeFailed                   // the handler returned an error
	OutcomeTimeout                  // the handler ran past the task's timeout
	OutcomeLost                     // the slave disconnected or its lease expired
	OutcomeReturned                 // the stopping slave handed the task back; no attempt spent
	OutcomeCanceled                 // the master abandoned the run: canceled, or finished by another attempt's result
	OutcomeCanonical                // a copy whose result the quorum accepted
	OutcomeInvalid                  // a copy whose result disagreed with the canonical one
	OutcomeNotNeeded                // a copy canceled because a quorum was reached without it
)

var outcomeNames = [...]string{"running", "done", "failed", "timeout", "lost", "returned", "canceled", "canonical", "invalid", "not needed"}

// String is the outcome's lower-case name, as the operator API shows it.
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// The store's outcome bytes are its own; these tables are the only place
// that knows both.
var (
	toStore = [...]store.Outcome{
		OutcomeRunning: store.OutcomeRunning, OutcomeDone: store.OutcomeDone,
		OutcomeFailed: store.OutcomeFailed, OutcomeTimeout: store.OutcomeTimeout,
		OutcomeLost: store.OutcomeLost, OutcomeReturned: store.OutcomeReturned,
		OutcomeCanceled: store.OutcomeCanceled, OutcomeCanonical: store.OutcomeCanonical,
		OutcomeInvalid: store.OutcomeInvalid, OutcomeNotNeeded: store.OutcomeNotNeeded,
	}
	fromStore = map[store.Outcome]Outcome{}
)

func init() {
	for o, so := range toStore {
		fromStore[so] = Outcome(o)
	}
}

// Attempt is one run of a task on a slave.
type Attempt struct {
	Slave   string
	Started time.Time
	Ended   time.Time // zero while the attempt runs
	Outcome Outcome
	Err     string // at most store.MaxAttemptErr bytes
}

// taskOf rebuilds a task from its record.
func taskOf(r *store.Record, a *App) *task {
	t := &task{
		id: r.ID, app: a, kind: r.Kind, module: r.Module, key: r.Key, priority: r.Priority, timeout: r.Timeout,
		maxAttempts: r.MaxAttempts, createdAt: r.CreatedAt, payload: r.Payload, quiet: r.Quiet,
		state: r.State, attempts: r.Attempts, startedAt: r.StartedAt, finishedAt: r.FinishedAt,
		ranOn: r.Slave, result: r.Result, err: r.Err, acked: r.Acked, replicas: r.Replicas, quorum: r.Quorum,
	}
	t.history = historyOf(r.History)
	return t
}

// historyOf reads a stored history; nil stays nil.
func historyOf(h []store.Attempt) []Attempt {
	if len(h) == 0 {
		return nil
	}
	out := make([]Attempt, len(h))
	for i, a := range h {
		out[i] = Attempt{Slave: a.Slave, Started: a.Started, Ended: a.Ended, Outcome: fromStore[a.Outcome], Err: a.Err}
	}
	return out
}

// pushLocked queues t, which is pending; a task already queued stays
// queued once, or it could be handed out twice.
func (s *Scheduler) pushLocked(t *task) {
	if t.queued {
		return
	}
	if t.q.ID == 0 {
		t.q = s.entryLocked(t)
	}
	t.queued = true
	s.queue.push(t.q)
	if t.parent != nil {
		s.queuedCopies[t.id] = t
	}
}

// entryLocked is what the strategy sees of t; it never changes.
func (s *Scheduler) entryLocked(t *task) QueuedTask {
	return QueuedTask{
		ID: t.id, Key: keyHash(t.key), Class: s.classLocked(classOf(t.kind, t.module)), App: t.app.ref,
		Priority: t.priority, Urgent: t.parent != nil,
	}
}

// unpushLocked takes t out of the queue, if it is there.
func (s *Scheduler) unpushLocked(t *task) {
	if t.queued {
		t.queued = false
		s.queue.remove(t.q)
		delete(s.queuedCopies, t.id)
	}
}

// keyHash is the FNV-1a hash of a task's key, never 0 for a key: a
// strategy routes by key without holding the string.
func keyHash[T string | []byte](key T) uint64 {
	if len(key) == 0 {
		return 0
	}
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	return max(h, 1)
}

// putNew writes a new task into b, its payload included: the only write
// of the payload, which never changes.
func (s *Scheduler) putNew(b *store.Batch, t *task) { s.write(b, t, true) }

// put writes t's state into b; a large stored payload stays as it is, so
// a requeue or retry of a large task writes a small record. A final task
// whose payload memory dropped is written only by AckTask and
// DeleteTask, which keep or remove the record whole.
func (s *Scheduler) put(b *store.Batch, t *task) { s.write(b, t, false) }

// write writes t into b. The history is converted into the scheduler's
// scratch slice: the batch encodes at once, so one slice serves every
// write made under the lock and the hot path allocates nothing for it.
func (s *Scheduler) write(b *store.Batch, t *task, payload bool) {
	r := store.Record{
		ID: t.id, App: t.app.name, Kind: t.kind, Module: t.module, Key: t.key, Priority: t.priority, Timeout: t.timeout,
		MaxAttempts: t.maxAttempts, Attempts: t.attempts, State: t.state, CreatedAt: t.createdAt,
		StartedAt: t.startedAt, FinishedAt: t.finishedAt, Slave: t.ranOn, Payload: t.payload,
		Result: t.result, Err: t.err, Acked: t.acked, Quiet: t.quiet, Replicas: t.replicas, Quorum: t.quorum,
	}
	if t.parent != nil {
		// A copy's payload is its task's, stored there.
		r.Parent, r.Payload = t.parent.id, nil
	}
	if len(t.history) > 0 {
		h := s.scratch[:0]
		for _, a := range t.history {
			h = append(h, store.Attempt{Slave: a.Slave, Started: a.Started, Ended: a.Ended, Outcome: toStore[a.Outcome], Err: a.Err})
		}
		r.History, s.scratch = h, h
	}
	if payload {
		b.PutTask(&r)
	} else {
		b.PutState(&r) // a small payload rides along; a large one stays
	}
}
