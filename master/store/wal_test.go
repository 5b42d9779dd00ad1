package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/anthill-project/anthill/protocol"
)

// crash abandons s as a killed process would: the committer stops, and
// nothing is synced, checkpointed or removed. The files stay as the page
// cache has them.
func crash(t *testing.T, s *Store) {
	t.Helper()
	s.mu.Lock()
	s.closed = true
	close(s.queue)
	s.mu.Unlock()
	<-s.exited
	if w := s.wal; w != nil {
		if w.pin != nil {
			_ = w.pin.Rollback()
		}
		w.stop.Store(true)
		if sp := <-w.spare; sp.f != nil {
			sp.f.Close()
		}
		if w.f != nil {
			w.f.Close()
		}
		w.dbf.Close()
	}
	s.db.NoSync = true // bbolt's Close must not sync either
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
	s.closeOnce.Do(func() {}) // a later Close is a no-op
}

// logOnly writes b's record to the log without applying it: a crash
// between the log's fsync and bbolt's write. The committer must be idle.
func logOnly(t *testing.T, s *Store, b *Batch) {
	t.Helper()
	w := s.wal
	if err := w.append(seal(encodeGroup(nil, []request{{b: b}}))); err != nil {
		t.Fatal(err)
	}
	s.nextID.Store(max(s.nextID.Load(), b.nextID))
}

// dump is every key and value of every bucket.
func dump(t *testing.T, s *Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := s.view(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				out[string(name)+"/"+string(k)] = string(v)
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameDump(t *testing.T, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("%q missing", k)
		} else if g != v {
			t.Errorf("%q = %x, want %x", k, g, v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%q should not be there", k)
		}
	}
}

func pending(id uint64, payload int) *Record {
	return &Record{ID: id, App: "a", Kind: "k", State: protocol.StatePending,
		Payload: bytes.Repeat([]byte{byte(id)}, payload)}
}

// everyOp is a batch with each kind of change, on a store holding tasks 1
// to 3 and push ("a", 1).
func everyOp() *Batch {
	b := new(Batch)
	b.PutTask(pending(10, 3*InlinePayload)) // a payload of its own
	b.PutTask(pending(11, 10))
	r := pending(2, 0)
	r.State = protocol.StateDone
	r.Result = []byte("result")
	b.PutState(r)
	b.AckTask(2)
	b.AckTask(10)
	b.DeleteTask(3)
	b.DeleteTask(99) // missing
	b.PutPush(Push{App: "b", Seq: 7, FirstID: 10, Count: 2})
	b.DeletePush("a", 1)
	b.PutValue(BucketTrust, "v\x00a", []byte("trust"))
	b.PutValue(BucketApps, "a", []byte("config"))
	b.DeleteValue(BucketVolunteers, "gone")
	b.DeleteValue(BucketApps, "a-old")
	b.SetNextID(12)
	return b
}

func seed(t *testing.T, s *Store) {
	b := new(Batch)
	for id := uint64(1); id <= 3; id++ {
		b.PutTask(pending(id, 2*InlinePayload))
	}
	b.PutPush(Push{App: "a", Seq: 1, FirstID: 1, Count: 3})
	b.PutValue(BucketVolunteers, "gone", []byte("x"))
	b.PutValue(BucketApps, "a-old", []byte("y"))
	b.SetNextID(4)
	commit(t, s, b)
}

func TestWALIsOnByDefault(t *testing.T) {
	path := tempPath(t)
	s := openStore(t, path, Options{})
	if s.wal == nil {
		t.Fatal("no write-ahead log")
	}
	if _, err := os.Stat(path + walSuffix); err != nil {
		t.Fatal(err)
	}
	for _, opts := range []Options{{NoWAL: true}, {NoSync: true}} {
		s := openStore(t, tempPath(t), opts)
		if s.wal != nil {
			t.Errorf("%+v: a write-ahead log", opts)
		}
	}
}

// Every kind of change, logged but never applied, is there after a
// crash: replay is the only way it can get into bbolt.
func TestWALReplayAfterCrash(t *testing.T) {
	path := tempPath(t)
	s := openStore(t, path, Options{})
	seed(t, s)
	logOnly(t, s, everyOp())
	crash(t, s)

	// What the same batch makes of the same state through a normal commit.
	ref := openStore(t, tempPath(t), Options{NoSync: true})
	seed(t, ref)
	commit(t, ref, everyOp())

	s = openStore(t, path, Options{})
	sameDump(t, dump(t, s), dump(t, ref))
	if s.NextID() != 12 {
		t.Errorf("NextID = %d, want 12", s.NextID())
	}
	r, err := s.Get(10)
	if err != nil || !r.Acked || len(r.Payload) != 3*InlinePayload {
		t.Errorf("task 10 = %+v, %v", r, err)
	}
}

// Applying a batch twice leaves what applying it once does: a replay
// that overlaps what bbolt already has is harmless.
func TestOpsAreIdempotent(t *testing.T) {
	once := openStore(t, tempPath(t), Options{NoSync: true})
	seed(t, once)
	commit(t, once, everyOp())
	twice := openStore(t, tempPath(t), Options{NoSync: true})
	seed(t, twice)
	commit(t, twice, everyOp())
	commit(t, twice, everyOp())
	sameDump(t, dump(t, twice), dump(t, once))
}

// After a crash with the log and bbolt both written, the state is the
// same; after a clean Close the log is gone.
func TestWALCrashAndCleanClose(t *testing.T) {
	path := tempPath(t)
	s := openStore(t, path, Options{})
	seed(t, s)
	commit(t, s, everyOp())
	want := dump(t, s)
	crash(t, s)
	s = openStore(t, path, Options{})
	sameDump(t, dump(t, s), want)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path + walSuffix, path + spareSuffix} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after Close: %v", p, err)
		}
	}
	s = openStore(t, path, Options{NoWAL: true})
	sameDump(t, dump(t, s), want)
}

// A store opened without the log still recovers one left by a crash,
// then removes it.
func TestNoWALRecoversALog(t *testing.T) {
	path, _ := crashedWithLog(t)
	s := openStore(t, path, Options{NoWAL: true})
	if _, err := s.Get(5); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + walSuffix); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("log after a recovery without the log: %v", err)
	}
}

// crashedWithLog leaves a store with tasks 1 to 3 committed and task 5
// logged only, and returns the path and where the log's records end.
func crashedWithLog(t *testing.T) (string, int64) {
	path := tempPath(t)
	s := openStore(t, path, Options{})
	seed(t, s)
	b := new(Batch)
	b.PutTask(pending(5, 1))
	logOnly(t, s, b)
	end := s.wal.off
	crash(t, s)
	return path, end
}

func TestWALTornTail(t *testing.T) {
	for name, tear := range map[string]func(f *os.File, end int64){
		// A record whose length runs past what reached the disk.
		"short": func(f *os.File, end int64) {
			_, _ = f.WriteAt([]byte{0, 0, 1, 0, 1, 2, 3, 4, 5, 6}, end)
			_ = f.Truncate(end + 10)
		},
		// A whole record's length, its bytes partly there.
		"partial": func(f *os.File, end int64) {
			rec := seal(encodeGroup(nil, []request{{b: everyOp()}}))
			clear(rec[len(rec)/2:])
			_, _ = f.WriteAt(rec, end)
		},
		// The header alone.
		"header": func(f *os.File, end int64) {
			_, _ = f.WriteAt([]byte{0, 0, 0, 40}, end)
		},
	} {
		t.Run(name, func(t *testing.T) {
			path, end := crashedWithLog(t)
			f, err := os.OpenFile(path+walSuffix, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			tear(f, end)
			f.Close()
			s := openStore(t, path, Options{})
			for _, id := range []uint64{1, 2, 3, 5} {
				if _, err := s.Get(id); err != nil {
					t.Errorf("task %d: %v", id, err)
				}
			}
			if _, err := s.Get(10); !errors.Is(err, ErrNotFound) {
				t.Errorf("the torn record was applied: %v", err)
			}
		})
	}
}

func TestWALCorruptMiddle(t *testing.T) {
	path, _ := crashedWithLog(t)
	logPath := path + walSuffix
	f, err := os.OpenFile(logPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Flip a byte of the first record, which the second follows.
	b := []byte{0}
	if _, err := f.ReadAt(b, walHeaderLen+recHeaderLen+3); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, walHeaderLen+recHeaderLen+3); err != nil {
		t.Fatal(err)
	}
	f.Close()
	before, _ := os.ReadFile(path)
	_, err = Open(path, Options{})
	if err == nil {
		t.Fatal("Open succeeded on a corrupt log")
	}
	for _, part := range []string{logPath, fmt.Sprint("offset ", walHeaderLen)} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not name %q", err, part)
		}
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("the store file was changed")
	}
}

func TestWALCorruptHeader(t *testing.T) {
	path, _ := crashedWithLog(t)
	f, err := os.OpenFile(path+walSuffix, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteAt([]byte{0xff}, 20)
	f.Close()
	if _, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), "offset 0") {
		t.Fatalf("Open: %v, want an error at offset 0", err)
	}
}

func TestWALWithoutStoreFile(t *testing.T) {
	path, _ := crashedWithLog(t)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Open: %v", err)
	}
}

// A full log is replaced by a checkpoint: the new one holds only what came
// after, and a crash then recovers everything.
func TestWALCheckpoint(t *testing.T) {
	path := tempPath(t)
	const segment = 64 << 10
	s := openStore(t, path, Options{walSegment: segment})
	first := s.wal.pin.ID()
	for i := range 200 {
		b := new(Batch)
		b.PutTask(pending(uint64(i+1), 500))
		b.SetNextID(uint64(i + 2))
		commit(t, s, b)
	}
	h, recs, err := readWAL(path + walSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if h.txid <= uint64(first) {
		t.Errorf("checkpoint txid %d, want past the first one, %d", h.txid, first)
	}
	if len(recs) == 0 || len(recs) >= 200 {
		t.Errorf("%d records in the log after 200 commits and checkpoints", len(recs))
	}
	if fi, err := os.Stat(path + walSuffix); err != nil || fi.Size() != segment {
		t.Errorf("log size %v, %v; want %d", fi.Size(), err, segment)
	}
	// A group bigger than a log gets a log of its own size.
	b := new(Batch)
	b.PutValue(BucketApps, "big", make([]byte, 2*segment))
	commit(t, s, b)
	want := dump(t, s)
	crash(t, s)
	s = openStore(t, path, Options{walSegment: segment})
	sameDump(t, dump(t, s), want)
	if s.NextID() != 201 {
		t.Errorf("NextID = %d", s.NextID())
	}
}

// A group that fails in bbolt was reported failed; replay must not apply
// it, and must apply what came after.
func TestWALFailedGroupNotReplayed(t *testing.T) {
	path := tempPath(t)
	s := openStore(t, path, Options{})
	bad := new(Batch)
	bad.PutTask(pending(1, 1))
	bad.PutValue(BucketApps, "", []byte("an empty key fails"))
	if err := s.CommitWait(context.Background(), bad); err == nil {
		t.Fatal("the bad batch committed")
	}
	good := new(Batch)
	good.PutTask(pending(2, 1))
	commit(t, s, good)
	crash(t, s)
	s = openStore(t, path, Options{})
	if _, err := s.Get(1); !errors.Is(err, ErrNotFound) {
		t.Errorf("the failed group was replayed: %v", err)
	}
	if _, err := s.Get(2); err != nil {
		t.Error(err)
	}
}

// Credentials and modules are written in transactions of their own; with
// the log they are made durable by a checkpoint, and survive a crash.
func TestWALOwnTransactions(t *testing.T) {
	path := tempPath(t)
	s := openStore(t, path, Options{})
	s.mu.RLock()
	err := s.syncUpdate(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketApps()).Put([]byte("direct"), []byte("v"))
	})
	s.mu.RUnlock()
	if err != nil {
		t.Fatal(err)
	}
	b := new(Batch)
	b.PutTask(pending(1, 1))
	logOnly(t, s, b)
	crash(t, s)
	s = openStore(t, path, Options{})
	if v, err := s.GetValue(BucketApps, "direct"); err != nil || string(v) != "v" {
		t.Errorf("own transaction: %q, %v", v, err)
	}
	if _, err := s.Get(1); err != nil {
		t.Error(err)
	}
}

func bucketApps() []byte { return valueBuckets[BucketApps] }

// Power loss: the disk keeps the checkpoint's sync and, of every page
// bbolt wrote since without a sync, any subset, meta pages included. The
// pin keeps every page of the checkpoint's tree from being reused, and
// recovery puts its meta page back, so every subset recovers all commits.
func TestWALPowerLoss(t *testing.T) {
	path := tempPath(t)
	s := openStore(t, path, Options{})
	// Enough tasks for a tree of several levels, then churn: rewrites,
	// deletes and inserts free pages and reuse them.
	var id uint64
	for range 30 {
		b := new(Batch)
		for range 50 {
			id++
			b.PutTask(pending(id, 300))
		}
		commit(t, s, b)
	}
	if err := s.checkpoint(0); err != nil {
		t.Fatal(err)
	}
	durable, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 60 {
		b := new(Batch)
		for range 40 {
			victim := 1 + rng.Uint64N(id)
			switch rng.IntN(3) {
			case 0:
				r := pending(victim, 0)
				r.State = protocol.StateDone
				r.Result = bytes.Repeat([]byte{byte(i)}, 200)
				b.PutState(r)
			case 1:
				b.DeleteTask(victim)
			default:
				id++
				b.PutTask(pending(id, 1000))
			}
		}
		b.SetNextID(id + 1)
		commit(t, s, b)
	}
	want := dump(t, s)
	crash(t, s)
	written, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	log, err := os.ReadFile(path + walSuffix)
	if err != nil {
		t.Fatal(err)
	}
	ps := s.wal.pageSize
	pages := len(written) / ps
	changed := 0
	for p := range pages {
		if p*ps >= len(durable) || !bytes.Equal(durable[p*ps:(p+1)*ps], written[p*ps:(p+1)*ps]) {
			changed++
		}
	}
	if changed < 10 {
		t.Fatalf("only %d pages changed after the checkpoint: the test is too weak", changed)
	}
	// keep tells, for page p, whether the write since the sync reached
	// the disk.
	for name, keep := range map[string]func(p int) bool{
		"nothing":             func(int) bool { return false },
		"everything":          func(int) bool { return true },
		"meta pages only":     func(p int) bool { return p < 2 },
		"all but meta pages":  func(p int) bool { return p >= 2 },
		"newer meta, no data": func(p int) bool { return p == 1 || p == 0 && rng.IntN(2) == 0 },
	} {
		powerCycle(t, name, durable, written, log, ps, keep, want)
	}
	for i := range 20 {
		powerCycle(t, fmt.Sprint("random ", i), durable, written, log, ps, func(int) bool { return rng.IntN(2) == 0 }, want)
	}
}

func powerCycle(t *testing.T, name string, durable, written, log []byte, ps int, keep func(int) bool, want map[string]string) {
	t.Run(name, func(t *testing.T) {
		disk := slices.Clone(written)
		for p := range len(written) / ps {
			if keep(p) {
				continue
			}
			page := disk[p*ps : (p+1)*ps]
			if p*ps < len(durable) {
				copy(page, durable[p*ps:])
			} else {
				clear(page)
			}
		}
		path := filepath.Join(t.TempDir(), "anthill.db")
		if err := os.WriteFile(path, disk, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path+walSuffix, log, 0o600); err != nil {
			t.Fatal(err)
		}
		s := openStore(t, path, Options{})
		sameDump(t, dump(t, s), want)
	})
}

func TestDecodeGroupRejectsBadRecords(t *testing.T) {
	rec := encodeGroup(nil, []request{{b: everyOp()}})[recHeaderLen:]
	if _, err := decodeGroup(rec); err != nil {
		t.Fatal(err)
	}
	for n := range len(rec) {
		if _, err := decodeGroup(rec[:n]); err == nil {
			t.Errorf("a record cut at %d of %d bytes decoded", n, len(rec))
		}
	}
	bad := slices.Clone(rec)
	bad[0] = 9
	if _, err := decodeGroup(bad); err == nil {
		t.Error("a record of an unknown kind decoded")
	}
}

func TestMapLowerBound(t *testing.T) {
	for _, c := range []struct{ in, want int64 }{
		{1, 1 << 15}, {1 << 20, 1 << 20}, {1<<20 + 1, 1 << 21}, {1 << 30, 1 << 30},
		{1<<30 + 1, 2 << 30}, {5 << 30, 5 << 30},
	} {
		if got := mapLowerBound(c.in); got != c.want {
			t.Errorf("mapLowerBound(%d) = %d, want %d", c.in, got, c.want)
		}
	}
}

// BenchmarkCommitLatency is one small batch at a time, waited for: what
// one commit on a task's path costs with the log, without it, and without
// any sync.
func BenchmarkCommitLatency(b *testing.B) {
	for _, c := range []struct {
		name string
		opts Options
	}{{"wal", Options{}}, {"nowal", Options{NoWAL: true}}, {"nosync", Options{NoSync: true}}} {
		b.Run(c.name, func(b *testing.B) {
			s := openStore(b, tempPath(b), c.opts)
			seedBatch := new(Batch)
			for id := uint64(1); id <= 10000; id++ {
				seedBatch.PutTask(pending(id, 100))
			}
			commit(b, s, seedBatch)
			id := uint64(0)
			for b.Loop() {
				id = id%10000 + 1
				r := pending(id, 100)
				r.State = protocol.StateDone
				batch := new(Batch)
				batch.PutState(r)
				commit(b, s, batch)
			}
		})
	}
}

// A power loss while a checkpoint rewrites the header of an empty log in
// place leaves a damaged header and no record: the store file was synced
// just before, and is used as it is.
func TestWALTornHeaderOfEmptyLog(t *testing.T) {
	path := tempPath(t)
	s := openStore(t, path, Options{})
	seed(t, s)
	if err := s.checkpoint(0); err != nil {
		t.Fatal(err)
	}
	if s.wal.off != walHeaderLen {
		t.Fatal("the log holds records after a checkpoint")
	}
	want := dump(t, s)
	crash(t, s)
	f, err := os.OpenFile(path+walSuffix, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteAt(make([]byte, 64), 40) // half the sector old, half new
	f.Close()
	s = openStore(t, path, Options{})
	sameDump(t, dump(t, s), want)
}

// A log prepared in a hurry is allocated rather than written, and reads
// as zeros all the same: the log's end is found by them.
func TestPreallocateInAHurry(t *testing.T) {
	for _, hurry := range []bool{false, true} {
		w := &wal{}
		w.hurry.Store(hurry)
		path := filepath.Join(t.TempDir(), "log")
		f, err := preallocate(path, 1<<20+123, w)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != 1<<20+123 || !allZero(b) {
			t.Errorf("hurry %t: %d bytes, zero %t", hurry, len(b), allZero(b))
		}
	}
}
