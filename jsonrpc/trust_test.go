package jsonrpc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"

	"github.com/anthill-project/anthill/sandbox"
	"github.com/anthill-project/anthill/slave"
)

// secondSlave runs another real in-process slave, the identity "s2".
func (e *env) secondSlave() {
	e.t.Helper()
	token, err := e.m.EnrollVolunteer("s2")
	if err != nil {
		e.t.Fatal(err)
	}
	reg := sandbox.NewRegistry()
	slave.RegisterBuiltins(reg)
	s, err := slave.New(slave.Options{Master: e.m.URL(), Token: token, Registry: reg, Name: "s2", Concurrency: 4, Grace: -1})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("slave s2 run: %v", err)
		}
	})
}

func TestReplicatedTaskOverTheAPI(t *testing.T) {
	e := start(t, envOpts{slave: true})
	e.secondSlave()
	var sub SubmitResult
	e.call("Tasks.Submit", map[string]any{"app": "scripts", "kind": "sha256", "payload": []byte("hello"), "replicas": 2, "quorum": 2}, &sub)
	var w WaitResult
	e.call("Tasks.Wait", map[string]any{"ids": []uint64{sub.ID}, "timeout_ms": 20000}, &w)
	sum := sha256.Sum256([]byte("hello"))
	if !w.Done || w.Tasks[0].State != "done" || string(w.Tasks[0].Result) != hex.EncodeToString(sum[:]) {
		t.Fatalf("wait: %+v", w)
	}
	var got Task
	e.call("Tasks.Get", IDParams{ID: sub.ID}, &got)
	if got.Replicas != 2 || got.Quorum != 2 || len(got.Copies) != 2 {
		t.Fatalf("task detail: replicas %d quorum %d copies %+v", got.Replicas, got.Quorum, got.Copies)
	}
	seen := map[string]bool{}
	for _, c := range got.Copies {
		if c.Outcome != "canonical" || seen[c.Slave] {
			t.Errorf("copy %+v: want canonical, each on its own volunteer", c)
		}
		seen[c.Slave] = true
	}
	var list VolunteerList
	e.call("Volunteers.List", nil, &list)
	for _, v := range list.Volunteers {
		if (v.Name == "s1" || v.Name == "s2") && (v.ValidResults != 1 || v.InvalidResults != 0) {
			t.Errorf("volunteer %+v: want one valid result", v)
		}
	}
	var one Volunteer
	e.call("Volunteers.Get", VolunteerParams{Name: "s1"}, &one)
	if len(one.Apps) != 1 || one.Apps[0].App != "scripts" || one.Apps[0].ValidResults != 1 || one.Apps[0].Need != 10 {
		t.Errorf("Volunteers.Get s1: %+v", one)
	}
	e.wantError("Volunteers.Get", VolunteerParams{Name: "nobody"}, CodeNotFound, "nobody")
	// The copies are the task's alone: a listing shows the task once.
	var page ListResult
	e.call("Tasks.List", ListParams{App: "scripts"}, &page)
	if len(page.Tasks) != 1 {
		t.Errorf("Tasks.List shows %d tasks, want 1", len(page.Tasks))
	}
}

func TestReplicaParamsAreChecked(t *testing.T) {
	e := start(t, envOpts{})
	for _, tc := range []struct {
		params map[string]any
		field  string
	}{
		{map[string]any{"app": "a", "kind": "echo", "replicas": 17}, "replicas"},
		{map[string]any{"app": "a", "kind": "echo", "replicas": -1}, "replicas"},
		{map[string]any{"app": "a", "kind": "echo", "replicas": 2, "quorum": 3}, "quorum"},
	} {
		err := e.wantError("Tasks.Submit", tc.params, CodeInvalidParams, tc.field)
		if f := fieldOf(t, err); f != tc.field {
			t.Errorf("%v: error names %q, want %q", tc.params, f, tc.field)
		}
	}
	var c AppConfig
	e.call("Apps.Configure", map[string]any{"app": "a", "replicas": 3}, &c)
	e.call("Apps.Configure", map[string]any{"app": "a", "adaptive": true}, &c)
	if c.Replicas != 3 || !c.Adaptive || c.Quorum != 0 || c.Weight != 1 {
		t.Errorf("configure kept %+v, want replicas 3, adaptive and weight 1", c)
	}
	e.call("Apps.Configure", map[string]any{"app": "a", "weight": 5}, &c)
	if c.Weight != 5 || c.Replicas != 3 {
		t.Errorf("configure weight: %+v", c)
	}
	for _, w := range []int{0, -1, 70000} {
		if f := fieldOf(t, e.wantError("Apps.Configure", map[string]any{"app": "a", "weight": w}, CodeInvalidParams)); f != "weight" {
			t.Errorf("weight %d: error names %q", w, f)
		}
	}
	for _, p := range []map[string]any{
		{"app": "a", "replicas": 1},            // adaptive needs 2
		{"app": "a", "quorum": 4},              // more than replicas
		{"app": "b", "replicas": 99},           // over the wire's limit
		{"app": "", "replicas": 2},             // no app
		{"app": "b", "adaptive": "yes please"}, // not a boolean
	} {
		e.wantError("Apps.Configure", p, CodeInvalidParams)
	}
}

// fieldOf is the field an invalid-params error names in its data.
func fieldOf(t *testing.T, err *Error) string {
	t.Helper()
	var d struct {
		Field string `json:"field"`
	}
	if err == nil || json.Unmarshal(err.Data, &d) != nil {
		t.Fatalf("error %v carries no field", err)
	}
	return d.Field
}
