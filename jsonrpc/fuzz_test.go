package jsonrpc

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/anthill-project/anthill/master"
)

// FuzzRPC feeds arbitrary bodies, with a valid token, to the handler of a
// real master: it must never panic and must always answer HTTP 200 with
// one JSON-RPC 2.0 response. The seeds in testdata/fuzz/FuzzRPC run with
// plain go test; go test -fuzz FuzzRPC ./jsonrpc/ explores.
func FuzzRPC(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"Master.Info","params":{}}`,
		`{"jsonrpc":"2.0","id":2,"method":"Tasks.Submit","params":{"app":"f","kind":"echo","payload":"aGk=","priority":-3}}`,
		`{"jsonrpc":"2.0","id":3,"method":"Tasks.List","params":{"state":"pending","limit":2}}`,
		`{"jsonrpc":"2.0","id":4,"method":"Tasks.Cancel","params":{"id":18446744073709551615}}`,
		`{"jsonrpc":"2.0","id":5,"method":"Slaves.Drain","params":{"id":""}}`,
		`{"jsonrpc":"2.0","id":6,"method":"Modules.Upload","params":{"wasm":"AGFzbQEAAAABBAFgAAADAgEABQMBAAEHEwIGX3N0YXJ0AAAGbWVtb3J5AgAKBAECAAs=","name":"f","signatures":[{"key":"x","sig":"y"}]}}`,
		`{"jsonrpc":"2.0","id":7,"method":"Modules.Delete","params":{"hash":"068bd0ce47631149d321d094de4bf9acd531161c536c28e256ec14fc65ff68b3"}}`,
	} {
		f.Add([]byte(s))
	}
	// Wait is capped at a few milliseconds so no input stalls the fuzzer.
	e := start(f, envOpts{master: master.Options{NoSync: true}, rpc: Options{MaxWait: 5 * time.Millisecond}})
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, Path, strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("HTTP %d for %q", rec.Code, body)
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Fatalf("Content-Type %q for %q", ct, body)
		}
		mustReply(t, rec.Body.Bytes())
	})
}
