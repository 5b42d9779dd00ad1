package identity

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anthill-project/anthill/master/store"
)

func openRegistry(t *testing.T, path string) (*Registry, *store.Store) {
	t.Helper()
	st, err := store.Open(path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(st, nil)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	return r, st
}

// App tokens are bound to their app, replaced by a new enrollment, gone
// when revoked, and survive a reopen of the store.
func TestAppTokens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "anthill.db")
	r, st := openRegistry(t, path)
	a, err := r.EnrollApp("a")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := r.EnrollApp("b")
	switch {
	case !r.CheckApp("a", a), !r.CheckApp("b", b):
		t.Fatal("an app's own token refused")
	case r.CheckApp("b", a), r.CheckApp("a", b), r.CheckApp("a", ""), r.CheckApp("c", a):
		t.Fatal("a token accepted for another app")
	}
	a2, _ := r.EnrollApp("a")
	if r.CheckApp("a", a) || !r.CheckApp("a", a2) {
		t.Fatal("re-enrolling did not replace the token")
	}
	if err := r.RevokeApp("b"); err != nil || r.CheckApp("b", b) {
		t.Fatalf("revoke: %v", err)
	}
	if err := r.RevokeApp("b"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("revoking twice: %v", err)
	}
	if _, err := r.EnrollApp("bad name"); !errors.Is(err, ErrBadName) {
		t.Fatalf("bad name: %v", err)
	}
	st.Close()
	r, st = openRegistry(t, path)
	defer st.Close()
	if !r.CheckApp("a", a2) || r.CheckApp("b", b) || len(r.Apps()) != 1 {
		t.Fatalf("after reopen: %+v", r.Apps())
	}
}

// Volunteer names are unique, chosen ones get a suffix, and a revoked or
// replaced token names nobody.
func TestVolunteers(t *testing.T) {
	r, st := openRegistry(t, filepath.Join(t.TempDir(), "anthill.db"))
	defer st.Close()
	tok, err := r.Enroll("alice", HowOperator)
	if err != nil {
		t.Fatal(err)
	}
	if name, ok := r.Volunteer(tok); !ok || name != "alice" {
		t.Fatalf("Volunteer(alice's token) = %q %v", name, ok)
	}
	n1, t1, err := r.EnrollNew("lab pc/7", HowOpen)
	if err != nil {
		t.Fatal(err)
	}
	n2, _, _ := r.EnrollNew("lab pc/7", HowOpen)
	if n1 == n2 || !strings.HasPrefix(n1, "lab-pc-7-") || CheckName(n1) != nil {
		t.Fatalf("chosen names %q %q", n1, n2)
	}
	if name, ok := r.Volunteer(t1); !ok || name != n1 {
		t.Fatalf("Volunteer(t1) = %q", name)
	}
	tok2, _ := r.Enroll("alice", HowOperator)
	if _, ok := r.Volunteer(tok); ok {
		t.Fatal("a replaced token still works")
	}
	if err := r.Revoke("alice"); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Volunteer(tok2); ok || r.Enrolled("alice") {
		t.Fatal("a revoked token still works")
	}
	vs := r.Volunteers()
	if len(vs) != 2 || vs[0].How != HowOpen || vs[0].Name > vs[1].Name {
		t.Fatalf("Volunteers %+v", vs)
	}
	for _, v := range vs {
		if seen := v.LastSeen != nil; seen != (v.Name == n1) {
			t.Fatalf("%s last seen %v; only %s presented its token", v.Name, v.LastSeen, n1)
		}
	}
	if Sanitize("") != "volunteer" || Sanitize("a b") != "a-b" {
		t.Fatal("Sanitize")
	}
}
