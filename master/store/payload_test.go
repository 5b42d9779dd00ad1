package store

import (
	"bytes"
	"encoding/binary"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/anthill-project/anthill/protocol"
)

// payloadKeys counts the keys of the payloads bucket.
func payloadKeys(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	if err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketPayloads).ForEach(func(k, v []byte) error { n++; return nil })
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

func storedFormat(t *testing.T, s *Store, id uint64) byte {
	t.Helper()
	var f byte
	if err := s.db.View(func(tx *bbolt.Tx) error {
		f = tx.Bucket(bucketTasks).Get(taskKey(nil, id))[offFormat]
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return f
}

// H3: a payload is written once, with its task; a change of state later
// writes the small record alone and keeps the payload; deleting the task
// deletes its payload.
func TestPutStateWritesNoPayload(t *testing.T) {
	s := openStore(t, tempPath(t), Options{NoSync: true})
	r := fullRecord(9)
	r.Payload = bytes.Repeat([]byte{7}, 1<<20)
	b := new(Batch)
	b.PutTask(r)
	commit(t, s, b)
	if got := s.Stats().Bytes; got < 1<<20 {
		t.Fatalf("PutTask wrote %d bytes of a 1 MiB payload", got)
	}
	before := s.Stats().Bytes
	r.State, r.Attempts, r.Payload = protocol.StateRunning, 2, nil
	b = new(Batch)
	b.PutState(r)
	commit(t, s, b)
	if wrote := s.Stats().Bytes - before; wrote > 1024 {
		t.Fatalf("PutState wrote %d bytes", wrote)
	}
	got, err := s.Get(9)
	if err != nil {
		t.Fatal(err)
	}
	if got.Attempts != 2 || !bytes.Equal(got.Payload, bytes.Repeat([]byte{7}, 1<<20)) {
		t.Fatalf("after PutState: attempts %d, payload of %d bytes", got.Attempts, len(got.Payload))
	}
	// Empty and nil payloads stay apart.
	b = new(Batch)
	b.PutTask(&Record{ID: 10, State: protocol.StatePending, Payload: []byte{}})
	b.PutTask(&Record{ID: 11, State: protocol.StatePending})
	commit(t, s, b)
	if r, _ := s.Get(10); r.Payload == nil || len(r.Payload) != 0 {
		t.Errorf("empty payload read back as %#v", r.Payload)
	}
	if r, _ := s.Get(11); r.Payload != nil {
		t.Errorf("nil payload read back as %#v", r.Payload)
	}
	b = new(Batch)
	b.DeleteTask(9)
	b.DeleteTask(10)
	b.DeleteTask(11)
	commit(t, s, b)
	if n := payloadKeys(t, s); n != 0 {
		t.Fatalf("%d payloads left after their tasks were deleted", n)
	}
}

// A file of store format 2 holds records with their payloads inline: Open
// gives it the payloads bucket, moves every payload there and raises its
// format; its records load whole; PutState, AckTask and DeleteTask then
// work as on any file, and nothing is orphaned.
func TestOpenFormat2Store(t *testing.T) {
	path := newStoreFile(t)
	old := fullRecord(7)
	old.Payload = []byte("the payload of a format 2 record")
	other := fullRecord(8)
	tamper(t, path, func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketMeta).Put(keyFormat, binary.BigEndian.AppendUint64(nil, 2)); err != nil {
			return err
		}
		if err := tx.DeleteBucket(bucketPayloads); err != nil {
			return err
		}
		if err := tx.Bucket(bucketTasks).Put(taskKey(nil, 7), appendRecord(nil, old)); err != nil {
			return err
		}
		return tx.Bucket(bucketTasks).Put(taskKey(nil, 8), appendRecord(nil, other))
	})

	s := openStore(t, path, Options{NoSync: true})
	var loaded []*Record
	if err := s.Load(func(r *Record) error { loaded = append(loaded, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 2 {
		t.Fatalf("loaded %d records", len(loaded))
	}
	sameRecord(t, loaded[0], old)
	sameRecord(t, loaded[1], other)
	if err := s.db.View(func(tx *bbolt.Tx) error {
		if f := binary.BigEndian.Uint64(tx.Bucket(bucketMeta).Get(keyFormat)); f != format {
			t.Errorf("store format %d after Open, want %d", f, format)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Open rewrote the old records: a write never has to look at what it
	// replaces.
	if f := storedFormat(t, s, 7); f != recordFormat {
		t.Fatalf("record format %d after Open", f)
	}

	next := *old // PutState carries the (small) payload
	next.State, next.Attempts = protocol.StatePending, 3
	b := new(Batch)
	b.PutState(&next)
	b.AckTask(8)
	commit(t, s, b)
	if f := storedFormat(t, s, 7); f != recordFormat {
		t.Fatalf("record format %d after PutState", f)
	}
	got, err := s.Get(7)
	if err != nil {
		t.Fatal(err)
	}
	next.Payload = old.Payload
	sameRecord(t, got, &next)
	if got, err := s.Get(8); err != nil || !got.Acked || !bytes.Equal(got.Payload, other.Payload) {
		t.Fatalf("format 2 record after AckTask: %+v %v", got, err)
	}

	b = new(Batch)
	b.DeleteTask(7)
	b.DeleteTask(8)
	commit(t, s, b)
	if n := payloadKeys(t, s); n != 0 {
		t.Fatalf("%d payloads left after their tasks were deleted", n)
	}
}

// BenchmarkRequeueLargePayloads is the write of H3's requeue: 300 tasks
// of 1 MiB going back to pending. Before format 3 each one re-encoded its
// payload (PutTask); now it is a state record (PutState). It reports the
// bytes each batch writes.
func BenchmarkRequeueLargePayloads(b *testing.B) {
	recs := make([]*Record, 300)
	for i := range recs {
		recs[i] = fullRecord(uint64(i + 1))
		recs[i].Payload = make([]byte, 1<<20)
	}
	for _, how := range []struct {
		name string
		put  func(*Batch, *Record)
	}{{"PutTask", (*Batch).PutTask}, {"PutState", (*Batch).PutState}} {
		b.Run(how.name, func(b *testing.B) {
			var bytes int
			for b.Loop() {
				batch := new(Batch)
				for _, r := range recs {
					how.put(batch, r)
				}
				bytes = batch.Bytes()
			}
			b.ReportMetric(float64(bytes), "bytes/requeue")
		})
	}
}

// A payload of at most InlinePayload bytes rides in its record: no second
// key is written or deleted for it, and a state write carries it along.
// A larger one has a key of its own, which a state write leaves alone.
func TestSmallPayloadsStayInline(t *testing.T) {
	s := openStore(t, newStoreFile(t), Options{NoSync: true})
	small, large := fullRecord(1), fullRecord(2)
	small.Payload = bytes.Repeat([]byte("s"), InlinePayload)
	large.Payload = bytes.Repeat([]byte("L"), InlinePayload+1)
	b := new(Batch)
	b.PutTask(small)
	b.PutTask(large)
	commit(t, s, b)
	if n := payloadKeys(t, s); n != 1 {
		t.Fatalf("%d payload keys; want 1, the large payload's", n)
	}
	for _, r := range []*Record{small, large} {
		next := *r
		next.Attempts++
		b := new(Batch)
		b.PutState(&next)
		commit(t, s, b)
		got, err := s.Get(r.ID)
		if err != nil || got.Attempts != next.Attempts || !bytes.Equal(got.Payload, r.Payload) {
			t.Fatalf("task %d after PutState: %+v, %v", r.ID, got, err)
		}
	}
	if n := payloadKeys(t, s); n != 1 {
		t.Fatalf("%d payload keys after the state writes; want 1", n)
	}
}
