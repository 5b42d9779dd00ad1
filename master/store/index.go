package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/anthill-project/anthill/protocol"
)

// Summary is what a queue needs of a stored task: enough to schedule it
// and count it, nothing of its payload, result or history. Its byte
// slices alias the store's pages and are valid only during the callback
// that receives it.
type Summary struct {
	ID         uint64
	State      protocol.State
	Acked      bool
	Parent     uint64
	Priority   int32
	FinishedAt time.Time
	App        []byte
	Kind       []byte
	Module     []byte
	Key        []byte
	// PayloadLen is the payload's size, inline or kept apart; for a
	// final task, only if its record says it.
	PayloadLen int
}

// LoadIndex calls fn for every task in id order with its summary, copying
// nothing: a master restarting over millions of queued tasks reads their
// index, not their payloads. full decodes the whole record, for the few
// the caller keeps whole (final tasks not yet acknowledged, copies of
// replicated tasks); it is valid only during the callback. LoadIndex stops
// at and returns fn's first error.
//
// On its way it builds the zone map listings read (see zones.go), and
// keeps it if no commit ran beside it.
func (s *Store) LoadIndex(fn func(sum *Summary, full func() (*Record, error)) error) error {
	s.zones.mu.RLock()
	applied := s.zones.applied
	s.zones.mu.RUnlock()
	built := zones{names: map[string]uint32{}, z: map[uint64][]combo{}}
	err := s.loadIndex(&built, fn)
	if err == nil {
		s.zones.mu.Lock()
		if s.zones.applied == applied {
			s.zones.names, s.zones.z, s.zones.last, s.zones.ready = built.names, built.z, built.last, true
		}
		s.zones.mu.Unlock()
	}
	return err
}

func (s *Store) loadIndex(built *zones, fn func(sum *Summary, full func() (*Record, error)) error) error {
	return s.view(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketTasks).Cursor()
		payloads := tx.Bucket(bucketPayloads)
		var sum Summary
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(k) != 8 {
				return corrupt(s.path, fmt.Errorf("task key %x", k))
			}
			id := binary.BigEndian.Uint64(k)
			l, err := parseRecord(id, v)
			if err != nil {
				return fmt.Errorf("store %s: %w", s.path, err)
			}
			sum = Summary{
				ID: id, State: l.state, Acked: l.flags&flagAcked != 0, Parent: l.parent, Priority: l.priority,
				FinishedAt: fromUnixNano(l.finished), App: l.strs[0], Kind: l.strs[1], Key: l.strs[2], Module: l.module,
				PayloadLen: len(l.payload),
			}
			switch {
			case l.paySize >= 0:
				sum.PayloadLen = l.paySize
			case l.rf == recordFormat && l.payload == nil && !l.state.Final():
				// Written without its size: the payload's page tells.
				if pv := payloads.Get(k); len(pv) > 0 {
					sum.PayloadLen = len(pv) - 1
				}
			}
			if l.parent == 0 {
				built.add(id, &entry{state: l.state, app: l.strs[0], kind: l.strs[1]}, 1)
			}
			full := func() (*Record, error) { return s.decode(tx, k, v) }
			if err := fn(&sum, full); err != nil {
				return err
			}
		}
		return nil
	})
}

// Reader reads records of one snapshot, in one read transaction begun by
// its first Get, so a caller that may need many records, or none (a
// dispatch drawing queued tasks from the store), pays for one
// transaction at most. Close ends it; a commit that grows the file waits
// for it, so keep a Reader briefly. A Reader is for one goroutine.
type Reader struct {
	s  *Store
	tx *bbolt.Tx
}

// Reader returns a Reader; nothing is read until its first Get.
func (s *Store) Reader() *Reader { return &Reader{s: s} }

// Get returns the record of task id as of the snapshot, or ErrNotFound.
func (r *Reader) Get(id uint64) (rec *Record, err error) {
	defer recoverCorrupt(r.s.path, &err, nil)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	if r.tx == nil {
		if r.tx, err = r.s.db.Begin(false); err != nil {
			if errors.Is(err, berrors.ErrDatabaseNotOpen) {
				err = ErrClosed
			}
			return nil, err
		}
	}
	k := taskKey(make([]byte, 0, 8), id)
	v := r.tx.Bucket(bucketTasks).Get(k)
	if v == nil {
		return nil, ErrNotFound
	}
	return r.s.decode(r.tx, k, v)
}

// Close ends the Reader's transaction, if it began one.
func (r *Reader) Close() {
	if r.tx != nil {
		_ = r.tx.Rollback()
		r.tx = nil
	}
}
