package store

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/anthill-project/anthill/internal/modsig"
)

func moduleOf(code []byte, name string, sigs ...modsig.Signature) Module {
	return Module{Hash: modsig.Hash(code), Name: name, Created: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC), By: "admin", Signatures: sigs}
}

// A module's metadata and bytes survive a reopen; a second upload of the
// same bytes keeps the first name and time and adds only new signatures;
// a delete is durable.
func TestModulesPersistAcrossReopen(t *testing.T) {
	path := newStoreFile(t)
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if ms, err := s.Modules(); err != nil || len(ms) != 0 {
		t.Fatalf("fresh store: %v, %v", ms, err)
	}
	a, b := []byte("\x00asm module a"), []byte("\x00asm module b")
	sig1 := modsig.Signature{Key: "k1", Sig: "s1"}
	sig2 := modsig.Signature{Key: "k2", Sig: "s2"}
	got, created, err := s.PutModule(moduleOf(a, "first", sig1), a)
	if err != nil || !created || got.Size != int64(len(a)) || got.Name != "first" {
		t.Fatalf("PutModule a: %+v created=%v %v", got, created, err)
	}
	later := moduleOf(a, "second", sig2, sig1)
	later.Created, later.By = later.Created.Add(time.Hour), "app:other"
	got, created, err = s.PutModule(later, a)
	if err != nil || created {
		t.Fatalf("PutModule a again: created=%v %v", created, err)
	}
	want := moduleOf(a, "first", sig1, sig2)
	want.Size = int64(len(a))
	if !equalModule(got, want) {
		t.Fatalf("merged %+v, want %+v", got, want)
	}
	if _, _, err := s.PutModule(moduleOf(b, "b"), b); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.PutModule(Module{Hash: modsig.Hash(a), Name: "lie"}, b); err == nil {
		t.Fatal("PutModule accepted bytes that are not the hash's")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.PutModule(moduleOf(a, ""), a); !errors.Is(err, ErrClosed) {
		t.Fatalf("PutModule after Close: %v, want ErrClosed", err)
	}

	s = openStore(t, path, Options{})
	m, err := s.Module(modsig.Hash(a))
	if err != nil || !equalModule(m, want) {
		t.Fatalf("after reopen: %+v %v, want %+v", m, err, want)
	}
	code, err := s.ModuleCode(modsig.Hash(a))
	if err != nil || !bytes.Equal(code, a) {
		t.Fatalf("code after reopen: %q %v", code, err)
	}
	ms, err := s.Modules()
	if err != nil || len(ms) != 2 {
		t.Fatalf("Modules: %+v %v", ms, err)
	}
	if !slices.IsSortedFunc(ms, func(x, y Module) int { return strings.Compare(x.Hash, y.Hash) }) {
		t.Errorf("Modules not in hash order: %+v", ms)
	}
	if err := s.DeleteModule(modsig.Hash(a)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteModule(modsig.Hash(a)); !errors.Is(err, ErrModuleNotFound) {
		t.Fatalf("second delete: %v, want ErrModuleNotFound", err)
	}
	if _, err := s.Module(modsig.Hash(a)); !errors.Is(err, ErrModuleNotFound) {
		t.Fatalf("Module after delete: %v", err)
	}
	if _, err := s.ModuleCode(modsig.Hash(a)); !errors.Is(err, ErrModuleNotFound) {
		t.Fatalf("ModuleCode after delete: %v", err)
	}
}

// A file from before modules (no module buckets) opens, reads as holding
// none, and takes uploads.
func TestModulesOnOlderFile(t *testing.T) {
	path := newStoreFile(t)
	tamper(t, path, func(tx *bbolt.Tx) error {
		if err := tx.DeleteBucket(bucketModules); err != nil {
			return err
		}
		return tx.DeleteBucket(bucketModuleCode)
	})
	s := openStore(t, path, Options{NoSync: true})
	if ms, err := s.Modules(); err != nil || len(ms) != 0 {
		t.Fatalf("Modules: %v, %v", ms, err)
	}
	code := []byte("\x00asm x")
	if _, _, err := s.PutModule(moduleOf(code, "x"), code); err != nil {
		t.Fatal(err)
	}
}

func equalModule(a, b Module) bool {
	return a.Hash == b.Hash && a.Name == b.Name && a.Size == b.Size && a.Created.Equal(b.Created) &&
		a.By == b.By && slices.Equal(a.Signatures, b.Signatures)
}
