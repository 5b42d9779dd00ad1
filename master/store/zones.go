package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync"

	"go.etcd.io/bbolt"

	"github.com/anthill-project/anthill/protocol"
)

// Listings by state, app and kind read zones, not the whole store. Ids
// are handed out in order, so the id space splits into zones of zoneSize
// ids, and for each zone the store counts its records by (state, app,
// kind): a zone map, as BRIN indexes and columnar stores keep one. A
// listing of a rare state skips every zone that holds none, and stops
// reading a zone once it has seen all the zone holds.
//
// Why not secondary indexes in bbolt: keeping three of them on the commit
// path cut throughput from 130,000 to 14,000 tasks/s, measured. bbolt
// splits a node only when it commits, so a large group commit deletes
// from the front of nodes thousands of keys long, one memmove each. The
// zone map costs the commit path a lookup of the record it replaces and
// a counter, and memory of a few bytes per zone: 10 M tasks are 2,442
// zones.
//
// The zone map lives in memory. LoadIndex, which reads every record
// anyway, builds it; until then (and for a store whose LoadIndex ran
// beside commits) every zone may match, and listings read every record,
// as they would without it.
const zoneBits = 12

type zones struct {
	mu sync.RWMutex
	// ready says counts are exact: built by LoadIndex and kept since.
	ready bool
	// applied counts commits that reached zones, ready or not: LoadIndex
	// installs what it built only if no commit ran beside it.
	applied uint64
	names   map[string]uint32  // app and kind names, interned
	last    [2]lastName        // of names, by role
	z       map[uint64][]combo // by id >> zoneBits
}

// combo counts a zone's records of one (state, app, kind).
type combo struct {
	app, kind uint32
	state     protocol.State
	n         uint32
}

// move is one record's change of entry, applied to the zones once its
// transaction committed.
type move struct {
	id       uint64
	old, cur entry
	had, has bool
}

// entry is what the zone map knows of a record; its strings alias the
// record's bytes until the move is applied.
type entry struct {
	state     protocol.State
	app, kind []byte
}

// entryOf reads the fields the zone map counts; ok is false for a copy of
// a replicated task, which listings never show. It is on the commit path,
// twice a write, so it skips to the names without decoding the rest (see
// the layout in record.go); a record it cannot read is corrupt.
func entryOf(id uint64, v []byte) (e entry, ok bool, err error) {
	if len(v) < headerLen || v[offFormat] < recordFormatV1 || v[offFormat] > recordFormat {
		return e, false, corruptRecord(id, "bad header")
	}
	flags, at := v[offFlags], headerLen
	next := func() uint64 {
		if at < 0 {
			return 0
		}
		x, n := binary.Uvarint(v[at:])
		if n <= 0 {
			at = -1
			return 0
		}
		at += n
		return x
	}
	if flags&flagModule != 0 {
		n := next()
		if at < 0 || n > uint64(len(v)-at) {
			return e, false, corruptRecord(id, "module length past the end")
		}
		at += int(n)
	}
	var parent uint64
	if flags&flagReplica != 0 {
		next()
		next()
		parent = next()
	}
	if flags&flagPaySize != 0 {
		next()
	}
	for range 7 { // priority to finishedAt
		next()
	}
	appLen, kindLen := next(), next()
	for range 5 { // key, slave, err, payload and result lengths
		next()
	}
	if at < 0 || appLen > uint64(len(v)-at) || kindLen > uint64(len(v)-at)-appLen {
		return e, false, corruptRecord(id, "names past the end")
	}
	if parent != 0 {
		return e, false, nil
	}
	app := v[at : at+int(appLen) : at+int(appLen)]
	kind := v[at+int(appLen) : at+int(appLen+kindLen) : at+int(appLen+kindLen)]
	return entry{state: protocol.State(v[offState]), app: app, kind: kind}, true, nil
}

// name interns b; role (0 for an app, 1 for a kind) keeps the last of
// each, which neighbouring records mostly share: a restart counts ten
// million records.
func (z *zones) name(b []byte, role int) uint32 {
	if l := &z.last[role]; l.ok && string(b) == l.name {
		return l.ref
	}
	n, ok := z.names[string(b)]
	if !ok {
		n = uint32(len(z.names))
		z.names[string(b)] = n
	}
	z.last[role] = lastName{name: string(b), ref: n, ok: true}
	return n
}

type lastName struct {
	name string
	ref  uint32
	ok   bool
}

func (z *zones) add(id uint64, e *entry, d int) {
	i := id >> zoneBits
	app, kind := z.name(e.app, 0), z.name(e.kind, 1)
	cs := z.z[i]
	for j := range cs {
		if c := &cs[j]; c.state == e.state && c.app == app && c.kind == kind {
			if c.n = uint32(int(c.n) + d); c.n > 0 {
				return
			}
			if cs = slices.Delete(cs, j, j+1); len(cs) == 0 {
				delete(z.z, i)
			} else {
				z.z[i] = cs
			}
			return
		}
	}
	if d > 0 {
		z.z[i] = append(cs, combo{app: app, kind: kind, state: e.state, n: uint32(d)})
	}
}

// moved records, in the committing transaction, what replacing the
// record under k with v (nil: deleting it) changes, reading the old
// record first. The names are copied: a commit that grows the file
// remaps it, and the old record's bytes with it.
func (s *Store) moved(tasks *bbolt.Cursor, k, v []byte) error {
	id := binary.BigEndian.Uint64(k)
	m := move{id: id}
	var err error
	if ok, old := tasks.Seek(k); bytes.Equal(ok, k) {
		if m.old, m.had, err = entryOf(id, old); err != nil {
			return err
		}
	}
	if v != nil {
		if m.cur, m.has, err = entryOf(id, v); err != nil {
			return err
		}
	}
	switch {
	case m.had && m.has && m.old.same(&m.cur):
	case m.had || m.has:
		m.old.app, m.old.kind = s.keep(m.old.app), s.keep(m.old.kind)
		m.cur.app, m.cur.kind = s.keep(m.cur.app), s.keep(m.cur.kind)
		s.moves = append(s.moves, m)
	}
	return nil
}

func (e *entry) same(o *entry) bool {
	return e.state == o.state && string(e.app) == string(o.app) && string(e.kind) == string(o.kind)
}

// keep copies b into the moves' names. A slice kept before the buffer
// grows still holds the array it was copied to.
func (s *Store) keep(b []byte) []byte {
	at := len(s.moveNames)
	s.moveNames = append(s.moveNames, b...)
	return s.moveNames[at:len(s.moveNames):len(s.moveNames)]
}

// applyMoves brings the zone map up to a transaction that committed.
func (s *Store) applyMoves() {
	s.zones.mu.Lock()
	defer s.zones.mu.Unlock()
	s.zones.applied++
	if s.zones.ready {
		for i := range s.moves {
			m := &s.moves[i]
			if m.had {
				s.zones.add(m.id, &m.old, -1)
			}
			if m.has {
				s.zones.add(m.id, &m.cur, 1)
			}
		}
	}
	s.dropMoves()
}

func (s *Store) dropMoves() {
	s.moves, s.moveNames = s.moves[:0], s.moveNames[:0]
}

// Match selects tasks for ScanMatch by their stored state, app and kind;
// zero fields match every task, and no States every state. Copies of
// replicated tasks never match.
type Match struct {
	States []protocol.State
	App    string
	Kind   string
}

func (m *Match) matches(e *entry) bool {
	return (len(m.States) == 0 || slices.Contains(m.States, e.state)) &&
		(m.App == "" || string(e.app) == m.App) && (m.Kind == "" || string(e.kind) == m.Kind)
}

// Scanned tells how far a ScanMatch went.
type Scanned struct {
	Read int    // records read
	Last uint64 // where to go on from, as the next call's cursor
	More bool   // the store may hold more matches past Last
}

// ScanMatch calls fn for each record that matches m, in id order
// (descending with desc), from past cursor on: ids above it, or with desc
// below it (0: from the newest), until fn returns false or an error. It
// reads at most maxRead records, skipping the zones that hold no match;
// fn may keep the records. The zone map may be a commit ahead of the
// snapshot read: a task that changed as it was listed may be missed.
func (s *Store) ScanMatch(m Match, cursor uint64, desc bool, maxRead int, fn func(*Record) (bool, error)) (Scanned, error) {
	sc := Scanned{Last: cursor}
	if !desc && cursor == math.MaxUint64 {
		return sc, nil
	}
	filtered := m.App != "" || m.Kind != "" || len(m.States) > 0
	err := s.view(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketTasks).Cursor()
		key := make([]byte, 0, 8)
		seek := func(id uint64) ([]byte, []byte) { return c.Seek(binary.BigEndian.AppendUint64(key[:0], id)) }
		// below is the last key under id.
		below := func(id uint64) ([]byte, []byte) {
			if k, _ := seek(id); k == nil {
				return c.Last()
			}
			return c.Prev()
		}
		var k, v []byte
		switch {
		case !desc:
			k, v = seek(cursor + 1)
		case cursor == 0:
			k, v = c.Last()
		default:
			k, v = below(cursor)
		}
		zone := uint64(math.MaxUint64)
		left, known := 0, false
		for k != nil {
			if len(k) != 8 {
				return corrupt(s.path, fmt.Errorf("task key %x", k))
			}
			id := binary.BigEndian.Uint64(k)
			if z := id >> zoneBits; z != zone {
				zone = z
				left, known = s.zoneMatches(z, &m)
			}
			// The counts are the whole zone's: once as many matched,
			// before the cursor or after, the rest holds none.
			if known && left <= 0 {
				// Go on from the zone's edge, unread.
				start, end := zone<<zoneBits, zone<<zoneBits|(1<<zoneBits-1)
				if desc {
					if sc.Last = max(start, 1); start == 0 {
						break
					}
					k, v = below(start)
				} else {
					if sc.Last = end; end == math.MaxUint64 {
						break
					}
					k, v = seek(end + 1)
				}
				continue
			}
			if sc.Read == maxRead {
				sc.More = true
				return nil
			}
			sc.Read++
			sc.Last = id
			e, ok, err := entryOf(id, v)
			if err != nil {
				return fmt.Errorf("store %s: %w", s.path, err)
			}
			if ok && (!filtered || m.matches(&e)) {
				left--
				r, err := s.decode(tx, k, v)
				if err != nil {
					return err
				}
				if more, err := fn(r); err != nil || !more {
					sc.More = true
					return err
				}
			}
			if desc {
				k, v = c.Prev()
			} else {
				k, v = c.Next()
			}
		}
		return nil
	})
	return sc, err
}

// zoneMatches counts zone zi's records that match m, if the zone map is
// ready (known).
func (s *Store) zoneMatches(zi uint64, m *Match) (n int, known bool) {
	z := &s.zones
	z.mu.RLock()
	defer z.mu.RUnlock()
	if !z.ready {
		return 0, false
	}
	app, kind := uint32(math.MaxUint32), uint32(math.MaxUint32)
	if m.App != "" {
		a, ok := z.names[m.App]
		if !ok {
			return 0, true
		}
		app = a
	}
	if m.Kind != "" {
		k, ok := z.names[m.Kind]
		if !ok {
			return 0, true
		}
		kind = k
	}
	for _, c := range z.z[zi] {
		if (len(m.States) == 0 || slices.Contains(m.States, c.state)) &&
			(m.App == "" || c.app == app) && (m.Kind == "" || c.kind == kind) {
			n += int(c.n)
		}
	}
	return n, true
}
