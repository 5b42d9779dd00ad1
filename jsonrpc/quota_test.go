package jsonrpc

import (
	"testing"

	"github.com/anthill-project/anthill/master"
)

// H2: a submission past one of the master's quotas is refused with the
// stable quota code, data naming the quota and its value, and nothing of
// it is stored.
func TestSubmitOverQuota(t *testing.T) {
	e := start(t, envOpts{master: master.Options{MaxQueuedTasks: 2, MaxKinds: 1, MaxSubmitTasks: 3}})
	e.submit("a", "echo", "x")
	task := obj{"kind": "echo"}
	err := e.wantError("Tasks.SubmitBatch", obj{"app": "a", "tasks": []obj{task, task}}, CodeQuotaExceeded,
		"quota exceeded: max-queued-tasks is 2")
	if string(err.Data) != `{"quota":"max-queued-tasks","limit":2}` {
		t.Errorf("data %s", err.Data)
	}
	e.wantError("Tasks.SubmitBatch", obj{"app": "a", "tasks": []obj{task, task, task, task}}, CodeQuotaExceeded, "max-submit-tasks is 3")
	e.wantError("Tasks.Submit", obj{"app": "a", "kind": "other"}, CodeQuotaExceeded, "max-kinds is 1")
	if got := e.list(obj{"app": "a"}); len(got) != 1 {
		t.Fatalf("%d tasks stored, want the first one alone", len(got))
	}
}
