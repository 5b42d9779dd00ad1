package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/anthill-project/anthill/protocol"
)

// openStore opens path and closes it when the test ends.
func openStore(t testing.TB, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func tempPath(t testing.TB) string {
	return filepath.Join(t.TempDir(), "anthill.db")
}

func reopen(t *testing.T, s *Store) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return openStore(t, s.Path(), Options{NoSync: true})
}

func commit(t testing.TB, s *Store, b *Batch) {
	t.Helper()
	if err := s.CommitWait(context.Background(), b); err != nil {
		t.Fatalf("CommitWait: %v", err)
	}
}

func fullRecord(id uint64) *Record {
	base := time.Date(2025, 3, 4, 5, 6, 7, 890123456, time.UTC)
	return &Record{
		ID:          id,
		App:         "render",
		Kind:        "frame",
		Key:         fmt.Sprintf("frame-%d", id),
		Priority:    -7,
		Timeout:     90 * time.Second,
		MaxAttempts: 5,
		Attempts:    2,
		State:       protocol.StateFailed,
		CreatedAt:   base,
		StartedAt:   base.Add(time.Second),
		FinishedAt:  base.Add(time.Minute),
		Slave:       "gpu-box-3",
		Payload:     []byte("scene=castle.blend\x00frame=12"),
		Result:      []byte{},
		Err:         "exit status 2",
		Acked:       true,
		Quiet:       true,
		History: []Attempt{
			{Slave: "gpu-box-1", Started: base.Add(100 * time.Millisecond), Ended: base.Add(200 * time.Millisecond),
				Outcome: OutcomeFailed, Err: "exit status 1"},
			{Slave: "gpu-box-2", Started: base.Add(300 * time.Millisecond), Ended: base.Add(400 * time.Millisecond),
				Outcome: OutcomeReturned},
			{Slave: "gpu-box-3", Started: base.Add(time.Second), Ended: base.Add(time.Minute),
				Outcome: OutcomeFailed, Err: "exit status 2"},
			{Slave: "", Started: base.Add(2 * time.Minute)}, // running: no end, no slave name
		},
	}
}

// fullHistory is a record whose history is as long as it may be, with
// errors as long as they may be.
func fullHistory(id uint64) *Record {
	r := &Record{ID: id, State: protocol.StateDone, Attempts: 40, MaxAttempts: 1000}
	at := time.Unix(1_750_000_000, 123)
	for i := range MaxHistory {
		r.History = append(r.History, Attempt{
			Slave: fmt.Sprintf("slave-%d", i), Started: at, Ended: at.Add(time.Duration(i) * time.Hour),
			Outcome: Outcome(i) % (maxOutcome + 1), Err: strings.Repeat(string(rune('a'+i)), MaxAttemptErr),
		})
		at = at.Add(time.Duration(i) * time.Hour)
	}
	return r
}

// sameRecord compares times by instant: the store keeps instants, not
// locations or monotonic readings.
func sameRecord(t *testing.T, got, want *Record) {
	t.Helper()
	g, w := *got, *want
	times := []struct{ g, w *time.Time }{
		{&g.CreatedAt, &w.CreatedAt}, {&g.StartedAt, &w.StartedAt}, {&g.FinishedAt, &w.FinishedAt},
	}
	if len(g.History) == len(w.History) {
		g.History, w.History = slices.Clone(g.History), slices.Clone(w.History)
		for i := range g.History {
			times = append(times, struct{ g, w *time.Time }{&g.History[i].Started, &w.History[i].Started},
				struct{ g, w *time.Time }{&g.History[i].Ended, &w.History[i].Ended})
		}
	}
	for _, p := range times {
		if !p.g.Equal(*p.w) || p.g.IsZero() != p.w.IsZero() {
			t.Errorf("task %d: time %v, want %v", w.ID, *p.g, *p.w)
		}
		*p.g, *p.w = time.Time{}, time.Time{}
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("task %d:\n got %+v\nwant %+v", w.ID, g, w)
	}
}

func loadAll(t *testing.T, s *Store) []*Record {
	t.Helper()
	var rs []*Record
	if err := s.Load(func(r *Record) error { rs = append(rs, r); return nil }); err != nil {
		t.Fatalf("Load: %v", err)
	}
	return rs
}

func TestRoundTrip(t *testing.T) {
	s := openStore(t, tempPath(t), Options{NoSync: true})
	want := []*Record{
		fullRecord(1 << 40),
		{ID: 3, State: protocol.StatePending}, // zero everything else: nil slices, zero times
		{ID: 7, State: protocol.StateRunning, Payload: []byte{}, Priority: 1 << 30, App: "a\x00b"}, // empty, not nil
		{ID: 1<<64 - 1, State: protocol.StateCanceled, MaxAttempts: 1<<32 - 1, Timeout: -1,
			CreatedAt: time.Unix(-5, 3), Priority: -1 << 31, Result: bytes.Repeat([]byte("r"), 70000)},
		fullHistory(11),
		{ID: 12, State: protocol.StatePending, Kind: "wasm", Module: strings.Repeat("ab", 32), Payload: []byte("in")},
	}
	b := new(Batch)
	for _, r := range want {
		b.PutTask(r)
	}
	commit(t, s, b)
	s = reopen(t, s)

	got := loadAll(t, s)
	if len(got) != len(want) {
		t.Fatalf("Load returned %d records, want %d", len(got), len(want))
	}
	// Load is in id order.
	order := []int{1, 2, 4, 5, 0, 3}
	for i, r := range got {
		sameRecord(t, r, want[order[i]])
	}
	for _, w := range want {
		r, err := s.Get(w.ID)
		if err != nil {
			t.Fatalf("Get(%d): %v", w.ID, err)
		}
		sameRecord(t, r, w)
	}
	if _, err := s.Get(4); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(missing) = %v, want ErrNotFound", err)
	}
}

func TestLoadedRecordsAreIndependent(t *testing.T) {
	s := openStore(t, tempPath(t), Options{NoSync: true})
	b := new(Batch)
	b.PutTask(fullRecord(1))
	b.PutTask(fullRecord(2))
	commit(t, s, b)
	rs := loadAll(t, s)
	rs[0].Payload[0] = 'X' // must not reach the other record or the file
	r, err := s.Get(2)
	if err != nil {
		t.Fatal(err)
	}
	sameRecord(t, r, fullRecord(2))
	sameRecord(t, rs[1], fullRecord(2))
}

func TestLoadStopsAtCallbackError(t *testing.T) {
	s := openStore(t, tempPath(t), Options{NoSync: true})
	b := new(Batch)
	for id := uint64(1); id <= 5; id++ {
		b.PutTask(&Record{ID: id, State: protocol.StatePending})
	}
	commit(t, s, b)
	stop := errors.New("stop")
	n := 0
	err := s.Load(func(*Record) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	})
	if err != stop || n != 2 {
		t.Fatalf("Load = %v after %d calls, want the callback's error after 2", err, n)
	}
}

func TestBatchEncodesImmediately(t *testing.T) {
	s := openStore(t, tempPath(t), Options{NoSync: true})
	r := fullRecord(9)
	b := new(Batch)
	b.PutTask(r)
	want := fullRecord(9)
	r.State = protocol.StateDone
	r.Payload[0] = 'Z'
	r.App = "changed"
	r.Acked = false
	p := Push{App: "render", Seq: 4, FirstID: 9, Count: 1, At: time.Unix(100, 0)}
	b.PutPush(p)
	p.Count = 99
	commit(t, s, b)

	got, err := s.Get(9)
	if err != nil {
		t.Fatal(err)
	}
	sameRecord(t, got, want)
}

func TestAckTask(t *testing.T) {
	s := openStore(t, tempPath(t), Options{NoSync: true})
	r := fullRecord(10)
	r.Acked = false
	b := new(Batch)
	b.PutTask(r)
	b.PutTask(&Record{ID: 11, State: protocol.StateDone})
	b.AckTask(11) // same batch: sees the put before it
	commit(t, s, b)

	b = new(Batch)
	b.AckTask(10)
	b.AckTask(10)  // twice is harmless
	b.AckTask(999) // missing: ignored
	commit(t, s, b)
	s = reopen(t, s)

	want := *r
	want.Acked = true
	got, err := s.Get(10)
	if err != nil {
		t.Fatal(err)
	}
	sameRecord(t, got, &want)
	got, err = s.Get(11)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Acked || got.State != protocol.StateDone {
		t.Errorf("task 11 = %+v, want acked and done", got)
	}
	if _, err := s.Get(999); !errors.Is(err, ErrNotFound) {
		t.Errorf("AckTask of a missing id created it: %v", err)
	}

	// A later PutTask overwrites the whole record, flag included.
	b = new(Batch)
	r.Acked = false
	b.PutTask(r)
	commit(t, s, b)
	if got, _ := s.Get(10); got.Acked {
		t.Error("PutTask kept the old Acked flag")
	}
}

func TestDeleteTask(t *testing.T) {
	s := openStore(t, tempPath(t), Options{NoSync: true})
	b := new(Batch)
	for id := uint64(1); id <= 3; id++ {
		b.PutTask(&Record{ID: id, State: protocol.StatePending})
	}
	commit(t, s, b)
	b = new(Batch)
	b.DeleteTask(2)
	b.DeleteTask(42) // missing: fine
	b.PutTask(&Record{ID: 4, State: protocol.StatePending})
	b.DeleteTask(4) // put then delete in one batch: gone
	commit(t, s, b)
	s = reopen(t, s)

	var ids []uint64
	for _, r := range loadAll(t, s) {
		ids = append(ids, r.ID)
	}
	if !reflect.DeepEqual(ids, []uint64{1, 3}) {
		t.Errorf("ids after delete = %v, want [1 3]", ids)
	}
}

func TestPushes(t *testing.T) {
	s := openStore(t, tempPath(t), Options{NoSync: true})
	at := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	pushes := []Push{
		{App: "b", Seq: 1, FirstID: 100, Count: 10, At: at},
		{App: "a", Seq: 1 << 40, FirstID: 1 << 50, Count: 1<<32 - 1, At: at.Add(time.Hour)},
		{App: "a", Seq: 2, FirstID: 5, Count: 1},
		{App: "a\x00z", Seq: 3, FirstID: 7, Count: 2, At: at},
		{App: "", Seq: 0, FirstID: 1, Count: 0, At: at},
	}
	b := new(Batch)
	for _, p := range pushes {
		b.PutPush(p)
	}
	b.PutPush(Push{App: "gone", Seq: 1, FirstID: 1, Count: 1})
	commit(t, s, b)
	b = new(Batch)
	b.DeletePush("gone", 1)
	b.DeletePush("never", 1)
	commit(t, s, b)
	s = reopen(t, s)

	var got []Push
	if err := s.LoadPushes(func(p Push) error { got = append(got, p); return nil }); err != nil {
		t.Fatal(err)
	}
	// Ordered by app, then seq.
	want := []Push{pushes[4], pushes[2], pushes[1], pushes[3], pushes[0]}
	if len(got) != len(want) {
		t.Fatalf("LoadPushes returned %d, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if !g.At.Equal(w.At) || g.At.IsZero() != w.At.IsZero() {
			t.Errorf("push %d: At %v, want %v", i, g.At, w.At)
		}
		g.At, w.At = time.Time{}, time.Time{}
		if g != w {
			t.Errorf("push %d = %+v, want %+v", i, g, w)
		}
	}
}

func TestNextIDOnlyGrows(t *testing.T) {
	s := openStore(t, tempPath(t), Options{NoSync: true})
	if n := s.NextID(); n != 1 {
		t.Fatalf("NextID of a new store = %d, want 1", n)
	}
	b := new(Batch)
	b.SetNextID(50)
	b.SetNextID(100)
	b.SetNextID(70)
	if b.Len() != 1 {
		t.Errorf("Len with only SetNextID = %d, want 1", b.Len())
	}
	commit(t, s, b)
	if n := s.NextID(); n != 100 {
		t.Fatalf("NextID = %d, want 100", n)
	}
	b = new(Batch)
	b.SetNextID(60)
	commit(t, s, b)
	s = reopen(t, s)
	if n := s.NextID(); n != 100 {
		t.Fatalf("NextID after reopen = %d, want 100 (it must never go back)", n)
	}
	b = new(Batch)
	b.SetNextID(101)
	commit(t, s, b)
	s = reopen(t, s)
	if n := s.NextID(); n != 101 {
		t.Fatalf("NextID after reopen = %d, want 101", n)
	}
}

func TestBatchLenAndReset(t *testing.T) {
	var b Batch
	if b.Len() != 0 {
		t.Fatal("zero Batch not empty")
	}
	b.PutTask(&Record{ID: 1})
	b.AckTask(1)
	b.DeleteTask(1)
	b.PutPush(Push{App: "a"})
	b.DeletePush("a", 1)
	b.SetNextID(3)
	if b.Len() != 6 {
		t.Fatalf("Len = %d, want 6", b.Len())
	}
	b.Reset()
	if b.Len() != 0 {
		t.Fatalf("Len after Reset = %d", b.Len())
	}
	// A reset batch is usable again.
	s := openStore(t, tempPath(t), Options{NoSync: true})
	b.PutTask(&Record{ID: 5, State: protocol.StatePending})
	commit(t, s, &b)
	if _, err := s.Get(5); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Reset kept an old change: %v", err)
	}
}

func TestConcurrentCommitWait(t *testing.T) {
	const workers, batches = 8, 500
	s := openStore(t, tempPath(t), Options{}) // fsync on: the case group commit exists for
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range batches {
				id := uint64(w*batches + i + 1)
				b := new(Batch)
				b.PutTask(&Record{ID: id, State: protocol.StatePending, App: "app", Payload: []byte{byte(id)}})
				b.SetNextID(id + 1)
				if err := s.CommitWait(context.Background(), b); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := s.Stats()
	t.Logf("%d batches in %d transactions, last %d ops, mean commit %v",
		workers*batches, st.Commits, st.LastBatchOps, st.TotalCommit/time.Duration(max(st.Commits, 1)))
	if st.Ops != workers*batches*2 {
		t.Errorf("Stats.Ops = %d, want %d", st.Ops, workers*batches*2)
	}

	s = reopen(t, s)
	rs := loadAll(t, s)
	if len(rs) != workers*batches {
		t.Fatalf("%d records after reopen, want %d", len(rs), workers*batches)
	}
	for i, r := range rs {
		if r.ID != uint64(i+1) || r.Payload[0] != byte(r.ID) {
			t.Fatalf("record %d = %+v", i, r)
		}
	}
	if n := s.NextID(); n != workers*batches+1 {
		t.Errorf("NextID = %d, want %d", n, workers*batches+1)
	}
}

// holdCommitter queues a batch whose done blocks the committer until the
// returned release is called, so the test can queue more work that must
// then be committed as one group. It returns after the committer is held.
func holdCommitter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	held, gate := make(chan struct{}), make(chan struct{})
	b := new(Batch)
	b.SetNextID(2)
	s.Commit(b, func(err error) {
		if err != nil {
			t.Errorf("holding batch: %v", err)
		}
		close(held)
		<-gate
	})
	<-held
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	return release
}

func TestGroupCommit(t *testing.T) {
	s := openStore(t, tempPath(t), Options{NoSync: true})
	release := holdCommitter(t, s)
	const n = 200
	var wg sync.WaitGroup
	wg.Add(n)
	for i := range n {
		b := new(Batch)
		b.PutTask(&Record{ID: uint64(i + 1), State: protocol.StatePending})
		s.Commit(b, func(err error) {
			if err != nil {
				t.Error(err)
			}
			wg.Done()
		})
	}
	release()
	wg.Wait()
	// One transaction for the holding batch, one for all that queued
	// behind it.
	if st := s.Stats(); st.Commits != 2 || st.LastBatchOps != n || st.Ops != n+1 {
		t.Errorf("Stats = %+v, want 2 commits, the last with %d ops", st, n)
	}
}

func TestMaxBatchOps(t *testing.T) {
	s := openStore(t, tempPath(t), Options{NoSync: true, MaxBatchOps: 7})
	release := holdCommitter(t, s)
	var wg sync.WaitGroup
	commit3 := func(first uint64) {
		b := new(Batch)
		for id := first; id < first+3; id++ {
			b.PutTask(&Record{ID: id, State: protocol.StatePending})
		}
		wg.Add(1)
		s.Commit(b, func(err error) {
			if err != nil {
				t.Error(err)
			}
			wg.Done()
		})
	}
	for i := range 10 {
		commit3(uint64(1 + 3*i))
	}
	big := new(Batch) // over the cap on its own: committed whole
	for id := uint64(100); id < 120; id++ {
		big.PutTask(&Record{ID: id, State: protocol.StatePending})
	}
	wg.Add(1)
	s.Commit(big, func(err error) {
		if err != nil {
			t.Error(err)
		}
		wg.Done()
	})
	release()
	wg.Wait()
	// Holding batch, five groups of two 3-op batches, the big one.
	if st := s.Stats(); st.Commits != 7 || st.LastBatchOps != 20 {
		t.Errorf("Stats = %+v, want 7 commits, the last with 20 ops", st)
	}
	if rs := loadAll(t, s); len(rs) != 50 {
		t.Errorf("%d records, want 50", len(rs))
	}
}

func TestDoneOrder(t *testing.T) {
	s := openStore(t, tempPath(t), Options{NoSync: true, MaxBatchOps: 10})
	const n = 500
	var (
		mu  sync.Mutex
		got []int
		wg  sync.WaitGroup
	)
	wg.Add(n)
	for i := range n {
		b := new(Batch)
		for j := range i % 7 { // some empty batches too
			b.PutTask(&Record{ID: uint64(i*10 + j + 1), State: protocol.StatePending})
		}
		s.Commit(b, func(err error) {
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			got = append(got, i)
			mu.Unlock()
			wg.Done()
		})
	}
	wg.Wait()
	for i, v := range got {
		if v != i {
			t.Fatalf("done #%d was for commit %d: callbacks out of Commit order", i, v)
		}
	}
}

func TestFailedCommitFailsItsGroup(t *testing.T) {
	s := openStore(t, tempPath(t), Options{NoSync: true})
	// A damaged record makes AckTask fail inside the transaction.
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketTasks).Put(taskKey(nil, 66), []byte{9})
	}); err != nil {
		t.Fatal(err)
	}
	release := holdCommitter(t, s)
	var (
		wg   sync.WaitGroup
		errs [3]error
	)
	for i := range 3 {
		b := new(Batch)
		if i == 1 {
			b.AckTask(66)
		} else {
			b.PutTask(&Record{ID: uint64(i + 1), State: protocol.StatePending})
		}
		wg.Add(1)
		s.Commit(b, func(err error) { errs[i] = err; wg.Done() })
	}
	release()
	wg.Wait()
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "task 66") {
			t.Errorf("batch %d: err = %v, want the failure naming task 66", i, err)
		}
	}
	if _, err := s.Get(1); !errors.Is(err, ErrNotFound) {
		t.Errorf("a change from the failed transaction was stored: %v", err)
	}
	// The store keeps working.
	b := new(Batch)
	b.PutTask(&Record{ID: 1, State: protocol.StatePending})
	commit(t, s, b)
}

func TestCommitAfterClose(t *testing.T) {
	s, err := Open(tempPath(t), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	var got error
	called := false
	b := new(Batch)
	b.PutTask(&Record{ID: 1})
	s.Commit(b, func(err error) { got, called = err, true })
	if !called || !errors.Is(got, ErrClosed) {
		t.Errorf("Commit after Close: done called %v with %v, want ErrClosed", called, got)
	}
	s.Commit(b, nil) // nil done: nothing to report, no panic
	if err := s.CommitWait(context.Background(), b); !errors.Is(err, ErrClosed) {
		t.Errorf("CommitWait after Close = %v, want ErrClosed", err)
	}
	if _, err := s.Get(1); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close = %v, want ErrClosed", err)
	}
	if err := s.Load(func(*Record) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Load after Close = %v, want ErrClosed", err)
	}
}

func TestCloseFinishesQueuedCommits(t *testing.T) {
	path := tempPath(t)
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	release := holdCommitter(t, s)
	const n = 100
	var done sync.WaitGroup
	done.Add(n)
	for i := range n {
		b := new(Batch)
		b.PutTask(&Record{ID: uint64(i + 1), State: protocol.StatePending})
		s.Commit(b, func(err error) {
			if err != nil {
				t.Error(err)
			}
			done.Done()
		})
	}
	closed := make(chan error)
	go func() { closed <- s.Close() }()
	release()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	done.Wait() // Close returned, so every callback has run already
	s = openStore(t, path, Options{NoSync: true})
	if rs := loadAll(t, s); len(rs) != n {
		t.Errorf("%d records after Close and reopen, want %d", len(rs), n)
	}
}

func TestCommitWaitContext(t *testing.T) {
	s := openStore(t, tempPath(t), Options{NoSync: true})
	release := holdCommitter(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := new(Batch)
	b.PutTask(&Record{ID: 1, State: protocol.StatePending})
	if err := s.CommitWait(ctx, b); !errors.Is(err, context.Canceled) {
		t.Errorf("CommitWait with a canceled ctx = %v", err)
	}
	release()
}

func TestOpenOptions(t *testing.T) {
	dir := t.TempDir()
	for _, o := range []Options{{LockTimeout: -1}, {MaxBatchOps: -1}} {
		if s, err := Open(filepath.Join(dir, "x.db"), o); err == nil {
			s.Close()
			t.Errorf("Open(%+v) succeeded", o)
		}
	}
	_, err := Open(filepath.Join(dir, "missing", "x.db"), Options{})
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Open in a missing directory = %v", err)
	}
}

// expectRefused checks that Open fails with an error containing every
// part, and leaves the file as it was.
func expectRefused(t *testing.T, path string, parts ...string) error {
	t.Helper()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, Options{LockTimeout: 100 * time.Millisecond})
	if err == nil {
		s.Close()
		t.Fatal("Open succeeded")
	}
	t.Logf("Open: %v", err)
	for _, p := range append(parts, path) {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
	after, rerr := os.ReadFile(path)
	if rerr != nil {
		t.Fatal(rerr)
	}
	if !bytes.Equal(before, after) {
		t.Error("Open changed the refused file")
	}
	return err
}

func TestOpenGarbageFile(t *testing.T) {
	path := tempPath(t)
	garbage := make([]byte, 64<<10)
	for i := range garbage {
		garbage[i] = byte(rand.Uint32())
	}
	if err := os.WriteFile(path, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	expectRefused(t, path, "not a valid Anthill store", "nothing was changed")
}

// filledStore writes enough records to span many pages and returns the
// closed file's path.
func filledStore(t *testing.T) string {
	t.Helper()
	path := tempPath(t)
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	b := new(Batch)
	for id := uint64(1); id <= 5000; id++ {
		r := fullRecord(id)
		r.Payload = bytes.Repeat([]byte{byte(id)}, 200)
		b.PutTask(r)
	}
	commit(t, s, b)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestOpenTruncatedFile(t *testing.T) {
	for _, frac := range []float64{0.9, 0.5, 0.1, 0.001} {
		t.Run(fmt.Sprint(frac), func(t *testing.T) {
			path := filledStore(t)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			// A real file only grows in bbolt's allocation steps; cut inside
			// the used pages, not the preallocated tail.
			used := usedSize(t, path)
			if err := os.Truncate(path, int64(float64(used)*frac)); err != nil {
				t.Fatal(err)
			}
			t.Logf("file %d bytes, pages use %d, truncated to %d", fi.Size(), used, int64(float64(used)*frac))
			expectRefused(t, path, "not a valid Anthill store", "nothing was changed")
		})
	}
}

func usedSize(t *testing.T, path string) int64 {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int64
	db.View(func(tx *bbolt.Tx) error { n = tx.Size(); return nil })
	return n
}

const damageSeeds = 40

func TestOpenDamagedPages(t *testing.T) {
	// Overwrite data pages (not the two meta pages) with garbage: Open or
	// Load must fail with an error, never panic or crash.
	for seed := range uint64(damageSeeds) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			path := filledStore(t)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			used := usedSize(t, path)
			rng := rand.New(rand.NewPCG(seed, 1))
			const page = 4096
			for range 3 {
				pg := 2 + rng.Int64N(used/page-2)
				off := pg * page // the header: id, flags, count, overflow
				// Garbage keys in a branch page are refused too, but bbolt's
				// own check leaks a goroutine on that path (see precheck).
				const branchPage = 0x01
				if rng.IntN(2) == 0 && binary.LittleEndian.Uint16(data[off+8:])&branchPage == 0 {
					off += rng.Int64N(page - 64)
				}
				for i := range 64 {
					data[off+int64(i)] = byte(rng.Uint32())
				}
			}
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(path, Options{NoSync: true})
			if err != nil {
				t.Logf("Open: %v", err)
				return
			}
			defer s.Close()
			err = s.Load(func(*Record) error { return nil })
			t.Logf("Load: %v", err) // garbage may land in unused space: nil is fine
		})
	}
}

// tamper changes the bolt file at path behind the store's back, as another
// program or an older Anthill would.
func tamper(t *testing.T, path string, change func(tx *bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(change); err != nil {
		t.Fatal(err)
	}
}

// newStoreFile creates an empty store at a new path and closes it.
func newStoreFile(t *testing.T) string {
	t.Helper()
	path := tempPath(t)
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	return path
}

func TestOpenForeignBoltFile(t *testing.T) {
	path := tempPath(t)
	tamper(t, path, func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucket([]byte("somebody-else"))
		return err
	})
	expectRefused(t, path, "not a valid Anthill store")
}

func TestOpenNewerFormat(t *testing.T) {
	path := newStoreFile(t)
	tamper(t, path, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyFormat, binary.BigEndian.AppendUint64(nil, 7))
	})
	err := expectRefused(t, path)
	if !errors.Is(err, ErrNewerFormat) {
		t.Errorf("error does not wrap ErrNewerFormat: %v", err)
	}
	want := "store " + path + " has format 7; this anthill understands format 3: upgrade anthill"
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

func TestOpenLockedFile(t *testing.T) {
	path := tempPath(t)
	openStore(t, path, Options{NoSync: true})
	s, err := Open(path, Options{LockTimeout: 100 * time.Millisecond})
	if err == nil {
		s.Close()
		t.Fatal("second Open of a locked file succeeded")
	}
	want := "data file " + path + " is in use by another process"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error = %q, want it to contain %q", err, want)
	}
}

func TestLoadCorruptRecord(t *testing.T) {
	s := openStore(t, tempPath(t), Options{NoSync: true})
	b := new(Batch)
	b.PutTask(fullRecord(1))
	commit(t, s, b)
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		v := appendRecord(nil, fullRecord(77))
		return tx.Bucket(bucketTasks).Put(taskKey(nil, 77), v[:len(v)-1])
	}); err != nil {
		t.Fatal(err)
	}
	err := s.Load(func(*Record) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "task 77") {
		t.Errorf("Load = %v, want an error naming task 77", err)
	}
	if _, err := s.Get(77); err == nil || !strings.Contains(err.Error(), "task 77") {
		t.Errorf("Get = %v, want an error naming task 77", err)
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	full := appendRecord(nil, fullRecord(42))
	for n := range len(full) {
		if _, err := decodeRecord(42, full[:n]); err == nil || !strings.Contains(err.Error(), "task 42") {
			t.Fatalf("decode of %d/%d bytes = %v, want an error naming task 42", n, len(full), err)
		}
	}
	for _, mutate := range []func([]byte){
		func(b []byte) { b[offFormat] = 0 },
		func(b []byte) { b[offFormat] = 1 }, // format 1 has no history: trailing bytes
		func(b []byte) { b[offFlags] = 0x80 },
		func(b []byte) { b[offState] = 0 },
		func(b []byte) { b[offState] = 200 },
	} {
		b := bytes.Clone(full)
		mutate(b)
		if _, err := decodeRecord(42, b); err == nil {
			t.Errorf("decode of %x succeeded", b[:headerLen])
		}
	}
	big := fullRecord(42)
	big.Payload = make([]byte, InlinePayload+1)
	if _, err := decodeRecord(42, encodeRecord(nil, big, recordFormat, big.Payload)); err == nil {
		t.Error("decode of a format 3 record with an inline payload over InlinePayload succeeded")
	}
	if _, err := decodeRecord(42, append(bytes.Clone(full), 0)); err == nil {
		t.Error("trailing byte accepted")
	}
	if _, err := decodeRecord(42, full); err != nil {
		t.Fatal(err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(appendRecord(nil, fullRecord(1)))
	f.Add(appendRecord(nil, &Record{State: protocol.StatePending}))
	f.Add(appendRecord(nil, &Record{State: protocol.StateDone, Replicas: 3, Quorum: 2, Parent: 1 << 40, Module: strings.Repeat("ab", 32)}))
	f.Add([]byte{1, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte(format1Record))
	f.Add([]byte(format1Empty))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeRecord(5, data)
		if err != nil {
			if !strings.Contains(err.Error(), "task 5") {
				t.Fatalf("error does not name the task: %v", err)
			}
			return
		}
		// What decodes must encode back to the same bytes.
		if again := appendRecord(nil, r); !bytes.Equal(again, data) {
			// Varints have non-minimal encodings; only the record must agree.
			r2, err := decodeRecord(5, again)
			if err != nil || !reflect.DeepEqual(r, r2) {
				t.Fatalf("re-encoding differs: %v", err)
			}
		}
	})
}

func benchRecord(id uint64) *Record {
	return &Record{
		ID:          id,
		App:         "render",
		Kind:        "frame",
		Key:         "scene-42",
		Priority:    3,
		Timeout:     time.Minute,
		MaxAttempts: 3,
		State:       protocol.StatePending,
		CreatedAt:   time.Unix(1_750_000_000, int64(id)),
		Payload:     bytes.Repeat([]byte("p"), 100),
	}
}

// BenchmarkCommit measures fsynced throughput with batches of 100 new
// tasks, as a busy master submits them. "pipelined" keeps Commit calls
// coming while earlier ones sync, which is how the master uses the store;
// "wait" commits one batch at a time, the worst case.
func BenchmarkCommit(b *testing.B) {
	const per = 100
	for _, mode := range []string{"pipelined", "wait"} {
		for _, noSync := range []bool{false, true} {
			name := mode
			if noSync {
				name += "/nosync"
			}
			b.Run(name, func(b *testing.B) {
				s := openStore(b, tempPath(b), Options{NoSync: noSync})
				var wg sync.WaitGroup
				id := uint64(1)
				b.ResetTimer()
				for range b.N {
					batch := new(Batch)
					for range per {
						batch.PutTask(benchRecord(id))
						id++
					}
					batch.SetNextID(id)
					if mode == "wait" {
						if err := s.CommitWait(context.Background(), batch); err != nil {
							b.Fatal(err)
						}
						continue
					}
					wg.Add(1)
					s.Commit(batch, func(err error) {
						if err != nil {
							b.Error(err)
						}
						wg.Done()
					})
				}
				wg.Wait()
				b.StopTimer()
				st := s.Stats()
				b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "records/s")
				b.ReportMetric(float64(st.Ops)/float64(max(st.Commits, 1)), "ops/txn")
			})
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	r := benchRecord(1)
	var buf []byte
	b.ReportAllocs()
	for range b.N {
		buf = appendRecord(buf[:0], r)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecode(b *testing.B) {
	data := appendRecord(nil, benchRecord(1))
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for range b.N {
		if _, err := decodeRecord(1, data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoad(b *testing.B) {
	const n = 100000
	s := openStore(b, tempPath(b), Options{NoSync: true})
	batch := new(Batch)
	for id := uint64(1); id <= n; id++ {
		batch.PutTask(benchRecord(id))
	}
	commit(b, s, batch)
	b.ResetTimer()
	for range b.N {
		if err := s.Load(func(*Record) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
}

func TestScanFromCursor(t *testing.T) {
	s := openStore(t, tempPath(t), Options{NoSync: true})
	b := new(Batch)
	for _, id := range []uint64{3, 5, 8, 13} {
		b.PutTask(fullRecord(id))
	}
	commit(t, s, b)
	// collect runs one of the two scans from a cursor and keeps the first
	// limit ids it is given.
	collect := func(scan func(uint64, func(*Record) (bool, error)) error, from uint64, limit int) []uint64 {
		var ids []uint64
		err := scan(from, func(r *Record) (bool, error) {
			ids = append(ids, r.ID)
			return len(ids) < limit, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	for _, tc := range []struct {
		after uint64
		limit int
		want  string
	}{
		{0, 10, "[3 5 8 13]"}, {3, 10, "[5 8 13]"}, {4, 2, "[5 8]"}, {13, 10, "[]"}, {^uint64(0), 10, "[]"},
	} {
		if got := fmt.Sprint(collect(s.Scan, tc.after, tc.limit)); got != tc.want {
			t.Errorf("Scan(%d) limit %d = %s, want %s", tc.after, tc.limit, got, tc.want)
		}
	}
	for _, tc := range []struct {
		before uint64
		limit  int
		want   string
	}{
		{0, 10, "[13 8 5 3]"}, {13, 10, "[8 5 3]"}, {12, 2, "[8 5]"}, {3, 10, "[]"}, {1, 10, "[]"}, {^uint64(0), 1, "[13]"}, {100, 10, "[13 8 5 3]"},
	} {
		if got := fmt.Sprint(collect(s.ScanDesc, tc.before, tc.limit)); got != tc.want {
			t.Errorf("ScanDesc(%d) limit %d = %s, want %s", tc.before, tc.limit, got, tc.want)
		}
	}
}
