package web

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A logged-out session is refused, by this auth and by one that reads the
// same file later (a restarted master); other sessions are not touched.
func TestLogoutRevokesAcrossRestarts(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	file := filepath.Join(t.TempDir(), RevocationFile)
	a, err := newAuth(strings.Repeat("k", 32), time.Hour, clock, file)
	if err != nil {
		t.Fatal(err)
	}
	gone, kept := a.issue(), a.issue()
	if err := a.revoke(gone); err != nil {
		t.Fatal(err)
	}
	if a.valid(gone) || !a.valid(kept) {
		t.Fatalf("after logout: revoked valid %v, other valid %v", a.valid(gone), a.valid(kept))
	}
	b, err := newAuth(strings.Repeat("k", 32), time.Hour, clock, file)
	if err != nil {
		t.Fatal(err)
	}
	if b.valid(gone) || !b.valid(kept) {
		t.Fatalf("after a restart: revoked valid %v, other valid %v", b.valid(gone), b.valid(kept))
	}
	// Expired revocations are dropped when the file is read again.
	now = now.Add(2 * time.Hour)
	c, err := newAuth(strings.Repeat("k", 32), time.Hour, clock, file)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.revoked) != 0 {
		t.Fatalf("%d expired revocations kept", len(c.revoked))
	}
}

// A damaged file stops the dashboard from starting rather than silently
// bringing logged-out sessions back.
func TestRevocationFileMustParse(t *testing.T) {
	file := filepath.Join(t.TempDir(), RevocationFile)
	if err := os.WriteFile(file, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newAuth(strings.Repeat("k", 32), time.Hour, time.Now, file); err == nil {
		t.Fatal("a damaged revocation file was accepted")
	}
}

func TestRevocationsAreBounded(t *testing.T) {
	a, err := newAuth(strings.Repeat("k", 32), time.Hour, time.Now, "")
	if err != nil {
		t.Fatal(err)
	}
	for range maxRevoked + 10 {
		if err := a.revoke(a.issue()); err != nil {
			t.Fatal(err)
		}
	}
	if len(a.revoked) > maxRevoked {
		t.Fatalf("%d revocations kept, bound %d", len(a.revoked), maxRevoked)
	}
}
