package store

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/anthill-project/anthill/protocol"
)

var allStates = []protocol.State{
	protocol.StatePending, protocol.StateRunning, protocol.StateDone, protocol.StateFailed, protocol.StateCanceled,
}

// churn writes a few hundred tasks through every kind of change a
// scheduler makes, in several commits, and returns what is stored.
func churn(t *testing.T, s *Store, seed uint64, span uint64) map[uint64]*Record {
	rng := rand.New(rand.NewPCG(seed, 1))
	apps := []string{"a", "bb", "a\x00"}
	kinds := []string{"k", "kk", protocol.KindWASM}
	model := map[uint64]*Record{}
	random := func(id uint64) *Record {
		r := &Record{
			ID: id, App: apps[rng.IntN(len(apps))], Kind: kinds[rng.IntN(len(kinds))],
			State:   allStates[rng.IntN(len(allStates))],
			Payload: make([]byte, rng.IntN(3*InlinePayload)),
		}
		if rng.IntN(8) == 0 {
			r.Parent, r.Replicas, r.Quorum = 1+uint64(rng.IntN(int(id))), 3, 2
		}
		return r
	}
	for range 20 {
		b := new(Batch)
		for range 40 {
			id := 1 + uint64(rng.IntN(int(span)))
			switch old := model[id]; {
			case old == nil:
				r := random(id)
				b.PutTask(r)
				model[id] = r
			case rng.IntN(4) == 0:
				b.DeleteTask(id)
				delete(model, id)
			case rng.IntN(4) == 0:
				b.AckTask(id)
				old.Acked = true
			default:
				// A new state, and sometimes another app or kind: a
				// record only ever changes state, but the index must
				// not rely on it.
				r := *old
				r.State = allStates[rng.IntN(len(allStates))]
				if rng.IntN(10) == 0 {
					r.App, r.Kind = apps[rng.IntN(len(apps))], kinds[rng.IntN(len(kinds))]
				}
				b.PutState(&r)
				model[id] = &r
			}
		}
		b.DeleteTask(span + 1) // not stored
		commit(t, s, b)
	}
	return model
}

// want is what ScanMatch must list of model.
func want(model map[uint64]*Record, m Match, cursor uint64, desc bool) []uint64 {
	var ids []uint64
	for id, r := range model {
		switch {
		case r.Parent != 0,
			len(m.States) > 0 && !slices.Contains(m.States, r.State),
			m.App != "" && r.App != m.App,
			m.Kind != "" && r.Kind != m.Kind,
			!desc && id <= cursor,
			desc && cursor > 0 && id >= cursor:
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if desc {
		slices.Reverse(ids)
	}
	return ids
}

func matches() []Match {
	var ms []Match
	for _, states := range [][]protocol.State{nil, {protocol.StateDone}, {protocol.StatePending, protocol.StateRunning}, {protocol.StateCanceled}} {
		for _, app := range []string{"", "a", "a\x00", "none"} {
			for _, kind := range []string{"", "kk", "none"} {
				ms = append(ms, Match{States: states, App: app, Kind: kind})
			}
		}
	}
	return ms
}

func checkMatches(t *testing.T, s *Store, model map[uint64]*Record, span uint64) {
	t.Helper()
	for _, m := range matches() {
		for _, desc := range []bool{false, true} {
			for _, cursor := range []uint64{0, 1, span / 2, span - 1, span, 1 << 40} {
				got := listAll(t, s, m, cursor, desc, 1<<30)
				if w := want(model, m, cursor, desc); !slices.Equal(got, w) {
					t.Errorf("ScanMatch(%+v, %d, desc %v) = %v, want %v", m, cursor, desc, got, w)
				}
				// Read a few records a call, from cursor to cursor: the
				// same, none skipped where a call stops.
				if got := listAll(t, s, m, cursor, desc, 7); !slices.Equal(got, want(model, m, cursor, desc)) {
					t.Errorf("ScanMatch(%+v, %d, desc %v), 7 a call = %v", m, cursor, desc, got)
				}
			}
		}
	}
	for id, w := range model {
		if w.Parent != 0 {
			continue
		}
		var got *Record
		if _, err := s.ScanMatch(Match{}, id-1, false, 1<<30, func(r *Record) (bool, error) { got = r; return false, nil }); err != nil {
			t.Fatal(err)
		}
		if got == nil || got.ID != id || got.State != w.State || got.App != w.App || got.Kind != w.Kind || len(got.Payload) != len(w.Payload) {
			t.Fatalf("task %d listed as %+v, stored %+v", id, got, w)
		}
	}
}

// listAll follows ScanMatch from cursor to its end, maxRead at a time.
func listAll(t *testing.T, s *Store, m Match, cursor uint64, desc bool, maxRead int) []uint64 {
	t.Helper()
	var ids []uint64
	for calls := 0; ; calls++ {
		sc, err := s.ScanMatch(m, cursor, desc, maxRead, func(r *Record) (bool, error) {
			ids = append(ids, r.ID)
			return true, nil
		})
		if err != nil {
			t.Fatalf("ScanMatch(%+v): %v", m, err)
		}
		if sc.Read > maxRead {
			t.Fatalf("read %d records, at most %d asked", sc.Read, maxRead)
		}
		if !sc.More {
			return ids
		}
		if calls > 100000 {
			t.Fatalf("ScanMatch(%+v) does not end", m)
		}
		cursor = sc.Last
	}
}

// Listings match what is stored, through puts, state changes,
// acknowledgements and deletes, in both orders and from any cursor:
// before the zone map exists (every zone read), once LoadIndex built it,
// and as commits keep it. Ids span several zones.
func TestScanMatch(t *testing.T) {
	const span = 5 << zoneBits
	s := openStore(t, tempPath(t), Options{NoSync: true})
	model := churn(t, s, 1, span)
	checkMatches(t, s, model, span)
	if err := s.LoadIndex(func(*Summary, func() (*Record, error)) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if !s.zones.ready {
		t.Fatal("LoadIndex built no zone map")
	}
	checkMatches(t, s, model, span)
	for id, r := range churn(t, s, 2, span) {
		model[id] = r
	}
	checkMatches(t, s, model, span)
	// The counts the commits kept are those a new build makes.
	kept := zoneCounts(s)
	if err := s.LoadIndex(func(*Summary, func() (*Record, error)) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if built := zoneCounts(s); !maps.Equal(kept, built) {
		t.Errorf("zone map kept by commits:\n%v\nbuilt:\n%v", kept, built)
	}
}

// zoneCounts is the zone map by names.
func zoneCounts(s *Store) map[string]uint32 {
	s.zones.mu.RLock()
	defer s.zones.mu.RUnlock()
	names := map[uint32]string{}
	for n, i := range s.zones.names {
		names[i] = n
	}
	out := map[string]uint32{}
	for zi, cs := range s.zones.z {
		for _, c := range cs {
			out[fmt.Sprintf("%d/%s/%q/%q", zi, c.state, names[c.app], names[c.kind])] = c.n
		}
	}
	return out
}

// A rare match reads what it lists: the zones that hold none are
// skipped, and a zone read from its edge stops at its last match.
func TestScanMatchReadsLittle(t *testing.T) {
	s := openStore(t, tempPath(t), Options{NoSync: true})
	b := new(Batch)
	const n = 10 << zoneBits
	for id := uint64(1); id <= n; id++ {
		r := pending(id, 1)
		if id == 3<<zoneBits+5 {
			r.State = protocol.StateFailed
		}
		b.PutTask(r)
	}
	commit(t, s, b)
	if err := s.LoadIndex(func(*Summary, func() (*Record, error)) error { return nil }); err != nil {
		t.Fatal(err)
	}
	for _, desc := range []bool{false, true} {
		var got []uint64
		sc, err := s.ScanMatch(Match{States: []protocol.State{protocol.StateFailed}}, 0, desc, n, func(r *Record) (bool, error) {
			got = append(got, r.ID)
			return true, nil
		})
		if err != nil || !slices.Equal(got, []uint64{3<<zoneBits + 5}) || sc.More {
			t.Errorf("desc %v: %v %+v %v", desc, got, sc, err)
		}
		// Ascending, the zone is read from its start to its match: 6
		// records (ids 3<<zoneBits to 3<<zoneBits+5); descending, from
		// its end down.
		if wantRead := map[bool]int{false: 6, true: 1<<zoneBits - 5}[desc]; sc.Read != wantRead {
			t.Errorf("desc %v: read %d records, want %d", desc, sc.Read, wantRead)
		}
	}
	for _, m := range []Match{{App: "nobody"}, {Kind: "none"}, {States: []protocol.State{protocol.StateDone}}} {
		if sc, err := s.ScanMatch(m, 0, true, n, func(*Record) (bool, error) { return true, nil }); err != nil || sc.Read != 0 || sc.More {
			t.Errorf("%+v: %+v %v", m, sc, err)
		}
	}
}

// ScanMatch stops where its callback says.
func TestScanMatchStops(t *testing.T) {
	s := openStore(t, tempPath(t), Options{NoSync: true})
	b := new(Batch)
	for id := uint64(1); id <= 10; id++ {
		b.PutTask(pending(id, 1))
	}
	commit(t, s, b)
	var got []uint64
	sc, err := s.ScanMatch(Match{App: "a"}, 0, true, 100, func(r *Record) (bool, error) {
		got = append(got, r.ID)
		return len(got) < 3, nil
	})
	if err != nil || !slices.Equal(got, []uint64{10, 9, 8}) || !sc.More || sc.Last != 8 {
		t.Errorf("got %v, %+v, %v; want [10 9 8] and more from 8", got, sc, err)
	}
}

// entryOf, which skips to the names, reads what the full decoder reads,
// of every record the decoder accepts, and never panics on the rest.
func FuzzEntryOf(f *testing.F) {
	for _, r := range []*Record{
		fullRecord(1), {State: protocol.StatePending, App: "a", Kind: "k"},
		{State: protocol.StateDone, App: "a", Kind: "wasm", Replicas: 3, Quorum: 2, Parent: 1 << 40, Module: strings.Repeat("ab", 32)},
		{State: protocol.StateFailed, App: "app", Kind: "k", Replicas: 3, Quorum: 2, Payload: make([]byte, 2*InlinePayload)},
	} {
		f.Add(appendRecord(nil, r))
		var b Batch
		b.PutTask(r)
		f.Add(b.record(&b.ops[0]))
	}
	f.Add([]byte(format1Record))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, ok, err := entryOf(5, data)
		l, perr := parseRecord(5, data)
		if perr != nil {
			return
		}
		if err != nil {
			t.Fatalf("entryOf refuses what parseRecord reads: %v", err)
		}
		if ok != (l.parent == 0) || ok && (e.state != l.state || !bytes.Equal(e.app, l.strs[0]) || !bytes.Equal(e.kind, l.strs[1])) {
			t.Fatalf("entryOf = %+v %v, parseRecord: state %v parent %d app %q kind %q", e, ok, l.state, l.parent, l.strs[0], l.strs[1])
		}
	})
}
