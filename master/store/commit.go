package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"go.etcd.io/bbolt"
)

// queueLen bounds the batches waiting for the committer; Commit blocks when
// it is full, which is the back-pressure a slow disk puts on the master.
const queueLen = 1024

// maxScratch is the AckTask copy buffer kept between transactions; a bigger
// one, grown by an unusual batch, is dropped.
const maxScratch = 1 << 20

type request struct {
	b    *Batch
	fn   func(*bbolt.Tx) error // a transaction of the store's own (see syncUpdate), committed alone
	done func(error)
}

// Commit queues b for the committer and returns at once, unless the queue
// is full. done (may be nil) is called with the commit's error once the
// transaction holding b is fsynced. The done callbacks are called in the
// order Commit was called, on the committer goroutine: they must be quick
// and must not call Commit or CommitWait. After Commit returns, the caller
// must not touch b until done has been called.
//
// After Close, done is called at once, on the caller's goroutine, with
// ErrClosed.
func (s *Store) Commit(b *Batch, done func(error)) {
	if err := s.enqueue(context.Background(), request{b: b, done: done}); err != nil && done != nil {
		done(err)
	}
}

// CommitWait commits b and waits until it is durable or ctx ends. On ctx's
// end it returns ctx.Err(), and b may still be committed later: it must not
// be reused.
func (s *Store) CommitWait(ctx context.Context, b *Batch) error {
	ch := make(chan error, 1)
	if err := s.enqueue(ctx, request{b: b, done: func(err error) { ch <- err }}); err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Store) enqueue(ctx context.Context, r request) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	select {
	case s.queue <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run is the committer. It waits for one request, then takes whatever else
// is already queued, without waiting for more, into the same transaction:
// while one fsync runs, the next group forms by itself, so the batch size
// follows the load and an idle store commits at once.
func (s *Store) run() {
	defer close(s.exited)
	debug.SetPanicOnFault(true) // see recoverCorrupt; this goroutine is ours
	var (
		group []request
		carry request // received but over the cap: opens the next group
		has   bool
		open  = true
	)
	for open || has {
		group = group[:0]
		if has {
			group, has = append(group, carry), false
			carry = request{}
		} else {
			r, ok := <-s.queue
			if !ok {
				return
			}
			group = append(group, r)
		}
		ops := group[0].b.Len()
	drain:
		for ops < s.maxOps && open && group[0].fn == nil {
			select {
			case r, ok := <-s.queue:
				if !ok {
					open = false
					break drain
				}
				n := r.b.Len()
				if r.fn != nil || ops+n > s.maxOps {
					carry, has = r, true
					break drain
				}
				ops += n
				group = append(group, r)
			default:
				break drain
			}
		}
		s.commit(group, ops)
		clear(group) // the callers may reuse their batches now
	}
}

// commit writes one group and reports to every request in it.
func (s *Store) commit(group []request, ops int) {
	if fn := group[0].fn; fn != nil {
		group[0].done(s.walUpdate(fn))
		return
	}
	var err error
	if ops > 0 {
		start := time.Now()
		var next uint64
		if s.wal != nil {
			next, err = s.walCommit(group, ops)
		} else {
			next, err = s.update(group)
		}
		elapsed := time.Since(start)
		if err == nil {
			if next > s.nextID.Load() {
				s.nextID.Store(next)
			}
			s.statsMu.Lock()
			s.stats.Commits++
			s.stats.Ops += uint64(ops)
			for _, r := range group {
				s.stats.Bytes += uint64(r.b.Bytes())
			}
			s.stats.LastBatchOps = ops
			s.stats.LastCommit = elapsed
			s.stats.TotalCommit += elapsed
			s.statsMu.Unlock()
		} else {
			err = fmt.Errorf("store %s: commit: %w", s.path, err)
		}
		if cap(s.scratch) > maxScratch {
			s.scratch = nil
		}
		s.scratch = s.scratch[:0]
	}
	for _, r := range group {
		if r.done != nil {
			r.done(err)
		}
	}
}

func (s *Store) update(group []request) (next uint64, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.dropMoves()
			err = fmt.Errorf("bbolt panicked, the file may be corrupt: %v", r)
		}
	}()
	err = s.db.Update(func(tx *bbolt.Tx) error {
		var err error
		next, err = s.apply(tx, group)
		return err
	})
	if err != nil {
		s.dropMoves()
		return next, err
	}
	s.applyMoves()
	return next, nil
}

// apply writes the group's changes in order. Keys and values are slices of
// the batches' buffers, which bbolt may keep until the commit: the batches
// are not handed back before then.
func (s *Store) apply(tx *bbolt.Tx, group []request) (uint64, error) {
	tasks := tx.Bucket(bucketTasks)
	tasks.FillPercent = tasksFillPercent
	payloads := tx.Bucket(bucketPayloads)
	payloads.FillPercent = tasksFillPercent
	pushes := tx.Bucket(bucketPushes)
	// One cursor for the zone map's reads: a Get would make a new one,
	// and grow its stack, each time.
	before := tasks.Cursor()
	ops := 0
	for _, r := range group {
		if r.b != nil {
			ops += len(r.b.ops)
		}
	}
	s.moves = slices.Grow(s.moves, ops)
	var next uint64
	for _, r := range group {
		b := r.b
		if b == nil {
			continue
		}
		for i := range b.ops {
			o := &b.ops[i]
			var err error
			switch o.kind {
			case opPutTask:
				if err = s.moved(before, b.key(o), b.record(o)); err != nil {
					break
				}
				if err = tasks.Put(b.key(o), b.record(o)); err != nil {
					break
				}
				// A new task: no payload of its id is stored yet.
				if p := b.payload(o); len(p) > 0 {
					err = payloads.Put(b.key(o), p)
				}
			case opPutState:
				// Every stored record is of format 3 (see migratePayloads):
				// the payload stays where it is.
				if err = s.moved(before, b.key(o), b.val(o)); err == nil {
					err = tasks.Put(b.key(o), b.val(o))
				}
			case opAckTask:
				err = s.ack(tasks, b.key(o))
			case opDeleteTask:
				if err = s.moved(before, b.key(o), nil); err != nil {
					break
				}
				if err = tasks.Delete(b.key(o)); err == nil {
					err = payloads.Delete(b.key(o))
				}
			case opPutPush:
				err = pushes.Put(b.key(o), b.val(o))
			case opDeletePush:
				err = pushes.Delete(b.key(o))
			case opPutValue, opDeleteValue:
				err = applyValue(tx, b, o)
			}
			if err != nil {
				return 0, fmt.Errorf("%s: %w", describe(b, o), err)
			}
		}
		next = max(next, b.nextID)
	}
	if next <= s.nextID.Load() {
		return 0, nil
	}
	if err := tx.Bucket(bucketMeta).Put(keyNextID, binary.BigEndian.AppendUint64(nil, next)); err != nil {
		return 0, fmt.Errorf("set next id %d: %w", next, err)
	}
	return next, nil
}

// ack sets the flag on a copy: bbolt's bytes are read-only. Every record
// format shares the header, so a record keeps its format.
func (s *Store) ack(tasks *bbolt.Bucket, key []byte) error {
	v := tasks.Get(key)
	if v == nil {
		return nil
	}
	if len(v) < headerLen || v[offFormat] < recordFormatV1 || v[offFormat] > recordFormat {
		return corruptRecord(binary.BigEndian.Uint64(key), "bad header")
	}
	if v[offFlags]&flagAcked != 0 {
		return nil
	}
	// Earlier copies stay valid if append moves scratch: bbolt holds them.
	start := len(s.scratch)
	s.scratch = append(s.scratch, v...)
	c := s.scratch[start:len(s.scratch):len(s.scratch)]
	c[offFlags] |= flagAcked
	return tasks.Put(key, c)
}

func describe(b *Batch, o *op) string {
	k := b.key(o)
	switch o.kind {
	case opPutTask:
		return fmt.Sprintf("put task %d", binary.BigEndian.Uint64(k))
	case opPutState:
		return fmt.Sprintf("put the state of task %d", binary.BigEndian.Uint64(k))
	case opAckTask:
		return fmt.Sprintf("ack task %d", binary.BigEndian.Uint64(k))
	case opDeleteTask:
		return fmt.Sprintf("delete task %d", binary.BigEndian.Uint64(k))
	case opPutValue:
		return fmt.Sprintf("put %s %q", Bucket(o.pay), k)
	case opDeleteValue:
		return fmt.Sprintf("delete %s %q", Bucket(o.pay), k)
	case opPutPush, opDeletePush:
		app, seq := string(k[:len(k)-9]), binary.BigEndian.Uint64(k[len(k)-8:])
		if o.kind == opPutPush {
			return fmt.Sprintf("put push %q seq %d", app, seq)
		}
		return fmt.Sprintf("delete push %q seq %d", app, seq)
	}
	return fmt.Sprintf("op %d", o.kind)
}
