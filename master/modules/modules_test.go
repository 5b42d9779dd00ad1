package modules

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anthill-project/anthill/internal/modsig"
	"github.com/anthill-project/anthill/internal/testwasm"
	"github.com/anthill-project/anthill/master/store"
)

func open(t *testing.T, o Options) *Registry {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "anthill.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r, err := Open(st, o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func wantError(t *testing.T, err error, kind error, field, msg string) {
	t.Helper()
	e, ok := errors.AsType[*Error](err)
	if !ok || !errors.Is(err, kind) || e.Field != field || !strings.Contains(e.Msg, msg) {
		t.Errorf("error %v; want %v on %q containing %q", err, kind, field, msg)
	}
}

// Put refuses what a slave could not use or trust, naming the field.
func TestPutRefuses(t *testing.T) {
	r := open(t, Options{MaxBytes: 512, Check: func(_ context.Context, code []byte) error {
		if !strings.HasPrefix(string(code), testwasm.Header) {
			return errors.New("not a WebAssembly module")
		}
		return nil
	}})
	ctx := context.Background()
	code := testwasm.Command("x")
	_, priv, _ := modsig.GenerateKey()
	k, _ := modsig.ParsePrivate(priv)
	good := modsig.Sign(k, modsig.Hash(code))
	for _, c := range []struct {
		name  string
		code  []byte
		sigs  []modsig.Signature
		kind  error
		field string
		msg   string
	}{
		{"", nil, nil, ErrInvalid, "wasm", "is empty"},
		{"", make([]byte, 513), nil, ErrTooLarge, "wasm", "limit of 512 bytes"},
		{"", []byte("not wasm"), nil, ErrInvalid, "wasm", "not a WebAssembly module"},
		{strings.Repeat("x", 129), code, nil, ErrInvalid, "name", "longer than the limit of 128"},
		{"tab\there", code, nil, ErrInvalid, "name", "control character"},
		{"", code, []modsig.Signature{good, {Key: good.Key, Sig: good.Sig[:10]}}, ErrInvalid, "signatures[1]", "does not verify"},
		{"", code, []modsig.Signature{{Key: "short", Sig: good.Sig}}, ErrInvalid, "signatures[0].key", "public key"},
		{"", code, make([]modsig.Signature, MaxSignatures+1), ErrInvalid, "signatures", "at most 16"},
	} {
		_, _, err := r.Put(ctx, c.name, c.code, c.sigs, ByAdmin)
		wantError(t, err, c.kind, c.field, c.msg)
	}
	if len(r.List()) != 0 {
		t.Fatalf("refused uploads stored: %+v", r.List())
	}
	// One key is one signer, whatever whitespace it was pasted with.
	pasted := modsig.Signature{Key: " " + good.Key + "\n", Sig: good.Sig}
	info, added, err := r.Put(ctx, "x", code, []modsig.Signature{good, pasted}, ByApp("a"))
	if err != nil || !added || len(info.Signers) != 1 || info.Signers[0] != good.Key || info.By != "app:a" {
		t.Fatalf("Put: %+v added=%v %v", info, added, err)
	}
	if _, added, err := r.Put(ctx, "y", code, []modsig.Signature{good}, ByAdmin); err != nil || added {
		t.Fatalf("Put again: added=%v %v", added, err)
	}
}

// Delete asks whether tasks need the module while Signers already calls
// it unknown, and keeps it when they do.
func TestDeleteInUse(t *testing.T) {
	r := open(t, Options{})
	code := testwasm.Command("d")
	info, _, err := r.Put(context.Background(), "d", code, nil, ByAdmin)
	if err != nil {
		t.Fatal(err)
	}
	err = r.Delete(info.Hash, func() int {
		if _, ok := r.Signers(info.Hash); ok {
			t.Error("a module being deleted is still offered")
		}
		return 2
	})
	wantError(t, err, ErrInUse, "hash", "2 unfinished tasks")
	if e, _ := errors.AsType[*Error](err); e == nil || e.Tasks != 2 {
		t.Errorf("Tasks of %v", err)
	}
	if _, ok := r.Signers(info.Hash); !ok {
		t.Fatal("a module in use was dropped")
	}
	if err := r.Delete(info.Hash, func() int { return 0 }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Code(info.Hash); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Code after delete: %v", err)
	}
}
