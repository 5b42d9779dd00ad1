package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

func samples() []Message {
	return []Message{
		&Hello{Version: Version, Role: RoleSlave, Name: "s1", Host: "h", OS: "linux", Arch: "amd64",
			Cores: 8, MemoryBytes: 1 << 34, Kinds: []string{"echo", "sha256", KindWASM}, Concurrency: 8, Prefetch: 8,
			Modules: []string{strings.Repeat("ab", 32)}, TrustKeys: []string{"k1"}},
		&Hello{Version: Version, Role: RoleSlave, Name: "s2", Kinds: []string{"echo"}, Concurrency: 1, Leaderboard: true},
		&Welcome{Version: Version, Session: "abc", Dispatch: DispatchPoll, HeartbeatMillis: 5000, MaxFrameBytes: 1 << 24, MaxPayloadBytes: 1 << 20},
		&Error{Code: CodeBadFrame, Message: "nope"},
		&Dispatch{Tasks: []Task{
			{ID: 1 << 50, Attempt: 1, Lease: 0xdeadbeefcafe, Kind: "echo", Timeout: 1500 * time.Millisecond, Payload: []byte("hi")},
			{ID: 1<<50 + 1, Attempt: 3, Kind: "sleep", Payload: []byte{}},
			{ID: 1<<50 + 2, Attempt: 1, Kind: KindWASM, Module: strings.Repeat("ab", 32), Payload: []byte("p")},
			{ID: 1<<50 + 3, Attempt: 1, Kind: KindWASM, Module: strings.Repeat("ab", 32), Payload: []byte("q")},
		}},
		&Results{Results: []Result{
			{ID: 7, Attempt: 1, Lease: 1<<63 + 5, Output: []byte{0, 1, 2}, Duration: 42 * time.Microsecond},
			{ID: 8, Attempt: 2, Err: "boom", Output: []byte{}},
		}},
		&Request{N: 64},
		&Modules{Held: []string{strings.Repeat("ab", 32), strings.Repeat("cd", 32)}},
		&Modules{Held: []string{}},
		&IDs{T: TypeReturn, IDs: []uint64{9, 3, 1 << 60, 0}},
		&IDs{T: TypeCancel, IDs: []uint64{}},
		&IDs{T: TypeNotifyAck, IDs: []uint64{5}},
		&IDs{T: TypeNotifyDone, IDs: []uint64{5, 6}},
		&Submit{Seq: 99, Tasks: []NewTask{
			{Kind: "echo", Payload: []byte("x"), Priority: -5, Timeout: time.Second, MaxAttempts: 4, Key: "k"},
			{Kind: "fail", Payload: []byte{}},
			{Kind: KindWASM, Module: strings.Repeat("ef", 32), Payload: []byte("in")},
			{Kind: "sha256", Payload: []byte("y"), Replicas: 3, Quorum: 2},
			{Kind: "sha256", Payload: []byte("z"), Quorum: 2},
			{Kind: "sha256", Payload: []byte{}, Replicas: 255, Quorum: 255}, // the codec carries what CheckTask refuses
		}},
		&SubmitAck{Seq: 99, FirstID: 1000, Count: 2},
		&SubmitReject{Seq: 99, Index: -1, Code: CodeInvalidTask, Message: "bad"},
		&Notify{Tasks: []Finished{
			{ID: 1000, Kind: "echo", State: StateDone, Attempts: 1, Result: []byte("x")},
			{ID: 1001, Kind: "fail", State: StateFailed, Attempts: 3, Err: "boom", Result: []byte{}},
		}},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, m := range samples() {
		frame := Encode(nil, m)
		if Type(frame[0]) != m.Type() {
			t.Fatalf("%T: type byte %d, want %d", m, frame[0], m.Type())
		}
		got, err := Decode(frame)
		if err != nil {
			t.Fatalf("%s: decode: %v", m.Type(), err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("%s: round trip\n got %#v\nwant %#v", m.Type(), got, m)
		}
	}
}

// Every strict prefix of a binary frame must fail cleanly, never panic or
// decode into something else.
func TestDecodeTruncated(t *testing.T) {
	for _, m := range samples() {
		frame := Encode(nil, m)
		for n := 0; n < len(frame); n++ {
			if _, err := Decode(frame[:n]); err == nil {
				t.Errorf("%s: prefix of %d/%d bytes decoded without error", m.Type(), n, len(frame))
			} else if !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: error %v does not wrap ErrMalformed", m.Type(), err)
			}
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	cases := map[string][]byte{
		"unknown type":    {200, 1, 2},
		"trailing bytes":  append(Encode(nil, &Request{N: 1}), 0),
		"huge count":      {byte(TypeDispatch), 0xff, 0xff, 0xff, 0xff, 0x0f},
		"huge length":     {byte(TypeResults), 1, 1, 1, 1, 0xff, 0xff, 0xff, 0x7f},
		"attempt > 2^32":  {byte(TypeDispatch), 1, 1, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0, 0},
		"bad json hello":  append([]byte{byte(TypeHello)}, "{"...),
		"request overrun": {byte(TypeRequest), 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	}
	for name, frame := range cases {
		if _, err := Decode(frame); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
}

// A frame declaring more items than the receiver accepts is refused before
// anything is allocated for it, whatever the frame's length could hold;
// at the limit it decodes.
func TestDecodeLimits(t *testing.T) {
	messages := func(n int) []Message {
		results := make([]Result, n)
		ids := make([]uint64, n)
		submit := &Submit{Seq: 1, Tasks: make([]NewTask, n)}
		for i := range n {
			results[i] = Result{ID: uint64(i), Attempt: 1, Lease: 9}
			ids[i] = uint64(i + 1)
			submit.Tasks[i].Kind = "k"
		}
		return []Message{&Results{Results: results}, &IDs{T: TypeReturn, IDs: ids}, submit, &IDs{T: TypeNotifyAck, IDs: ids}, batch(n)}
	}
	small, large := messages(5), messages(500)
	// refuse returns the bytes one refusal allocates, averaged over runs.
	refuse := func(m Message) (uint64, error) {
		frame := Encode(nil, m)
		var err error
		const runs = 20
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range runs {
			_, err = DecodeWith(frame, DecodeLimits{MaxItems: 4})
		}
		runtime.ReadMemStats(&after)
		return (after.TotalAlloc - before.TotalAlloc) / runs, err
	}
	for i, m := range small {
		if _, err := DecodeWith(Encode(nil, m), DecodeLimits{MaxItems: 5}); err != nil {
			t.Errorf("%s of 5 items with a limit of 5: %v", m.Type(), err)
		}
		few, err := refuse(m)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "exceeds the limit of 4") {
			t.Errorf("%s of 5 items with a limit of 4: got %v, want a refusal naming the limit", m.Type(), err)
		}
		// The message struct and the error's text, never the items: a
		// refusal of 500 items allocates what one of 5 does, give or take
		// the digits of the count. (An absolute figure would differ under
		// the race detector, which allocates on its own.)
		many, _ := refuse(large[i])
		if many > few+256 {
			t.Errorf("%s: refusing 500 items allocated %d bytes, 5 items %d", m.Type(), many, few)
		}
	}
	// The review's frame: 16 MiB declaring 3.3M minimal results.
	const n = 3_355_427
	big := binary.AppendUvarint([]byte{byte(TypeResults)}, n)
	big = append(big, make([]byte, 6*n)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := DecodeWith(big, DecodeLimits{MaxItems: 1024})
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("3.3M results with a limit of 1024 decoded")
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Fatalf("refusing 3.3M results allocated %d bytes", n)
	}
}

// Byte slices of a frame with several items do not alias the frame: one
// payload that lives on must not keep the others' bytes in memory. A frame
// of one item may alias it.
func TestDecodeCopiesItemsOfBigFrames(t *testing.T) {
	frame := Encode(nil, batch(3))
	m, err := Decode(frame)
	if err != nil {
		t.Fatal(err)
	}
	for i := range frame {
		frame[i] = 0
	}
	for _, x := range m.(*Dispatch).Tasks {
		if string(x.Payload) != "payload!" {
			t.Fatalf("payload %q changed with its frame", x.Payload)
		}
	}
}

// Payloads travel raw: a 1000-byte payload adds a handful of framing bytes,
// not base64's third.
func TestNoPayloadInflation(t *testing.T) {
	p := bytes.Repeat([]byte{0xAB}, 1000)
	frame := Encode(nil, &Dispatch{Tasks: []Task{{ID: 1, Attempt: 1, Kind: "echo", Payload: p}}})
	if len(frame) > len(p)+20 {
		t.Fatalf("frame of %d bytes for a %d-byte payload", len(frame), len(p))
	}
}

// FuzzDecode decodes any frame, with and without limits. Its seed corpus
// is samples() and testdata/fuzz/FuzzDecode (forged counts, frames over a
// limit, overflowing leases), run by go test.
func FuzzDecode(f *testing.F) {
	for _, m := range samples() {
		f.Add(Encode(nil, m))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		// Under a limit, whatever decodes holds no more items than it.
		if m, err := DecodeWith(frame, DecodeLimits{MaxItems: 3}); err == nil && items(m) > 3 {
			t.Fatalf("%s of %d items decoded under a limit of 3", m.Type(), items(m))
		}
		m, err := Decode(frame)
		if err != nil {
			return
		}
		// Whatever decodes must encode and decode to the same message.
		again, err := Decode(Encode(nil, m))
		if err != nil {
			t.Fatalf("re-decode of %s: %v", m.Type(), err)
		}
		if !reflect.DeepEqual(normalize(m), normalize(again)) {
			t.Fatalf("%s not stable:\n%#v\n%#v", m.Type(), m, again)
		}
	})
}

// items counts the elements of a message, as DecodeLimits does.
func items(m Message) int {
	switch m := m.(type) {
	case *Dispatch:
		return len(m.Tasks)
	case *Results:
		return len(m.Results)
	case *IDs:
		return len(m.IDs)
	case *Submit:
		return len(m.Tasks)
	case *Notify:
		return len(m.Tasks)
	}
	return 0
}

// normalize maps empty and nil slices together; JSON and binary bodies may
// legitimately differ there.
func normalize(m Message) Message {
	if h, ok := m.(*Hello); ok {
		c := *h
		for _, l := range []*[]string{&c.Kinds, &c.Modules, &c.TrustKeys} {
			if len(*l) == 0 {
				*l = nil
			}
		}
		return &c
	}
	return m
}

func batch(n int) *Dispatch {
	d := &Dispatch{}
	for i := range n {
		d.Tasks = append(d.Tasks, Task{ID: uint64(1<<50 + i), Attempt: 1, Kind: "echo", Timeout: time.Minute, Payload: []byte("payload!")})
	}
	return d
}

func BenchmarkEncodeDispatch100(b *testing.B) {
	d := batch(100)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = Encode(buf[:0], d)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/task")
}

func BenchmarkDecodeDispatch100(b *testing.B) {
	frame := Encode(nil, batch(100))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(frame); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/task")
}

// Version 4 added NewTask.Replicas and Quorum as two bytes after the
// module, and Hello.Leaderboard; a hello without it is a hello that does
// not consent.
func TestVersion4Fields(t *testing.T) {
	if Version != 4 {
		t.Fatalf("Version = %d; this test pins version 4's layout", Version)
	}
	frame := Encode(nil, &Submit{Seq: 1, Tasks: []NewTask{{Kind: "k", Replicas: 5, Quorum: 3, Payload: []byte("p")}}})
	want := []byte{byte(TypeSubmit), 1, 1, 1, 'k', 0, 0, 0, 0, 0, 5, 3, 1, 'p'}
	if !bytes.Equal(frame, want) {
		t.Errorf("submit frame % x, want % x", frame, want)
	}
	// This version 3 frame, without the two bytes, is malformed rather
	// than misread: its payload's length and byte become the replicas and
	// quorum, and the payload is missing.
	v3 := []byte{byte(TypeSubmit), 1, 1, 1, 'k', 0, 0, 0, 0, 0, 1, 'p'}
	if _, err := Decode(v3); !errors.Is(err, ErrMalformed) {
		t.Errorf("a version 3 submit decoded: %v", err)
	}
	m, err := Decode(append([]byte{byte(TypeHello)}, `{"version":4,"role":"slave","name":"s","kinds":["k"],"concurrency":1}`...))
	if err != nil || m.(*Hello).Leaderboard {
		t.Errorf("a hello without leaderboard: %+v %v", m, err)
	}
	if b := Encode(nil, &Hello{Version: Version, Leaderboard: true}); !strings.Contains(string(b), `"leaderboard":true`) {
		t.Errorf("hello %s lacks the leaderboard", b[1:])
	}
	if b := Encode(nil, &Hello{Version: Version}); strings.Contains(string(b), "leaderboard") {
		t.Errorf("hello %s names the leaderboard without consent", b[1:])
	}
}
