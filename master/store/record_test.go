package store

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.etcd.io/bbolt"

	"github.com/anthill-project/anthill/protocol"
)

// Records as the format 1 encoder wrote them (before the attempt history),
// byte for byte: format1Record is format1Want, format1Empty a pending
// record with every field zero.
const (
	format1Record = "\x01\x03\x04\x0d\x80\x90\xd8\xc6\x9e\x05\x05\x02\x80\xab\xcf\xd0\xd1\xcb\xc0\xa90" +
		"\x80\xd3\xa5\x8a\xd9\xcb\xc0\xa90\x80\x8b\x8a\xd5\x90\xcf\xc0\xa90\x06\x05\x08\x09\x0d\x1c\x01" +
		"renderframeframe-12gpu-box-3exit status 2scene=castle.blend\x00frame=12"
	format1Empty = "\x01\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
)

func format1Want(id uint64) *Record {
	base := time.Date(2025, 3, 4, 5, 6, 7, 890123456, time.UTC)
	return &Record{
		ID: id, App: "render", Kind: "frame", Key: "frame-12", Priority: -7,
		Timeout: 90 * time.Second, MaxAttempts: 5, Attempts: 2, State: protocol.StateFailed,
		CreatedAt: base, StartedAt: base.Add(time.Second), FinishedAt: base.Add(time.Minute),
		Slave: "gpu-box-3", Payload: []byte("scene=castle.blend\x00frame=12"), Result: []byte{},
		Err: "exit status 2", Acked: true, Quiet: true,
	}
}

func TestDecodeFormat1(t *testing.T) {
	got, err := decodeRecord(1<<40, []byte(format1Record))
	if err != nil {
		t.Fatal(err)
	}
	sameRecord(t, got, format1Want(1<<40))
	if got.History != nil {
		t.Errorf("a format 1 record decoded with history %+v", got.History)
	}
	got, err = decodeRecord(3, []byte(format1Empty))
	if err != nil {
		t.Fatal(err)
	}
	sameRecord(t, got, &Record{ID: 3, State: protocol.StatePending})
	// Format 1 ends with the result: a history there is trailing garbage.
	if _, err := decodeRecord(3, []byte(format1Empty+"\x00")); err == nil {
		t.Error("a format 1 record with a history section decoded")
	}
}

// A file of store format 1 holds format 1 records: Open reads them, raises
// the file's format so that an older Anthill refuses it, and AckTask still
// flips the flag in place.
func TestOpenFormat1Store(t *testing.T) {
	path := newStoreFile(t)
	tamper(t, path, func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketMeta).Put(keyFormat, binary.BigEndian.AppendUint64(nil, 1)); err != nil {
			return err
		}
		old := []byte(format1Record)
		old[offFlags] &^= flagAcked
		return tx.Bucket(bucketTasks).Put(taskKey(nil, 5), old)
	})

	s := openStore(t, path, Options{NoSync: true})
	want := format1Want(5)
	want.Acked = false
	got, err := s.Get(5)
	if err != nil {
		t.Fatal(err)
	}
	sameRecord(t, got, want)
	b := new(Batch)
	b.AckTask(5)
	commit(t, s, b)
	var stored []byte
	if err := s.db.View(func(tx *bbolt.Tx) error {
		stored = bytes.Clone(tx.Bucket(bucketTasks).Get(taskKey(nil, 5)))
		if f := binary.BigEndian.Uint64(tx.Bucket(bucketMeta).Get(keyFormat)); f != format {
			t.Errorf("store format %d after Open, want %d", f, format)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if stored[offFormat] != recordFormat || stored[offFlags]&flagAcked == 0 {
		t.Errorf("after AckTask the record's header is %x, want format %d (rewritten by Open) and acked", stored[:headerLen], recordFormat)
	}
	got, err = s.Get(5)
	if err != nil {
		t.Fatal(err)
	}
	sameRecord(t, got, format1Want(5))
}

func TestHistoryIsBounded(t *testing.T) {
	start := time.Unix(1_750_000_000, 0)
	r := &Record{ID: 1, State: protocol.StateRunning}
	for i := range MaxHistory + 4 {
		r.History = append(r.History, Attempt{
			Slave: string(rune('a' + i)), Started: start.Add(time.Duration(i) * time.Second),
			Ended: start.Add(time.Duration(i)*time.Second + time.Millisecond), Outcome: OutcomeFailed,
			Err: strings.Repeat("é", 200), // 400 bytes, two per rune
		})
	}
	data := appendRecord(nil, r)
	if len(data) > encodedLen(r) {
		t.Fatalf("encoded %d bytes, more than encodedLen's %d", len(data), encodedLen(r))
	}
	got, err := decodeRecord(1, data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.History) != MaxHistory {
		t.Fatalf("%d attempts kept, want %d", len(got.History), MaxHistory)
	}
	// The oldest go.
	if a := got.History[0]; a.Slave != "e" || !a.Started.Equal(start.Add(4*time.Second)) {
		t.Errorf("oldest attempt kept is %+v, want the fifth", a)
	}
	for _, a := range got.History {
		if len(a.Err) > MaxAttemptErr || !utf8.ValidString(a.Err) || !strings.HasSuffix(a.Err, "…") {
			t.Fatalf("error of %d bytes kept: %q", len(a.Err), a.Err)
		}
	}
}

func TestClipErr(t *testing.T) {
	fits := strings.Repeat("x", MaxAttemptErr)
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"exit status 1", "exit status 1"},
		{fits, fits},
		{fits + "y", strings.Repeat("x", MaxAttemptErr-3) + "…"},
		// A rune across the cut is left out whole.
		{strings.Repeat("x", MaxAttemptErr-4) + "€€", strings.Repeat("x", MaxAttemptErr-4) + "…"},
	} {
		got := ClipErr(tc.in)
		if got != tc.want {
			t.Errorf("ClipErr(%d bytes) = %q, want %q", len(tc.in), got, tc.want)
		}
		if len(got) > MaxAttemptErr || !utf8.ValidString(got) {
			t.Errorf("ClipErr(%d bytes) is %d bytes, valid UTF-8 %v", len(tc.in), len(got), utf8.ValidString(got))
		}
	}
}

func TestDecodeRejectsBadHistory(t *testing.T) {
	base := appendRecord(nil, &Record{State: protocol.StatePending})
	base = base[:len(base)-1] // everything before the history's count
	attempt := func(outcome byte, slave, err uint64) []byte {
		b := binary.AppendVarint(nil, 1)
		b = binary.AppendVarint(b, 2)
		b = append(b, outcome)
		b = binary.AppendUvarint(b, slave)
		return binary.AppendUvarint(b, err)
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(append([][]byte{base}, parts...), nil) }
	ok := cat([]byte{1}, attempt(byte(OutcomeDone), 1, 2), []byte("sEE"))
	if r, err := decodeRecord(1, ok); err != nil || len(r.History) != 1 || r.History[0].Err != "EE" {
		t.Fatalf("well-formed history: %+v %v", r, err)
	}
	for name, data := range map[string][]byte{
		"too many attempts":   cat([]byte{MaxHistory + 1}, bytes.Repeat(attempt(0, 0, 0), MaxHistory+1)),
		"unknown outcome":     cat([]byte{1}, attempt(byte(maxOutcome)+1, 0, 0)),
		"error too long":      cat([]byte{1}, attempt(0, 0, MaxAttemptErr+1), bytes.Repeat([]byte("e"), MaxAttemptErr+1)),
		"string past the end": cat([]byte{1}, attempt(0, 1, 2), []byte("sE")),
		"huge string length":  cat([]byte{1}, attempt(0, 1<<63, 0)),
		"trailing bytes":      cat([]byte{1}, attempt(0, 1, 2), []byte("sEEx")),
		"trailing after none": cat([]byte{0, 0}),
		"no history":          cat(),
	} {
		if _, err := decodeRecord(9, data); err == nil || !strings.Contains(err.Error(), "task 9") {
			t.Errorf("%s: decode = %v, want an error naming task 9", name, err)
		}
	}
}
