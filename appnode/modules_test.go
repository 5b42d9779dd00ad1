package appnode_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anthill-project/anthill/appnode"
	"github.com/anthill-project/anthill/internal/modsig"
	"github.com/anthill-project/anthill/internal/testmaster"
	"github.com/anthill-project/anthill/internal/testwasm"
	"github.com/anthill-project/anthill/master"
)

// An app uploads a signed module to the real master it is connected to,
// with its own token; a refusal comes back naming the field.
func TestUploadModule(t *testing.T) {
	m := testmaster.Start(t, master.Options{MaxModuleBytes: 4 << 10})
	token, err := m.EnrollApp("payroll")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The base URL as a user might give it: http, which the node dials as ws.
	n, err := appnode.Connect(ctx, appnode.Options{Master: "http://" + m.Addr().String(), App: "payroll", Token: token})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(ctx)

	code := testwasm.Command(t.Name())
	pub, priv, err := modsig.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k, _ := modsig.ParsePrivate(priv)
	hash, err := n.UploadModule(ctx, "sum", code, modsig.Sign(k, modsig.Hash(code)))
	if err != nil {
		t.Fatal(err)
	}
	if hash != modsig.Hash(code) {
		t.Fatalf("hash %s, want %s", hash, modsig.Hash(code))
	}
	info, err := m.ModuleInfo(hash)
	if err != nil || info.Name != "sum" || info.By != "app:payroll" || len(info.Signers) != 1 || info.Signers[0] != pub {
		t.Fatalf("the master has %+v %v", info, err)
	}

	for _, c := range []struct {
		code   []byte
		status int
		msg    string
	}{
		{[]byte("not wasm"), http.StatusBadRequest, "wasm: not a WebAssembly module"},
		{make([]byte, 5<<10), http.StatusRequestEntityTooLarge, "limit of 4096 bytes"},
	} {
		_, err := n.UploadModule(ctx, "bad", c.code)
		ue, ok := errors.AsType[*appnode.UploadError](err)
		if !ok || ue.Status != c.status || !strings.Contains(ue.Message, c.msg) {
			t.Errorf("upload of %d bytes: %v; want HTTP %d with %q", len(c.code), err, c.status, c.msg)
		}
	}
}
