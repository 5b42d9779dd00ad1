package slave

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/anthill-project/anthill/protocol"
)

// The token a master issued is kept per master, owner-only, and presented
// on the next start in place of the invitation that obtained it; another
// --token, or another master, is another credential and wins.
func TestIdentityKeptInState(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	const url = "ws://127.0.0.1:7070/ws/slave"
	s := &Slave{opts: Options{State: dir, Token: "invitation-0123456789"}, url: url, log: slog.New(slog.DiscardHandler)}
	s.adopt(&protocol.Welcome{Volunteer: "v-1", VolunteerToken: "issued"})
	if s.token != "issued" {
		t.Fatalf("token %q after the Welcome", s.token)
	}
	st, err := os.Stat(statePath(dir, url))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v", st, err)
	}
	for _, tc := range []struct {
		token, url, want string
	}{
		{"invitation-0123456789", url, "issued"},
		{"", url, "issued"},
		{"my-own-token", url, "my-own-token"},
		{"invitation-0123456789", "ws://elsewhere/ws/slave", "invitation-0123456789"},
	} {
		o := Options{State: dir, Token: tc.token}
		got, err := loadToken(&o, tc.url)
		if err != nil || got != tc.want {
			t.Errorf("--token %q at %s: presents %q (%v), want %q", tc.token, tc.url, got, err, tc.want)
		}
	}
	if err := os.WriteFile(statePath(dir, url), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadToken(&Options{State: dir}, url); err == nil {
		t.Fatal("a damaged state file was accepted")
	}
}
