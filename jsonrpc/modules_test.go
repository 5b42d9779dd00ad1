package jsonrpc

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/anthill-project/anthill/internal/modsig"
	"github.com/anthill-project/anthill/internal/testmaster"
	"github.com/anthill-project/anthill/internal/testwasm"
	"github.com/anthill-project/anthill/master"
)

// The module methods against a real master: an upload is listed, got and
// deleted; bad params are refused naming the field.
func TestModuleMethods(t *testing.T) {
	e := start(t, envOpts{master: master.Options{MaxModuleBytes: 4 << 10}})
	code := testwasm.Command(t.Name())
	pub, priv, err := modsig.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k, _ := modsig.ParsePrivate(priv)
	sig := modsig.Sign(k, modsig.Hash(code))
	var up ModuleUploadResult
	e.call("Modules.Upload", obj{"wasm": code, "name": "noop", "signatures": []modsig.Signature{sig}}, &up)
	if up.Hash != modsig.Hash(code) || up.Size != int64(len(code)) || up.Name != "noop" {
		t.Fatalf("Modules.Upload gave %+v", up)
	}
	var list ModuleList
	e.call("Modules.List", nil, &list)
	if len(list.Modules) != 1 || list.Modules[0].Hash != up.Hash || list.Modules[0].By != "admin" ||
		len(list.Modules[0].Signers) != 1 || list.Modules[0].Signers[0] != pub || list.Modules[0].Created.IsZero() {
		t.Fatalf("Modules.List gave %+v", list)
	}
	var got Module
	e.call("Modules.Get", obj{"hash": up.Hash}, &got)
	if got.Name != "noop" || got.Size != up.Size {
		t.Fatalf("Modules.Get gave %+v", got)
	}

	e.wantError("Modules.Upload", `{"wasm": "!!"}`, CodeInvalidParams, "wasm: must be a base64 string")
	e.wantError("Modules.Upload", obj{}, CodeInvalidParams, "wasm: is required")
	e.wantError("Modules.Upload", obj{"wasm": []byte{}}, CodeInvalidParams, "wasm: is empty")
	e.wantError("Modules.Upload", obj{"wasm": []byte("MZ\x90\x00")}, CodeInvalidParams, "wasm: not a WebAssembly module")
	e.wantError("Modules.Upload", obj{"wasm": make([]byte, 5<<10)}, CodeTooLarge, "wasm:", "limit of 4096 bytes")
	e.wantError("Modules.Upload", obj{"wasm": code, "name": strings.Repeat("n", 129)}, CodeInvalidParams, "name: 129 bytes")
	e.wantError("Modules.Upload", obj{"wasm": code, "signatures": []obj{{"key": sig.Key, "sig": sig.Sig, "extra": 1}}},
		CodeInvalidParams, "signatures[0].extra: unknown parameter")
	bad := modsig.Sign(k, modsig.Hash([]byte("another module")))
	e.wantError("Modules.Upload", obj{"wasm": code, "signatures": []modsig.Signature{bad}}, CodeInvalidParams, "signatures[0]: does not verify")
	e.wantError("Modules.Get", obj{"hash": "ABC"}, CodeInvalidParams, "hash: must be 64 lowercase hex digits")
	e.wantError("Modules.Get", obj{}, CodeInvalidParams, "hash: is required")
	missing := strings.Repeat("0", 64)
	e.wantError("Modules.Get", obj{"hash": missing}, CodeNotFound, "no module "+missing)
	e.wantError("Modules.Delete", obj{"hash": missing}, CodeNotFound, "no module")

	var deleted json.RawMessage
	e.call("Modules.Delete", obj{"hash": up.Hash}, &deleted)
	if string(deleted) != "{}" {
		t.Errorf("Modules.Delete gave %s, want {}", deleted)
	}
	e.call("Modules.List", nil, &list)
	if len(list.Modules) != 0 {
		t.Fatalf("after delete: %+v", list)
	}
}

// A master without a module registry says so; with one, a module of the
// largest size fits the default request body in base64.
func TestModulesUnavailable(t *testing.T) {
	var bare, full http.Handler
	m := testmaster.Start(t, master.Options{}, func(m *master.Master) (err error) {
		if bare, err = New(m.Scheduler(), Options{Token: testToken}); err != nil {
			return err
		}
		full, err = New(m.Scheduler(), Options{Token: testToken, Modules: m})
		m.Handle(Path, bare)
		return err
	})
	e := &env{t: t, m: m, base: "http://" + m.Addr().String(), hc: &http.Client{Transport: &http.Transport{}}}
	t.Cleanup(e.hc.CloseIdleConnections)
	e.wantError("Modules.List", nil, CodeUnavailable, "keeps no modules")
	body := `{"jsonrpc":"2.0","id":1,"method":"Modules.Upload","params":{"wasm":"` + strings.Repeat("A", int(base64Len(m.MaxModuleBytes()))) + `"}}`
	if max := full.(*handler).opts.MaxBody; int64(len(body)) > max {
		t.Errorf("a module of %d bytes takes a body of %d bytes; MaxBody is %d", m.MaxModuleBytes(), len(body), max)
	}
}

// A module an unfinished task names is kept: Modules.Delete says how many
// tasks need it, and succeeds once they are final. A task naming a module
// the master does not have is refused.
func TestModuleDeleteInUse(t *testing.T) {
	e := start(t, envOpts{})
	code := testwasm.Command(t.Name())
	var up ModuleUploadResult
	e.call("Modules.Upload", obj{"wasm": code}, &up)
	e.wantError("Tasks.Submit", obj{"app": "a", "kind": "wasm", "module": strings.Repeat("0", 64)}, CodeInvalidParams, "module:", "not a module uploaded")
	// Nobody runs wasm here, so the tasks stay pending.
	ids := []uint64{e.submit("a", "wasm", "in", "module", up.Hash), e.submit("a", "wasm", "in", "module", up.Hash)}
	if task := e.get(ids[0]); task.Module != up.Hash || task.Kind != "wasm" {
		t.Fatalf("Tasks.Get gave kind %q module %q", task.Kind, task.Module)
	}
	err := e.wantError("Modules.Delete", obj{"hash": up.Hash}, CodeConflict, "2 unfinished tasks")
	var data struct {
		Hash  string `json:"hash"`
		Tasks int    `json:"tasks"`
	}
	if json.Unmarshal(err.Data, &data) != nil || data.Hash != up.Hash || data.Tasks != 2 {
		t.Errorf("error data %s", err.Data)
	}
	e.call("Modules.Get", obj{"hash": up.Hash}, nil) // still there
	for _, id := range ids {
		e.call("Tasks.Cancel", obj{"id": id}, nil)
	}
	e.call("Modules.Delete", obj{"hash": up.Hash}, nil)
	e.wantError("Tasks.Submit", obj{"app": "a", "kind": "wasm", "module": up.Hash}, CodeInvalidParams, "module:")
}
