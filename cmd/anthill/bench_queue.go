package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/anthill-project/anthill/appnode"
	"github.com/anthill-project/anthill/jsonrpc"
	"github.com/anthill-project/anthill/protocol"
)

// benchQueue measures a deep queue: n tasks of payload bytes pushed to a
// master with no slave, its memory then; a restart on the same data and
// its time to serve, its memory after; then the rate at which slaves
// drain the first tasks of that queue.
func benchQueue(ctx context.Context, n, payload, slaves, drain int, noSync bool, profile string, stdout, stderr io.Writer) error {
	dir, err := os.MkdirTemp("", "anthill-bench-queue-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	args := []string{"master", "--listen", addr, "--data", dir, "--log-level", "warn", "--retention", "-1s",
		"--max-queued-tasks", "-1", "--max-queued-bytes", "-1"}
	if noSync {
		args = append(args, "--no-sync")
	}
	mp, took, err := startBenchMaster(args, stderr)
	if err != nil {
		return err
	}
	stop := func() { _ = mp.Process.Signal(syscall.SIGTERM); _ = mp.Wait() }
	defer func() { stop() }()
	tokb, err := os.ReadFile(filepath.Join(dir, jsonrpc.TokenFile))
	if err != nil {
		return err
	}
	admin := strings.TrimSpace(string(tokb))
	url := "ws://" + addr
	fmt.Fprintf(stdout, "queue of %d tasks of %d bytes; fsync %v; master started in %v\n", n, payload, !noSync, took.Round(time.Millisecond))

	start := time.Now()
	if err := pushRaw(ctx, url, admin, n, payload); err != nil {
		return err
	}
	pushed := time.Since(start)
	time.Sleep(3 * time.Second) // the pushes' garbage collected
	rss, anon, err := procMem(mp.Process.Pid)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "pushed in %v (%.0f tasks/s); master RSS %.0f MiB, anonymous %.0f MiB (%.0f bytes a task)\n",
		pushed.Round(time.Millisecond), float64(n)/pushed.Seconds(), mib(rss), mib(anon), float64(anon)/float64(n))

	// One task canceled in the middle: a rare state for the listings.
	rpc := &jsonrpc.Client{URL: "http://" + addr, Token: admin}
	var newest jsonrpc.ListResult
	if err := rpc.Call(ctx, "Tasks.List", jsonrpc.ListParams{Order: "desc", Limit: 1}, &newest); err != nil || len(newest.Tasks) == 0 {
		return fmt.Errorf("list the newest task: %v", err)
	}
	middle := newest.Tasks[0].ID - uint64(n)/2
	if err := rpc.Call(ctx, "Tasks.Cancel", jsonrpc.IDParams{ID: middle}, new(jsonrpc.OKResult)); err != nil {
		return fmt.Errorf("cancel task %d: %w", middle, err)
	}

	stop()
	if profile != "" {
		// The restarted master's: its restart and the drain.
		args = append(args, "--cpu-profile", profile)
	}
	mp, took, err = startBenchMaster(args, stderr)
	if err != nil {
		return err
	}
	time.Sleep(3 * time.Second)
	rss, anon, err = procMem(mp.Process.Pid)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restarted: serving in %v; master RSS %.0f MiB, anonymous %.0f MiB (%.0f bytes a task)\n",
		took.Round(time.Millisecond), mib(rss), mib(anon), float64(anon)/float64(n))

	if err := benchListings(ctx, rpc, stdout); err != nil {
		return err
	}

	drain = min(drain, n)
	var done atomic.Int64
	var first atomic.Int64 // unix ns of the first result
	reached := make(chan struct{})
	var once sync.Once
	node, err := appnode.Connect(ctx, appnode.Options{Master: url, App: "bench", Token: admin,
		TaskFinished: func(*appnode.Task, []byte, error) {
			n := done.Add(1)
			if n == 1 {
				first.Store(time.Now().UnixNano())
			}
			if n >= int64(drain) {
				once.Do(func() { close(reached) })
			}
		}})
	if err != nil {
		return err
	}
	defer node.Shutdown(context.WithoutCancel(ctx))
	before, err := procCPU(mp.Process.Pid)
	if err != nil {
		return err
	}
	start = time.Now()
	sp, err := startSlaves(url, "bench", slaves, func(string) (string, error) { return admin, nil }, stderr, "--prefetch", "512")
	defer stopSlaves(sp, slog.New(slog.NewTextHandler(stderr, nil)))
	if err != nil {
		return err
	}
	select {
	case <-reached:
	case <-ctx.Done():
		return ctx.Err()
	}
	for first.Load() == 0 {
		time.Sleep(time.Millisecond) // the first callback's store, when drain is tiny
	}
	el, steady := time.Since(start), time.Since(time.Unix(0, first.Load()))
	after, _ := procCPU(mp.Process.Pid)
	// The steady rate leaves out the slaves' start, which is the same
	// whatever the queue holds.
	fmt.Fprintf(stdout, "drained %d of them with %d slaves: %.0f tasks/s from their start, %.0f tasks/s from the first result; master CPU %.1f µs a task\n",
		drain, slaves, float64(drain)/el.Seconds(), float64(drain-1)/steady.Seconds(), float64((after-before).Microseconds())/float64(drain))
	return nil
}

// benchListings times the listings an operator makes of a deep queue
// (Tasks.List as the dashboard calls it), following the cursor until the
// page is full or the listing ends: the median of five, and the calls one
// took.
func benchListings(ctx context.Context, rpc *jsonrpc.Client, stdout io.Writer) error {
	for _, l := range []struct {
		name string
		p    jsonrpc.ListParams
		want int
	}{
		{"newest 50", jsonrpc.ListParams{Order: "desc", Limit: 50}, 50},
		{"the one canceled", jsonrpc.ListParams{State: "canceled"}, 1},
		{"failed (none)", jsonrpc.ListParams{State: "failed"}, 0},
		{"another app (none)", jsonrpc.ListParams{App: "nobody"}, 0},
		{"pending of kind echo, newest 100", jsonrpc.ListParams{State: "pending", Kind: "echo", Order: "desc"}, 100},
	} {
		var took []time.Duration
		calls := 0
		for range 5 {
			p, got := l.p, 0
			start := time.Now()
			for calls = 1; ; calls++ {
				var page jsonrpc.ListResult
				if err := rpc.Call(ctx, "Tasks.List", p, &page); err != nil {
					return fmt.Errorf("Tasks.List %s: %w", l.name, err)
				}
				got += len(page.Tasks)
				if page.NextCursor == nil || got >= max(l.want, 1) {
					break
				}
				p.Cursor = *page.NextCursor
			}
			took = append(took, time.Since(start))
			if got != l.want {
				return fmt.Errorf("Tasks.List %s: %d tasks, want %d", l.name, got, l.want)
			}
		}
		slices.Sort(took)
		fmt.Fprintf(stdout, "list %s: %v in %d calls\n", l.name, took[len(took)/2].Round(10*time.Microsecond), calls)
	}
	return nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// startBenchMaster runs a master process (ANTHILL_BENCH_MASTER names
// another build's) and waits until it serves; the time it took is its
// restart time when its data dir is full.
func startBenchMaster(args []string, stderr io.Writer) (*exec.Cmd, time.Duration, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, 0, err
	}
	if other := os.Getenv("ANTHILL_BENCH_MASTER"); other != "" {
		exe = other // another build's master, to compare two in one sitting
	}
	start := time.Now()
	mp := exec.Command(exe, args...)
	mout, _ := mp.StdoutPipe()
	mp.Stderr = stderr
	if err := mp.Start(); err != nil {
		return nil, 0, err
	}
	if err := waitLine(mout, "listening on", 10*time.Minute); err != nil {
		_ = mp.Process.Kill()
		_ = mp.Wait()
		return nil, 0, err
	}
	took := time.Since(start)
	go io.Copy(io.Discard, mout)
	return mp, took, nil
}

// pushRaw submits n tasks of kind "echo" as an application connection
// does, keeping a few batches in flight, and holds nothing of them: the
// appnode keeps every task it pushed until it is finished, which for ten
// million would measure the bench, not the master.
func pushRaw(ctx context.Context, url, token string, n, payload int) error {
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, url+"/ws/app", nil)
	if err != nil {
		return err
	}
	defer ws.Close()
	hello := &protocol.Hello{Version: protocol.Version, Role: protocol.RoleApp, Name: "bench", Token: token}
	if err := ws.WriteMessage(websocket.BinaryMessage, protocol.Encode(nil, hello)); err != nil {
		return err
	}
	read := func() (protocol.Message, error) {
		_, frame, err := ws.ReadMessage()
		if err != nil {
			return nil, err
		}
		return protocol.Decode(frame)
	}
	if msg, err := read(); err != nil {
		return err
	} else if _, ok := msg.(*protocol.Welcome); !ok {
		return fmt.Errorf("handshake: %+v", msg)
	}
	const batch, inFlight = 1000, 8
	tasks := make([]protocol.NewTask, batch)
	body := make([]byte, payload)
	for i := range tasks {
		tasks[i] = protocol.NewTask{Kind: "echo", Payload: body}
	}
	sent, acked := 0, 0
	var buf []byte
	for seq := uint64(1); acked < n; {
		for sent < n && sent-acked < inFlight*batch {
			k := min(batch, n-sent)
			buf = protocol.Encode(buf[:0], &protocol.Submit{Seq: seq, Tasks: tasks[:k]})
			if err := ws.WriteMessage(websocket.BinaryMessage, buf); err != nil {
				return err
			}
			seq++
			sent += k
		}
		msg, err := read()
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *protocol.SubmitAck:
			acked += int(m.Count)
		case *protocol.SubmitReject:
			return fmt.Errorf("submit refused: %s", m.Message)
		case *protocol.Error:
			return fmt.Errorf("master: %s: %s", m.Code, m.Message)
		}
	}
	return nil
}
