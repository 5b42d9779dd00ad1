package e2e

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/anthill-project/anthill/appnode"
	"github.com/anthill-project/anthill/jsonrpc"
)

// A full disk is the store failure operators meet. The master must stop
// rather than acknowledge what it could not write, and every task it did
// acknowledge must be in the store when it starts again on a disk with
// room. The disk is a 16 MiB tmpfs, so the test needs root (CI has it).
func TestDiskFullStopsTheMasterAndLosesNothingAcknowledged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	small := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(small, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", small).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", small).CombinedOutput(); err != nil {
			t.Errorf("umount: %v: %s", err, out)
		}
	})

	addr := freePort(t)
	mp := start(t, "master", "--listen", addr, "--data", small)
	mp.line(t, "listening on")
	app := connect(t, "ws://"+addr, "filler", newCollector())

	var acked []*appnode.Task
	var pushErr error
	for i := 0; pushErr == nil; i++ {
		if i > 1000 {
			t.Fatal("pushed 640 MiB into a 16 MiB disk without an error")
		}
		batch := make([]*appnode.Task, 10)
		for j := range batch {
			payload := make([]byte, 64<<10)
			rand.Read(payload) // incompressible, though bbolt does not compress
			batch[j] = &appnode.Task{Kind: "echo", Payload: payload}
		}
		// A batch the master cannot store is never acknowledged: the push
		// waits until its deadline.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		pushErr = app.PushTasks(ctx, batch)
		cancel()
		if pushErr == nil {
			acked = append(acked, batch...)
		}
	}
	t.Logf("%d tasks acknowledged before the push failed with: %v", len(acked), pushErr)
	if len(acked) == 0 {
		t.Fatal("not one batch fitted on the disk")
	}

	select {
	case <-mp.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the master kept running on a full disk")
	}
	var exit *exec.ExitError
	if !errors.As(mp.err, &exit) {
		t.Fatalf("the master exited with %v, want a non-zero status", mp.err)
	}
	mp.line(t, "no space left on device")

	// Move the store to a disk with room, as an operator would.
	big := t.TempDir()
	for _, name := range []string{"anthill.db", jsonrpc.TokenFile} {
		copyFile(t, filepath.Join(small, name), filepath.Join(big, name))
	}
	mp = start(t, "master", "--listen", addr, "--data", big, "--log-level", "info")
	mp.line(t, "listening on")
	rpc := &jsonrpc.Client{URL: "http://" + addr, Token: readToken(t, big)}
	for _, task := range acked {
		var got struct {
			State   string `json:"state"`
			Payload []byte `json:"payload"`
		}
		call(t, rpc, "Tasks.Get", map[string]any{"id": task.ID}, &got)
		if got.State != "pending" || string(got.Payload) != string(task.Payload) {
			t.Fatalf("acknowledged task %d came back %s with %d payload bytes", task.ID, got.State, len(got.Payload))
		}
	}
	mp.line(t, fmt.Sprintf("unfinished=%d ", len(acked)))
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
