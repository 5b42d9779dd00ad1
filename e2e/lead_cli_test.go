package e2e

import (
	"strings"
	"testing"
)

// A master that takes fewer tasks per submit than the CLI sends in one
// call (--max-submit-tasks 10) still gets every task of a large submit:
// the CLI learns the cap from the refusal, which stored nothing, and
// sends the same tasks in calls the master takes.
func TestCLISubmitFollowsTheMastersSubmitCap(t *testing.T) {
	addr, data := freePort(t), t.TempDir()
	mp := start(t, "master", "--listen", addr, "--data", data, "--max-submit-tasks", "10")
	mp.line(t, "admin token in")
	out, code := run(t, "submit", "--master", "http://"+addr, "--data", data, "--app", "bulk", "--kind", "echo", "--count", "25")
	ids := strings.Fields(out)
	if code != 0 || len(ids) != 25 {
		t.Fatalf("exit %d, %d ids:\n%s", code, len(ids), out)
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("id %s printed twice:\n%s", id, out)
		}
		seen[id] = true
	}
}
