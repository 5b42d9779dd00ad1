package sched

import (
	"strings"
	"testing"
	"time"

	"github.com/anthill-project/anthill/protocol"
)

// Options that make no sense are refused when the scheduler is made, with
// the option named, instead of misbehaving later (review L5: a negative
// backoff panicked in a connection handler; a negative timeout went on the
// wire as a huge number; -1 attempts became 4294967295).
func TestOptionsRefuseWhatMakesNoSense(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"negative backoff", Options{RetryBackoff: -time.Second}, "retry backoff"},
		{"negative backoff max", Options{RetryBackoffMax: -time.Second}, "retry backoff max"},
		{"backoff over its max", Options{RetryBackoff: time.Minute, RetryBackoffMax: time.Second}, "exceeds retry backoff max"},
		{"negative default timeout", Options{DefaultTimeout: -5 * time.Second}, "default timeout"},
		{"negative max timeout", Options{MaxTimeout: -time.Second}, "max timeout"},
		{"negative lease grace", Options{LeaseGrace: -time.Second}, "lease grace"},
		{"negative attempts", Options{DefaultAttempts: -1}, "default attempts"},
		{"too many attempts", Options{DefaultAttempts: protocol.MaxAttempts + 1}, "default attempts"},
		{"negative notify window", Options{NotifyWindow: -1}, "notify window"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.setDefaults()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("setDefaults() = %v, want an error naming %q", err, tc.want)
			}
		})
	}
	var o Options
	if err := o.setDefaults(); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
}

// The retry delay doubles per attempt up to its cap and never wraps
// around, whatever the base: shifting a 3h base by 20 overflowed.
func TestBackoffNeverOverflows(t *testing.T) {
	for _, tc := range []struct {
		base, max time.Duration
		attempts  uint32
		want      time.Duration
	}{
		{100 * time.Millisecond, 30 * time.Second, 1, 100 * time.Millisecond},
		{100 * time.Millisecond, 30 * time.Second, 3, 400 * time.Millisecond},
		{100 * time.Millisecond, 30 * time.Second, 1000, 30 * time.Second},
		{3 * time.Hour, 1 << 62, 1000, 1 << 62},
		{1 << 62, 1 << 62, 1000, 1 << 62},
	} {
		if got := backoff(tc.base, tc.max, tc.attempts); got != tc.want {
			t.Errorf("backoff(%v, %v, %d) = %v, want %v", tc.base, tc.max, tc.attempts, got, tc.want)
		}
	}
}

// NotifyDone confirms only what will never be notified again: an ack of
// another application's task, or of an unfinished one, is not echoed
// (review L6), while an id the master no longer knows is.
func TestNotifyDoneConfirmsOnlyWhatWasAcknowledged(t *testing.T) {
	h := newHarness(t, Options{})
	sl, so := h.slave("s", 4, "k")
	a, ao := h.app("a")
	b, bo := h.app("b")
	ack := h.push(a, ao, 1, protocol.NewTask{Kind: "k"}, protocol.NewTask{Kind: "k"})
	d := readAs[*protocol.Dispatch](t, so)
	h.complete(sl, []protocol.Result{result(d.Tasks[0].ID, 1, "out")})
	readAs[*protocol.Notify](t, ao)
	done, running := ack.FirstID, ack.FirstID+1

	h.s.Acknowledge(b, bo, []uint64{done, running})
	h.s.Acknowledge(b, bo, []uint64{1}) // unknown: never notified again
	if got := readAs[*protocol.IDs](t, bo); len(got.IDs) != 1 || got.IDs[0] != 1 {
		t.Fatalf("b got notify_done %v; want only [1]: it acknowledged nothing of a's", got.IDs)
	}
	h.s.Acknowledge(a, ao, []uint64{running, done})
	if got := readAs[*protocol.IDs](t, ao); len(got.IDs) != 1 || got.IDs[0] != done {
		t.Fatalf("a got notify_done %v; want [%d]: the other task is still running", got.IDs, done)
	}
}

// A notification always fits a frame, even for a result stored under
// larger limits than the master now runs with (review M3: such a frame was
// refused by the application on every reconnect, forever). It arrives as
// an error saying why; the stored task keeps its result.
func TestNotificationOverTheFrameArrivesAsAnError(t *testing.T) {
	h := newHarness(t, Options{})
	sl, so := h.slave("s", 1, "k")
	a, ao := h.app("a")
	ack := h.push(a, ao, 1, protocol.NewTask{Kind: "k"})
	h.s.DetachApp(a, ao)
	d := readAs[*protocol.Dispatch](t, so)
	big := make([]byte, 512<<10)
	h.complete(sl, []protocol.Result{{ID: d.Tasks[0].ID, Attempt: 1, Output: big}})
	h.wait(ack.FirstID)
	h.s.DetachSlave(sl)

	h.opts.MaxFrame, h.opts.MaxPayload = 64<<10, 16<<10
	h.restart()
	_, ao = h.app("a")
	n := readAs[*protocol.Notify](t, ao)
	if len(n.Tasks) != 1 || n.Tasks[0].State != protocol.StateFailed || !strings.Contains(n.Tasks[0].Err, "does not fit a notify frame") {
		t.Fatalf("notified %+v", n.Tasks)
	}
	if size := len(protocol.Encode(nil, n)); size > h.opts.MaxFrame {
		t.Fatalf("a notify frame of %d bytes; the frame limit is %d", size, h.opts.MaxFrame)
	}
	if info := h.task(ack.FirstID); info.State != protocol.StateDone || len(info.Result) != len(big) {
		t.Fatalf("stored task %v with %d result bytes", info.State, len(info.Result))
	}
}
