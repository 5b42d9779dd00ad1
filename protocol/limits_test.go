package protocol

import (
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
}
