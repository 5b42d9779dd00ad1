package store

import (
	"bytes"
	"errors"
	"testing"

	"github.com/anthill-project/anthill/protocol"
)

// LoadIndex gives every record's summary, the size of a payload kept
// apart included, and decodes a whole record only when asked; the
// summary agrees with the whole record.
func TestLoadIndexSummaries(t *testing.T) {
	s := openStore(t, tempPath(t), Options{})
	var b Batch
	small, large := fullRecord(1), fullRecord(2)
	small.Payload = []byte("small")
	large.Payload = bytes.Repeat([]byte("L"), InlinePayload+100)
	large.Acked, large.State = true, protocol.StateDone
	cp := fullRecord(3)
	cp.Parent, cp.Replicas, cp.Quorum, cp.Payload = 1, 3, 2, nil
	none := fullRecord(4)
	none.Payload, none.Module, none.Key = nil, "", ""
	for _, r := range []*Record{small, large, cp, none} {
		b.PutTask(r)
	}
	// A record rewritten without its payload in hand has no size: the
	// payload's page tells it.
	late := fullRecord(5)
	late.Payload, late.State = bytes.Repeat([]byte("5"), InlinePayload+7), protocol.StatePending
	b.PutTask(late)
	commit(t, s, &b)
	b.Reset()
	noPay := *late
	noPay.Payload = nil
	b.PutState(&noPay)
	commit(t, s, &b)
	want := map[uint64]*Record{1: small, 2: large, 3: cp, 4: none, 5: late}
	seen := 0
	err := s.LoadIndex(func(sum *Summary, full func() (*Record, error)) error {
		w := want[sum.ID]
		seen++
		switch {
		case sum.State != w.State, sum.Acked != w.Acked, sum.Parent != w.Parent, sum.Priority != w.Priority,
			!sum.FinishedAt.Equal(w.FinishedAt), string(sum.App) != w.App, string(sum.Kind) != w.Kind,
			string(sum.Module) != w.Module, string(sum.Key) != w.Key, sum.PayloadLen != len(w.Payload):
			t.Errorf("summary %+v of %+v", sum, w)
		}
		if sum.ID == 2 {
			r, err := full()
			if err != nil {
				t.Fatal(err)
			}
			sameRecord(t, r, large)
		}
		return nil
	})
	if err != nil || seen != 5 {
		t.Fatalf("LoadIndex: %d records, %v", seen, err)
	}
	stop := errors.New("stop")
	if err := s.LoadIndex(func(*Summary, func() (*Record, error)) error { return stop }); err != stop {
		t.Fatalf("callback error: %v", err)
	}
}

// A Reader reads records of one snapshot, refuses an id not stored, and
// can be closed before it read anything.
func TestReaderGet(t *testing.T) {
	s := openStore(t, tempPath(t), Options{})
	var b Batch
	r := fullRecord(7)
	r.Payload = bytes.Repeat([]byte("p"), InlinePayload+1)
	b.PutTask(r)
	commit(t, s, &b)
	idle := s.Reader()
	idle.Close()
	rd := s.Reader()
	defer rd.Close()
	got, err := rd.Get(7)
	if err != nil {
		t.Fatal(err)
	}
	sameRecord(t, got, r)
	if _, err := rd.Get(8); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of an id not stored: %v", err)
	}
	rd.Close()
	again := s.Reader()
	defer again.Close()
	if _, err := again.Get(7); err != nil {
		t.Errorf("a second Reader: %v", err)
	}
}
