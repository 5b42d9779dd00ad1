package e2e

import (
	"strings"
	"testing"
)

// The README's volunteer session with real processes: the operator enrolls
// a volunteer and an app from the shell, the volunteer's slave joins with
// its token, the listing shows it (never the token), and revoking it from
// the shell disconnects the slave for good.
func TestIdentCLIEnrollAndRevoke(t *testing.T) {
	addr := freePort(t)
	data := t.TempDir()
	mp := start(t, "master", "--listen", addr, "--data", data)
	mp.line(t, "anthill volunteers enroll NAME")
	t.Setenv("ANTHILL_MASTER", "http://"+addr)
	cli := func(args ...string) (string, int) { return run(t, append(args, "--data", data)...) }

	out, code := cli("volunteers", "enroll", "lab-pc-7")
	token, _, _ := strings.Cut(out, "\n")
	if code != 0 || len(token) != 64 {
		t.Fatalf("volunteers enroll: exit %d:\n%s", code, out)
	}
	if out, code := cli("apps", "enroll", "my-app"); code != 0 || !strings.Contains(out, "app my-app enrolled") {
		t.Fatalf("apps enroll: exit %d:\n%s", code, out)
	}
	sp := startSlave(t, "ws://"+addr, "my-laptop", "--token", token)
	mp.line(t, "volunteer=lab-pc-7")
	out, code = cli("volunteers")
	if code != 0 || !strings.Contains(out, "lab-pc-7") || !strings.Contains(out, "operator") || strings.Contains(out, token) {
		t.Fatalf("volunteers: exit %d:\n%s", code, out)
	}
	if out, code := cli("apps", "credentials", "--json"); code != 0 || !strings.Contains(out, `"app":"my-app"`) {
		t.Fatalf("apps credentials: exit %d:\n%s", code, out)
	}
	if out, code := cli("volunteers", "revoke", "lab-pc-7"); code != 0 {
		t.Fatalf("volunteers revoke: exit %d:\n%s", code, out)
	}
	<-sp.done
	if sp.err == nil {
		t.Fatal("the revoked slave exited 0")
	}
	if out, code := cli("volunteers", "revoke", "lab-pc-7"); code == 0 || !strings.Contains(out, "not enrolled") {
		t.Fatalf("revoking again: exit %d:\n%s", code, out)
	}
}
