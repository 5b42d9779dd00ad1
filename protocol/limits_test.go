package protocol

import (
	"strings"
	"testing"
	"time"
)

func TestCheckTask(t *testing.T) {
	for _, tc := range []struct {
		nt    NewTask
		field TaskField
		code  string
		err   string
	}{
		{NewTask{Kind: "k"}, "", "", ""},
		{NewTask{}, FieldKind, CodeInvalidTask, "task 2: kind must not be empty"},
		{NewTask{Kind: string(make([]byte, MaxKindBytes+1))}, FieldKind, CodeInvalidTask, "task 2: kind is longer than 128 bytes"},
		{NewTask{Kind: "k", Payload: make([]byte, 11)}, FieldPayload, CodePayloadTooLarge, "task 2: payload is 11 bytes; the limit is 10"},
		{NewTask{Kind: "k", Timeout: -1}, FieldTimeout, CodeInvalidTask, "task 2: timeout must not be negative"},
		{NewTask{Kind: "k", Timeout: time.Hour}, FieldTimeout, CodeInvalidTask, "task 2: timeout of 1h0m0s exceeds the limit of 1m0s"},
		{NewTask{Kind: "k", MaxAttempts: MaxAttempts + 1}, FieldMaxAttempts, CodeInvalidTask, "task 2: max attempts exceeds 1000"},
		{NewTask{Kind: "k", Key: string(make([]byte, MaxKeyBytes+1))}, FieldKey, CodeInvalidTask, "task 2: key is longer than 1024 bytes"},
		{NewTask{Kind: "k", Replicas: 3, Quorum: 2}, "", "", ""},
		{NewTask{Kind: "k", Quorum: 2}, "", "", ""}, // with the app's replicas
		{NewTask{Kind: "k", Replicas: MaxReplicas + 1}, FieldReplicas, CodeInvalidTask, "task 2: replicas of 17 exceeds 16"},
		{NewTask{Kind: "k", Quorum: MaxReplicas + 1}, FieldQuorum, CodeInvalidTask, "task 2: quorum of 17 exceeds 16"},
		{NewTask{Kind: "k", Replicas: 2, Quorum: 3}, FieldQuorum, CodeInvalidTask, "task 2: quorum of 3 exceeds the task's replicas (2)"},
		{NewTask{Kind: "k", Replicas: MaxReplicas, Quorum: MaxReplicas}, "", "", ""},
		{NewTask{Kind: "k", Quorum: MaxReplicas}, "", "", ""},
		{NewTask{Kind: "k", Replicas: 1, Quorum: 1}, "", "", ""},
		{NewTask{Kind: "k", Replicas: 255, Quorum: 1}, FieldReplicas, CodeInvalidTask, "task 2: replicas of 255 exceeds 16"},
		{NewTask{Kind: "k", Replicas: 1, Quorum: 2}, FieldQuorum, CodeInvalidTask, "task 2: quorum of 2 exceeds the task's replicas (1)"},
	} {
		err := CheckTask(2, &tc.nt, 10, time.Minute)
		if tc.err == "" {
			if err != nil {
				t.Errorf("%+v refused: %v", tc.nt, err)
			}
			continue
		}
		if err == nil || err.Error() != tc.err || err.Field != tc.field || err.Code != tc.code || err.Index != 2 {
			t.Errorf("got %+v (%v), want %s %s %q", err, err, tc.field, tc.code, tc.err)
		}
	}
	// Limits a client does not know are not checked.
	if err := CheckTask(0, &NewTask{Kind: "k", Payload: make([]byte, 11), Timeout: time.Hour}, 0, 0); err != nil {
		t.Errorf("unknown limits checked: %v", err)
	}
	if err := CheckBatch(nil, 0, 0); err == nil || err.Index != -1 {
		t.Errorf("empty batch: %v", err)
	}
	if err := CheckBatch(make([]NewTask, MaxSubmitTasks+1), 0, 0); err == nil || err.Index != -1 {
		t.Errorf("batch over the limit: %v", err)
	}
	// The batch names the task and the field.
	batch := []NewTask{{Kind: "k", Replicas: 3}, {Kind: "k", Replicas: 2, Quorum: 3}}
	if err := CheckBatch(batch, 0, 0); err == nil || err.Index != 1 || err.Field != FieldQuorum ||
		err.Error() != "task 1: quorum of 3 exceeds the task's replicas (2)" {
		t.Errorf("a batch with a quorum over its replicas: %+v (%v)", err, err)
	}
}

func TestCheckTaskModule(t *testing.T) {
	h := strings.Repeat("0f", 32)
	nt := NewTask{Module: h, Payload: []byte("x")}
	if err := CheckTask(0, &nt, 0, 0); err != nil || nt.Kind != KindWASM {
		t.Fatalf("a task naming a module: %v, kind %q; want accepted as %q", err, nt.Kind, KindWASM)
	}
	for _, c := range []struct {
		nt    NewTask
		field TaskField
	}{
		{NewTask{Kind: KindWASM}, FieldModule},
		{NewTask{Kind: "echo", Module: h}, FieldKind},
		{NewTask{Module: strings.ToUpper(h)}, FieldModule},
		{NewTask{Module: h[:63]}, FieldModule},
	} {
		err := CheckTask(2, &c.nt, 0, 0)
		if err == nil || err.Field != c.field || err.Code != CodeInvalidTask {
			t.Errorf("CheckTask(%+v) = %v, want a refusal of field %q", c.nt, err, c.field)
		}
	}
}
