package store

import (
	"errors"
	"testing"
)

// Credentials survive a reopen, a delete is durable, and a store from
// before the bucket existed loads none.
func TestCredsPersistAcrossReopen(t *testing.T) {
	path := newStoreFile(t)
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := s.LoadCreds(func(k, v []byte) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("fresh store: %d creds, %v", n, err)
	}
	for _, k := range []string{"app/a", "vol/b", "vol/c"} {
		if err := s.PutCred([]byte(k), []byte("v-"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteCred([]byte("vol/b")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.PutCred([]byte("x"), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("PutCred after Close: %v, want ErrClosed", err)
	}
	s = openStore(t, path, Options{})
	got := map[string]string{}
	if err := s.LoadCreds(func(k, v []byte) error { got[string(k)] = string(v); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["app/a"] != "v-app/a" || got["vol/c"] != "v-vol/c" {
		t.Fatalf("after reopen: %v", got)
	}
}
