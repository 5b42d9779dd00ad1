package slave

import (
	"context"
	"strings"
	"testing"

	"github.com/anthill-project/anthill/protocol"
	"github.com/anthill-project/anthill/sandbox"
)

// Every result echoes the lease of the attempt it answers: the master
// counts no other.
func TestResultsEchoTheLease(t *testing.T) {
	p := newPeer(t, nil)
	start(t, p, Options{Registry: builtins()})
	c := p.conn(0)
	c.dispatch(t, protocol.Task{ID: 1, Attempt: 2, Lease: 0xfeedface12345678, Kind: "echo", Payload: []byte("x")},
		protocol.Task{ID: 2, Attempt: 1, Lease: 3, Kind: "fail", Payload: []byte("boom")})
	if r := c.waitResult(t, 1); r.Lease != 0xfeedface12345678 || r.Attempt != 2 {
		t.Fatalf("result %+v does not echo its lease and attempt", r)
	}
	if r := c.waitResult(t, 2); r.Lease != 3 || r.Err != "boom" {
		t.Fatalf("error result %+v does not echo its lease", r)
	}
}

// The slave keeps within the master's announced max_result_bytes, and cuts
// an overlong error to protocol.MaxErrBytes, so that an honest slave never
// sends what the master would hold against it.
func TestResultWithinTheMastersMaxResult(t *testing.T) {
	p := newPeer(t, func(int, *protocol.Hello) protocol.Message {
		w := welcome(protocol.DispatchSend)
		w.MaxResultBytes = 100
		return w
	})
	start(t, p, Options{Registry: registry(map[string]sandbox.Handler{
		"wordy": func(context.Context, []byte) ([]byte, error) {
			return nil, &longError{strings.Repeat("é", protocol.MaxErrBytes)}
		},
	})})
	c := p.conn(0)
	c.dispatch(t, protocol.Task{ID: 1, Kind: "echo", Payload: make([]byte, 200)}, protocol.Task{ID: 2, Kind: "wordy"})
	if r := c.waitResult(t, 1); len(r.Output) != 0 || r.Err != "result of 200 bytes exceeds the master's limit of 100" {
		t.Fatalf("oversized result: %d bytes, err %q", len(r.Output), r.Err)
	}
	// A long error is cut, not turned into another error: the master
	// reads the handler's own words.
	if r := c.waitResult(t, 2); len(r.Err) > protocol.MaxErrBytes || !strings.HasPrefix(r.Err, "éé") {
		t.Fatalf("long error of %d bytes: %.20q", len(r.Err), r.Err)
	}
}

type longError struct{ s string }

func (e *longError) Error() string { return e.s }
