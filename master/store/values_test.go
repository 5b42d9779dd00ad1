package store

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

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
