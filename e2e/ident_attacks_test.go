package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/anthill-project/anthill/appnode"
	"github.com/anthill-project/anthill/internal/view"
	"github.com/anthill-project/anthill/master"
	"github.com/anthill-project/anthill/protocol"
)

// identRefused sends hello on path and checks the master refuses it with
// code and closes.
func identRefused(t *testing.T, url, path string, hello *protocol.Hello, code string) {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := ws.WriteMessage(websocket.BinaryMessage, protocol.Encode(nil, hello)); err != nil {
		t.Fatal(err)
	}
	expectError(t, ws, code)
}

// C1: an anonymous Hello for the victim's app id, and one with another
// app's token, are both refused; the real app keeps its connection and
// receives every one of its notifications.
func TestIdentC1AppHijackIsRefused(t *testing.T) {
	m := startMaster(t, master.Options{})
	victimToken, err := m.EnrollApp("victim")
	if err != nil {
		t.Fatal(err)
	}
	otherToken, err := m.EnrollApp("other")
	if err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	victim := connectAs(t, m.URL(), "victim", victimToken, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tasks := make([]*appnode.Task, 3)
	for i := range tasks {
		tasks[i] = &appnode.Task{Kind: "sha256", Payload: []byte{byte(i)}}
	}
	if err := victim.PushTasks(ctx, tasks); err != nil {
		t.Fatal(err)
	}

	appHello := func(name, token string) *protocol.Hello {
		return &protocol.Hello{Version: protocol.Version, Role: protocol.RoleApp, Name: name, Token: token}
	}
	identRefused(t, m.URL(), "/ws/app", appHello("victim", ""), protocol.CodeUnauthorized)
	identRefused(t, m.URL(), "/ws/app", appHello("victim", otherToken), protocol.CodeUnauthorized)
	identRefused(t, m.URL(), "/ws/app", appHello("victim", victimToken+"x"), protocol.CodeUnauthorized)
	// The other app's token is good for the other app alone.
	connectAs(t, m.URL(), "other", otherToken, newCollector())

	startSlave(t, m.URL(), "s1")
	waitFor(t, 30*time.Second, "the victim's 3 notifications", func() bool { return c.len() == 3 })
	// The app acknowledges after its callbacks: the master counts the
	// acknowledgements a frame later than the app has its notifications.
	waitFor(t, 30*time.Second, "the victim connected with its 3 notifications acknowledged", func() bool {
		for _, a := range view.Apps(m.Scheduler()) {
			if a.Name == "victim" {
				return a.Connected && a.Acked == 3
			}
		}
		return false
	})
	if d := c.duplicates(); len(d) != 0 {
		t.Fatalf("duplicate notifications %v", d)
	}
}

// L4: two slaves calling themselves the same are two identities: their
// numbers and attributions are never merged, and draining one leaves the
// other working.
func TestIdentL4SameNameIsNotMerged(t *testing.T) {
	m := startMaster(t, master.Options{})
	alice, err := m.EnrollVolunteer("alice")
	if err != nil {
		t.Fatal(err)
	}
	mallory, err := m.EnrollVolunteer("mallory")
	if err != nil {
		t.Fatal(err)
	}
	startSlave(t, m.URL(), "lab-pc-7", "--token", alice, "--concurrency", "2")
	startSlave(t, m.URL(), "lab-pc-7", "--token", mallory, "--concurrency", "2")
	waitSlaves(t, m, 2)

	ov := view.Build(m.Scheduler())
	rows := map[string]view.SlaveName{}
	for _, n := range ov.Names {
		rows[n.Name] = n
	}
	if len(ov.Names) != 2 || len(rows["alice"].Sessions) != 1 || len(rows["mallory"].Sessions) != 1 ||
		rows["alice"].Labels[0] != "lab-pc-7" || rows["mallory"].Labels[0] != "lab-pc-7" {
		t.Fatalf("identity rows %+v", ov.Names)
	}
	// The dashboard drains a row's sessions: mallory's only.
	for _, id := range rows["mallory"].Sessions {
		if err := m.Scheduler().Drain(id); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, err := m.Scheduler().Submit(ctx, "scripts", []protocol.NewTask{{Kind: "echo"}, {Kind: "echo"}, {Kind: "echo"}, {Kind: "echo"}})
	if err != nil {
		t.Fatal(err)
	}
	ids := []uint64{first, first + 1, first + 2, first + 3}
	done, err := m.Scheduler().Wait(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range done {
		v := view.TaskOf(&ti)
		if v.State != "done" || v.Slave != "alice" || v.Session != rows["alice"].Sessions[0] ||
			len(v.History) != 1 || v.History[0].Slave != "alice" {
			t.Fatalf("task %d attributed to %q session %q (history %+v); want alice's session %s",
				v.ID, v.Slave, v.Session, v.History, rows["alice"].Sessions[0])
		}
	}
	for _, n := range view.Build(m.Scheduler()).Names {
		switch {
		case n.Name == "alice" && (n.Done != 4 || n.Draining):
			t.Fatalf("alice: %+v", n)
		case n.Name == "mallory" && (n.Done != 0 || !n.Draining):
			t.Fatalf("mallory: %+v", n)
		}
	}
}

// L1: a guessable shared slave token is refused when the master starts.
func TestIdentL1ShortSlaveTokenRefused(t *testing.T) {
	out, code := run(t, "master", "--listen", "127.0.0.1:0", "--data", t.TempDir(), "--slave-token", "0777")
	if code == 0 || !strings.Contains(out, "at least 16") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
}

// Without a credential a slave is refused by default. Under open
// enrollment it is given an identity on first contact, keeps the token in
// its state directory (owner only) and is the same identity after a
// restart of the process.
func TestIdentOpenEnrollmentKeepsIdentity(t *testing.T) {
	closed := startMaster(t, master.Options{})
	out, code := run(t, "slave", "--master", closed.URL(), "--token=", "--state", t.TempDir())
	if code != 1 || !strings.Contains(out, "unauthorized") {
		t.Fatalf("no credential on a closed master: exit %d, output:\n%s", code, out)
	}

	m := startMaster(t, master.Options{OpenEnrollment: true})
	state := filepath.Join(t.TempDir(), "state")
	first := startSlave(t, m.URL(), "newcomer", "--token=", "--state", state)
	waitSlaves(t, m, 1)
	identity := m.Scheduler().Stats().Slaves[0].Identity
	if !strings.HasPrefix(identity, "newcomer-") {
		t.Fatalf("identity %q: want the label plus a suffix", identity)
	}
	files, _ := filepath.Glob(filepath.Join(state, "identity-*.json"))
	waitFor(t, 10*time.Second, "the state file", func() bool {
		files, _ = filepath.Glob(filepath.Join(state, "identity-*.json"))
		return len(files) == 1
	})
	st, err := os.Stat(files[0])
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.Stat(state)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || dst.Mode().Perm() != 0o700 {
		t.Fatalf("state file mode %v, dir %v", st.Mode().Perm(), dst.Mode().Perm())
	}
	first.stop(t)
	waitSlaves(t, m, 0)

	startSlave(t, m.URL(), "newcomer", "--token=", "--state", state)
	waitSlaves(t, m, 1)
	if again := m.Scheduler().Stats().Slaves[0].Identity; again != identity {
		t.Fatalf("after a restart the slave is %q, was %q", again, identity)
	}
	vs := m.Volunteers()
	if len(vs) != 1 || vs[0].Name != identity || vs[0].How != "open" || len(vs[0].Sessions) != 1 {
		t.Fatalf("volunteers %+v", vs)
	}
}

// Revoking a volunteer closes its session at once, puts what it ran back
// in the queue at no attempt cost (a task with one attempt survives it),
// and refuses it afterwards.
func TestIdentRevocationEndsSessionsAtNoCost(t *testing.T) {
	m := startMaster(t, master.Options{})
	token, err := m.EnrollVolunteer("bob")
	if err != nil {
		t.Fatal(err)
	}
	bob := startSlave(t, m.URL(), "bob-laptop", "--token", token)
	waitSlaves(t, m, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := m.Scheduler().Submit(ctx, "scripts", []protocol.NewTask{{Kind: "sleep", Payload: []byte("60000"), MaxAttempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the task running", func() bool {
		ti, err := m.Scheduler().Task(id)
		return err == nil && ti.State == protocol.StateRunning
	})

	if err := m.RevokeVolunteer("bob"); err != nil {
		t.Fatal(err)
	}
	// Taken back by the time Revoke returns, not when the socket notices.
	ti, err := m.Scheduler().Task(id)
	if err != nil || ti.State != protocol.StatePending || ti.Attempts != 0 {
		t.Fatalf("after revoke: %+v %v; want pending with no attempt spent", ti, err)
	}
	if h := ti.History; len(h) != 1 || h[0].Outcome.String() != "returned" {
		t.Fatalf("history %+v", h)
	}
	waitSlaves(t, m, 0)
	<-bob.done
	bob.line(t, "revoked")
	out, code := run(t, "slave", "--master", m.URL(), "--token", token, "--state", t.TempDir())
	if code != 1 || !strings.Contains(out, "unauthorized") {
		t.Fatalf("revoked token: exit %d, output:\n%s", code, out)
	}
}

// Tokens are stored hashed: the store file holds each token's SHA-256 but
// never the token, and a restarted master still knows them.
func TestIdentTokensStoredHashed(t *testing.T) {
	data := t.TempDir()
	m := startMaster(t, master.Options{Data: data})
	appToken, err := m.EnrollApp("payroll")
	if err != nil {
		t.Fatal(err)
	}
	volToken, err := m.EnrollVolunteer("carol")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile(filepath.Join(data, master.StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{appToken, volToken} {
		raw, _ := hex.DecodeString(tok)
		if bytes.Contains(db, []byte(tok)) || bytes.Contains(db, raw) {
			t.Fatalf("the store holds a token in clear")
		}
		if !bytes.Contains(db, []byte(identSHA256(tok))) {
			t.Fatalf("the store holds no hash of the token: the test reads the wrong file")
		}
	}

	m = startMaster(t, master.Options{Data: data})
	connectAs(t, m.URL(), "payroll", appToken, newCollector())
	startSlave(t, m.URL(), "carols-pc", "--token", volToken)
	waitSlaves(t, m, 1)
	if got := m.Scheduler().Stats().Slaves[0].Identity; got != "carol" {
		t.Fatalf("identity after restart %q", got)
	}
	var vs []struct{ Name string }
	b, _ := json.Marshal(m.Volunteers())
	_ = json.Unmarshal(b, &vs)
	if len(vs) != 1 || strings.Contains(string(b), volToken) {
		t.Fatalf("Volunteers %s", b)
	}
}

// The shared --slave-token is an invitation, not an identity: two slaves
// presenting it become two identities, and a restarted one presenting it
// again is still the identity it was given.
func TestIdentInvitationEnrollsOneIdentityPerSlave(t *testing.T) {
	const invitation = "invitation-for-the-lab-0123"
	m := startMaster(t, master.Options{SlaveToken: invitation})
	stateA, stateB := t.TempDir(), t.TempDir()
	a := startSlave(t, m.URL(), "lab", "--token", invitation, "--state", stateA)
	startSlave(t, m.URL(), "lab", "--token", invitation, "--state", stateB)
	waitSlaves(t, m, 2)
	st := m.Scheduler().Stats().Slaves
	if st[0].Identity == st[1].Identity {
		t.Fatalf("two slaves with the invitation share the identity %q", st[0].Identity)
	}
	before := map[string]bool{st[0].Identity: true, st[1].Identity: true}
	waitFor(t, 10*time.Second, "the state file", func() bool {
		files, _ := filepath.Glob(filepath.Join(stateA, "identity-*.json"))
		return len(files) == 1
	})
	a.stop(t)
	waitSlaves(t, m, 1)
	startSlave(t, m.URL(), "lab", "--token", invitation, "--state", stateA)
	waitSlaves(t, m, 2)
	for _, s := range m.Scheduler().Stats().Slaves {
		if !before[s.Identity] {
			t.Fatalf("after a restart with the invitation, a new identity %q (had %v)", s.Identity, before)
		}
	}
	if vs := m.Volunteers(); len(vs) != 2 || vs[0].How != "invitation" {
		t.Fatalf("volunteers %+v", vs)
	}
}

// Revoking an app's token closes its connection for good (the appnode
// reports unauthorized) and leaves its tasks: enrolled again, the app
// gets every notification.
func TestIdentAppRevocationKeepsTasks(t *testing.T) {
	m := startMaster(t, master.Options{})
	token, err := m.EnrollApp("payroll")
	if err != nil {
		t.Fatal(err)
	}
	first := connectAs(t, m.URL(), "payroll", token, newCollector())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tasks := []*appnode.Task{{Kind: "echo", Payload: []byte("a")}, {Kind: "echo", Payload: []byte("b")}}
	if err := first.PushTasks(ctx, tasks); err != nil {
		t.Fatal(err)
	}
	if err := m.RevokeApp("payroll"); err != nil {
		t.Fatal(err)
	}
	var pushErr error
	waitFor(t, 10*time.Second, "the revoked app to fail", func() bool {
		pushErr = first.PushTask(ctx, &appnode.Task{Kind: "echo"})
		return pushErr != nil
	})
	if !strings.Contains(pushErr.Error(), "unauthorized") {
		t.Fatalf("push after the revocation: %v", pushErr)
	}
	identRefused(t, m.URL(), "/ws/app", &protocol.Hello{Version: protocol.Version, Role: protocol.RoleApp, Name: "payroll", Token: token}, protocol.CodeUnauthorized)

	again, err := m.EnrollApp("payroll")
	if err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	connectAs(t, m.URL(), "payroll", again, c)
	startSlave(t, m.URL(), "s1")
	// The pushes that raced the revocation may have been accepted too: wait
	// for the first two by id.
	waitFor(t, 30*time.Second, "both notifications", func() bool {
		_, a := c.get(tasks[0].ID)
		_, b := c.get(tasks[1].ID)
		return a && b
	})
}
