package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anthill-project/anthill/internal/modsig"
	"github.com/anthill-project/anthill/internal/testmaster"
	"github.com/anthill-project/anthill/internal/testwasm"
	"github.com/anthill-project/anthill/jsonrpc"
	"github.com/anthill-project/anthill/master"
)

// realMaster runs a master with its API, for the commands that are tested
// end to end, and returns its URL.
func realMaster(t *testing.T) (*master.Master, string) {
	t.Setenv("ANTHILL_TOKEN", "")
	t.Setenv("ANTHILL_MASTER", "")
	m := testmaster.Start(t, master.Options{}, func(m *master.Master) error {
		h, err := jsonrpc.New(m.Scheduler(), jsonrpc.Options{Token: fakeToken, Identities: m, Modules: m})
		m.Handle(jsonrpc.Path, h)
		return err
	})
	return m, "http://" + m.Addr().String()
}

// keygen makes a key pair, push --sign sends its signature, and the
// module is listed, shown and deleted, all against a real master.
func TestModulesCommands(t *testing.T) {
	m, url := realMaster(t)
	dir := t.TempDir()
	prefix := filepath.Join(dir, "ops")
	var out, errb bytes.Buffer
	if err := runKeygen(context.Background(), []string{"--out", prefix}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	pub := strings.TrimSpace(out.String())
	if _, err := modsig.ParsePublic(pub); err != nil {
		t.Fatalf("keygen printed %q: %v", out.String(), err)
	}
	if fi, err := os.Stat(prefix + ".key"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key file: %v %v", fi, err)
	}
	if b, err := os.ReadFile(prefix + ".pub"); err != nil || strings.TrimSpace(string(b)) != pub {
		t.Fatalf("public key file %q: %v", b, err)
	}
	if err := runKeygen(context.Background(), []string{"--out", prefix}, &out, &errb); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("second keygen: %v", err)
	}

	code := testwasm.Command(t.Name())
	file := filepath.Join(dir, "noop.wasm")
	if err := os.WriteFile(file, code, 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, string, int) {
		return runClient(t, append([]string{"modules", "--master", url, "--token", fakeToken}, args...)...)
	}
	stdout, stderr, rc := run("push", "--sign", prefix+".key", file)
	wantCode(t, rc, 0)
	hash := modsig.Hash(code)
	if stdout != hash+"\n" || !strings.Contains(stderr, "1 signature") {
		t.Fatalf("push printed %q and %q, want the hash %s", stdout, stderr, hash)
	}
	info, err := m.ModuleInfo(hash)
	if err != nil || info.Name != "noop" || len(info.Signers) != 1 || info.Signers[0] != pub {
		t.Fatalf("master has %+v %v", info, err)
	}
	stdout, _, rc = run("list")
	wantCode(t, rc, 0)
	if !strings.Contains(stdout, "HASH") || !strings.Contains(stdout, hash) || !strings.Contains(stdout, "noop") {
		t.Errorf("list printed %q", stdout)
	}
	stdout, _, rc = run("get", hash, "--json")
	wantCode(t, rc, 0)
	if !strings.Contains(stdout, `"signers":["`+pub+`"]`) {
		t.Errorf("get --json printed %q", stdout)
	}
	stdout, _, rc = run("get", hash)
	wantCode(t, rc, 0)
	if !strings.Contains(stdout, "signers[0]:") || !strings.Contains(stdout, "by:") {
		t.Errorf("get printed %q", stdout)
	}
	_, _, rc = run("push", "--name", "x")
	wantCode(t, rc, exitUsage)
	_, _, rc = run("list", "--name", "x")
	wantCode(t, rc, exitUsage)
	notWasm := filepath.Join(dir, "script.sh")
	if err := os.WriteFile(notWasm, []byte("echo hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, rc = run("push", notWasm)
	wantCode(t, rc, exitFailed)
	if !strings.Contains(stderr, "wasm: not a WebAssembly module") {
		t.Errorf("push of a script: %q", stderr)
	}

	// A task names the module by hash; while it is pending the module stays.
	stdout, _, rc = runClient(t, "submit", "--master", url, "--token", fakeToken, "--app", "cli", "--module", hash, "--payload", "in")
	wantCode(t, rc, 0)
	id := strings.TrimSpace(stdout)
	stdout, _, rc = runClient(t, "get", "--master", url, "--token", fakeToken, id)
	wantCode(t, rc, 0)
	if !strings.Contains(stdout, "module:") || !strings.Contains(stdout, hash) {
		t.Errorf("get of a module task printed %q", stdout)
	}
	_, stderr, rc = run("delete", hash)
	wantCode(t, rc, exitFailed)
	if !strings.Contains(stderr, "1 unfinished task") {
		t.Errorf("delete of a module in use: %q", stderr)
	}
	_, _, rc = runClient(t, "cancel", "--master", url, "--token", fakeToken, id)
	wantCode(t, rc, 0)

	stdout, _, rc = run("delete", hash)
	wantCode(t, rc, 0)
	if !strings.Contains(stdout, "deleted") {
		t.Errorf("delete printed %q", stdout)
	}
	_, stderr, rc = run("get", hash)
	wantCode(t, rc, exitFailed)
	if !strings.Contains(stderr, "no module") {
		t.Errorf("get after delete: %q", stderr)
	}
}
