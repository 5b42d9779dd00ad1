package web_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/anthill-project/anthill/web"
)

// The leaderboard is public and read-only; the Volunteers page's data is
// the operator's.
func TestLeaderboardIsPublicVolunteersAreNot(t *testing.T) {
	e := newEnv(t, web.Options{})
	stranger := e.client()
	resp, body := e.get(stranger, "/leaderboard", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Nobody is listed yet") {
		t.Errorf("/leaderboard for a stranger: %d %q", resp.StatusCode, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("the leaderboard's policy is %q", csp)
	}
	resp, body = e.get(stranger, "/leaderboard.json", nil)
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(body) != `{"leaders":[]}` {
		t.Errorf("/leaderboard.json: %d %q", resp.StatusCode, body)
	}
	if resp, _ := e.get(stranger, "/ui/volunteers", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/ui/volunteers without a login: %d, want 401", resp.StatusCode)
	}
	op := e.client()
	e.login(op)
	if resp, body := e.get(op, "/ui/volunteers", nil); resp.StatusCode != http.StatusOK || strings.TrimSpace(body) != `{"volunteers":[]}` {
		t.Errorf("/ui/volunteers for the operator: %d %q", resp.StatusCode, body)
	}
}
