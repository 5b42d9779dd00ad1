package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/anthill-project/anthill/protocol"
)

func TestReplicaFieldsRoundTrip(t *testing.T) {
	plain := &Record{ID: 1, App: "a", Kind: "k", State: protocol.StatePending}
	enc := appendState(nil, plain)
	if enc[offFlags]&flagReplica != 0 {
		t.Fatal("a task that is not replicated carries the replica flag")
	}
	for _, r := range []*Record{
		{ID: 2, App: "a", Kind: "k", State: protocol.StatePending, Replicas: 3, Quorum: 2},
		{ID: 3, App: "a", Kind: "k", State: protocol.StateDone, Replicas: 3, Quorum: 2, Parent: 2, Result: []byte("r")},
		{ID: 4, App: "a", Kind: "wasm", Module: strings.Repeat("ab", 32), State: protocol.StatePending, Parent: 1 << 60},
	} {
		got, err := decodeRecord(r.ID, appendState(nil, r))
		if err != nil {
			t.Fatal(err)
		}
		if got.Replicas != r.Replicas || got.Quorum != r.Quorum || got.Parent != r.Parent || got.Module != r.Module {
			t.Errorf("record %d: got replicas %d quorum %d parent %d module %q", r.ID, got.Replicas, got.Quorum, got.Parent, got.Module)
		}
	}
	bad := appendState(nil, &Record{ID: 5, App: "a", Kind: "k", State: protocol.StatePending, Replicas: 2, Quorum: 2})
	i := headerLen + 1 // the quorum's byte
	bad[i] = 3
	if _, err := decodeRecord(5, bad); err == nil || !strings.Contains(err.Error(), "quorum 3") {
		t.Errorf("a quorum over the replicas decoded: %v", err)
	}
}

func TestValues(t *testing.T) {
	path := filepath.Join(t.TempDir(), "anthill.db")
	st, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var b Batch
	b.PutValue(BucketTrust, "vol\x00app", []byte{1, 2})
	b.PutValue(BucketApps, "app", []byte("conf"))
	b.PutValue(BucketApps, "gone", []byte("x"))
	b.DeleteValue(BucketApps, "gone") // later in the same batch: applied after
	if err := st.CommitWait(ctx, &b); err != nil {
		t.Fatal(err)
	}
	var bad Batch
	bad.PutValue(BucketVolunteers, "", []byte{1})
	if err := st.CommitWait(ctx, &bad); err == nil || !strings.Contains(err.Error(), "a key of 0 bytes") {
		t.Errorf("an empty key committed: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if v, err := st.GetValue(BucketTrust, "vol\x00app"); err != nil || string(v) != "\x01\x02" {
		t.Errorf("trust value after reopen: %q %v", v, err)
	}
	if v, err := st.GetValue(BucketVolunteers, "nobody"); err != nil || v != nil {
		t.Errorf("an absent value: %q %v", v, err)
	}
	got := map[string]string{}
	if err := st.LoadValues(BucketApps, func(k string, v []byte) error { got[k] = string(v); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["app"] != "conf" {
		t.Errorf("apps bucket holds %v, want app=conf alone", got)
	}
}

// The replica fields survive the store, a copy's outcomes its history,
// and a record whose task is not replicated has no flag for them.
func TestReplicaFieldsStored(t *testing.T) {
	s := openStore(t, tempPath(t), Options{NoSync: true})
	at := time.Unix(1_750_000_000, 0)
	want := []*Record{
		{ID: 1, App: "a", Kind: "sha256", State: protocol.StateRunning, Replicas: 3, Quorum: 2, Payload: []byte("p")},
		{ID: 2, App: "a", Kind: "sha256", State: protocol.StateDone, Parent: 1, Payload: []byte("p"), Result: []byte("r"),
			History: []Attempt{
				{Slave: "s1", Started: at, Ended: at.Add(time.Second), Outcome: OutcomeCanonical},
				{Slave: "s2", Started: at, Ended: at.Add(time.Second), Outcome: OutcomeInvalid},
				{Slave: "s3", Started: at, Ended: at.Add(time.Second), Outcome: OutcomeNotNeeded},
			}},
		{ID: 3, App: "a", Kind: "sha256", State: protocol.StatePending, Quorum: 2, Payload: bytes.Repeat([]byte("x"), InlinePayload+1)},
		{ID: 4, App: "a", Kind: "wasm", Module: strings.Repeat("ab", 32), State: protocol.StatePending, Replicas: 255, Quorum: 255},
	}
	b := new(Batch)
	for _, r := range want {
		b.PutTask(r)
	}
	commit(t, s, b)
	s = reopen(t, s)
	for _, w := range want {
		r, err := s.Get(w.ID)
		if err != nil {
			t.Fatalf("Get(%d): %v", w.ID, err)
		}
		sameRecord(t, r, w)
	}
	plain := &Record{ID: 5, App: "a", Kind: "k", State: protocol.StatePending, Payload: []byte("p")}
	if enc := appendState(nil, plain); enc[offFlags] != 0 {
		t.Errorf("a task that is not replicated has flags %#x", enc[offFlags])
	}
}

func TestDecodeRejectsBadReplicas(t *testing.T) {
	// The header, then the three uvarints, then a well-formed rest.
	rest := appendState(nil, &Record{ID: 1, State: protocol.StatePending})[headerLen:]
	rec := func(replicas, quorum uint64, parent ...byte) []byte {
		b := []byte{recordFormat, flagReplica, byte(protocol.StatePending)}
		b = binary.AppendUvarint(b, replicas)
		b = binary.AppendUvarint(b, quorum)
		if parent == nil {
			parent = []byte{0}
		}
		return append(append(b, parent...), rest...)
	}
	if r, err := decodeRecord(9, rec(255, 255)); err != nil || r.Replicas != 255 || r.Quorum != 255 {
		t.Fatalf("replicas and quorum of 255: %+v %v", r, err)
	}
	if r, err := decodeRecord(9, rec(0, 7)); err != nil || r.Quorum != 7 {
		t.Fatalf("a quorum with the app's replicas: %+v %v", r, err)
	}
	for name, data := range map[string][]byte{
		"replicas over 255":      rec(256, 1),
		"quorum over 255":        rec(0, 256),
		"quorum over replicas":   rec(2, 3),
		"huge replicas":          rec(1<<63, 0),
		"parent past the end":    rec(1, 1, 0x80, 0x80)[:headerLen+4],
		"replicas past the end":  {recordFormat, flagReplica, byte(protocol.StatePending), 0x80},
		"unknown flag beside it": append([]byte{recordFormat, flagReplica | 1<<4, byte(protocol.StatePending), 1, 1, 0}, rest...),
	} {
		if _, err := decodeRecord(9, data); err == nil || !strings.Contains(err.Error(), "task 9: corrupt record") {
			t.Errorf("%s: decode = %v, want a corrupt record", name, err)
		}
	}
}

func TestValueKeys(t *testing.T) {
	s := openStore(t, tempPath(t), Options{NoSync: true})
	ctx := context.Background()
	long := strings.Repeat("k", MaxValueKey)
	var b Batch
	b.PutValue(BucketVolunteers, long, nil)
	b.PutValue(BucketVolunteers, "v", []byte{})
	commit(t, s, &b)
	if v, err := s.GetValue(BucketVolunteers, long); err != nil || v == nil || len(v) != 0 {
		t.Errorf("a key of %d bytes: %q %v", MaxValueKey, v, err)
	}
	for name, put := range map[string]func(*Batch){
		"too long":        func(b *Batch) { b.PutValue(BucketApps, long+"k", []byte("x")) },
		"empty":           func(b *Batch) { b.PutValue(BucketApps, "", []byte("x")) },
		"delete too long": func(b *Batch) { b.DeleteValue(BucketApps, long+"k") },
		"delete empty":    func(b *Batch) { b.DeleteValue(BucketApps, "") },
	} {
		var bad Batch
		bad.PutValue(BucketApps, "kept out", []byte("x")) // the whole commit fails
		put(&bad)
		if err := s.CommitWait(ctx, &bad); err == nil || !strings.Contains(err.Error(), "want 1 to 1024") {
			t.Errorf("%s: commit = %v, want it refused", name, err)
		}
	}
	if v, err := s.GetValue(BucketApps, "kept out"); err != nil || v != nil {
		t.Errorf("a failed commit wrote a value: %q %v", v, err)
	}
	var unknown Batch
	unknown.PutValue(Bucket(0), "k", nil)
	if err := s.CommitWait(ctx, &unknown); err == nil || !strings.Contains(err.Error(), "unknown bucket") {
		t.Errorf("a value in bucket 0: %v", err)
	}
	if _, err := s.GetValue(Bucket(9), "k"); err == nil {
		t.Error("GetValue of an unknown bucket succeeded")
	}
	if err := s.LoadValues(Bucket(9), func(string, []byte) error { return nil }); err == nil {
		t.Error("LoadValues of an unknown bucket succeeded")
	}
}

func TestValuesDeleteLoadAndStats(t *testing.T) {
	s := openStore(t, tempPath(t), Options{NoSync: true})
	before := s.Stats().Bytes
	var b Batch
	b.PutValue(BucketTrust, "v1\x00a", []byte("one"))
	b.PutValue(BucketTrust, "v2\x00a", []byte("two"))
	b.PutValue(BucketTrust, "v3\x00a", []byte("three"))
	b.DeleteValue(BucketTrust, "v3\x00a")
	b.PutValue(BucketTrust, "v1\x00a", []byte("ONE")) // the last put wins
	b.DeleteValue(BucketTrust, "absent")
	commit(t, s, &b)
	if got := s.Stats().Bytes - before; got < uint64(len("v1\x00aone")) {
		t.Errorf("Stats counted %d bytes for the values", got)
	}
	var keys, vals []string
	var kept [][]byte
	if err := s.LoadValues(BucketTrust, func(k string, v []byte) error {
		keys, vals, kept = append(keys, k), append(vals, string(v)), append(kept, v)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(keys, ",") != "v1\x00a,v2\x00a" || strings.Join(vals, ",") != "ONE,two" {
		t.Fatalf("LoadValues: %q %q", keys, vals)
	}
	var d Batch
	d.DeleteValue(BucketTrust, "v1\x00a")
	commit(t, s, &d)
	s = reopen(t, s)
	if string(kept[0]) != "ONE" {
		t.Errorf("a value kept from LoadValues changed to %q", kept[0])
	}
	if v, err := s.GetValue(BucketTrust, "v1\x00a"); err != nil || v != nil {
		t.Errorf("a deleted value: %q %v", v, err)
	}
	stop := errors.New("stop")
	if err := s.LoadValues(BucketTrust, func(string, []byte) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("LoadValues = %v, want fn's error", err)
	}
	// The buckets are apart.
	if v, err := s.GetValue(BucketApps, "v2\x00a"); err != nil || v != nil {
		t.Errorf("a trust key read from apps: %q %v", v, err)
	}
}

// A file from before the value buckets gains them when it is opened.
func TestValuesOnOlderFile(t *testing.T) {
	path := newStoreFile(t)
	tamper(t, path, func(tx *bbolt.Tx) error {
		for _, name := range []string{"trust", "apps", "volunteers"} {
			if err := tx.DeleteBucket([]byte(name)); err != nil {
				return err
			}
		}
		return nil
	})
	s := openStore(t, path, Options{NoSync: true})
	for _, bk := range []Bucket{BucketTrust, BucketApps, BucketVolunteers} {
		if v, err := s.GetValue(bk, "k"); err != nil || v != nil {
			t.Fatalf("%s: GetValue = %q, %v", bk, v, err)
		}
		if err := s.LoadValues(bk, func(string, []byte) error { return errors.New("a value") }); err != nil {
			t.Fatalf("%s: LoadValues = %v", bk, err)
		}
		var b Batch
		b.PutValue(bk, "k", []byte(bk.String()))
		commit(t, s, &b)
	}
	s = reopen(t, s)
	for _, bk := range []Bucket{BucketTrust, BucketApps, BucketVolunteers} {
		if v, err := s.GetValue(bk, "k"); err != nil || string(v) != bk.String() {
			t.Errorf("%s after reopen: %q %v", bk, v, err)
		}
	}
}
