// Command asynqbench measures what `anthill bench` measures in its latency
// run, on asynq and Redis: tasks enqueued at a fixed rate, each on its own
// schedule whether or not earlier ones are done, to a worker pool of fixed
// concurrency running a no-op handler; latency is from the call to Enqueue
// to the moment the handler returns, p50 and p99, and the median of runs.
//
// It is a module of its own so that asynq is never a dependency of
// Anthill's: see docs/BENCHMARKS.md for how it is run.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
)

func main() {
	redisAddr := flag.String("redis", "", "address of a running Redis (default: start redis-server on a free loopback port, without persistence)")
	fsync := flag.Bool("fsync", false, "the started Redis keeps an append-only file fsynced on every write (appendfsync always)")
	rate := flag.Int("rate", 1000, "offered tasks/s")
	dur := flag.Duration("duration", 10*time.Second, "length of a run")
	runs := flag.Int("runs", 3, "repetitions; medians are reported")
	concurrency := flag.Int("concurrency", 8, "handlers running at once (anthill bench: 4 slaves of 2 CPUs' concurrency each)")
	check := flag.Duration("check-interval", time.Millisecond, "asynq's TaskCheckInterval: how long an idle worker sleeps before polling again (asynq's default, 1s, would dominate latency)")
	flag.Parse()
	if err := run(*redisAddr, *fsync, *rate, *dur, *runs, *concurrency, *check); err != nil {
		fmt.Fprintln(os.Stderr, "asynqbench:", err)
		os.Exit(1)
	}
}

func run(addr string, fsync bool, rate int, dur time.Duration, runs, concurrency int, check time.Duration) error {
	if addr == "" {
		stop, a, err := startRedis(fsync)
		if err != nil {
			return err
		}
		defer stop()
		addr = a
	}
	opt := asynq.RedisClientOpt{Addr: addr}
	client := asynq.NewClient(opt)
	defer client.Close()

	var cur atomic.Pointer[measure]
	srv := asynq.NewServer(opt, asynq.Config{
		Concurrency:       concurrency,
		TaskCheckInterval: check,
		LogLevel:          asynq.ErrorLevel,
	})
	err := srv.Start(asynq.HandlerFunc(func(_ context.Context, t *asynq.Task) error {
		if m := cur.Load(); m != nil {
			m.done(binary.BigEndian.Uint64(t.Payload()))
		}
		return nil
	}))
	if err != nil {
		return err
	}
	defer srv.Shutdown()

	fmt.Printf("asynq on Redis at %s (fsync %t), %d handlers, check interval %s\n", addr, fsync, concurrency, check)
	var p50s, p99s []time.Duration
	for r := range runs {
		m := newMeasure(int(dur.Seconds() * float64(rate)))
		cur.Store(m)
		if err := m.run(client, rate); err != nil {
			return err
		}
		cur.Store(nil)
		p50, p99 := m.percentiles()
		fmt.Printf("run %d: latency at %d tasks/s: p50 %.3f ms  p99 %.3f ms\n", r+1, rate, ms(p50), ms(p99))
		p50s, p99s = append(p50s, p50), append(p99s, p99)
	}
	fmt.Printf("median of %d: latency p50 %.3f ms p99 %.3f ms at %d tasks/s\n", runs, ms(median(p50s)), ms(median(p99s)), rate)
	return nil
}

type measure struct {
	start []atomic.Int64 // unix nanoseconds of each Enqueue call
	mu    sync.Mutex
	got   []time.Duration
	all   chan struct{}
}

func newMeasure(n int) *measure {
	return &measure{start: make([]atomic.Int64, n), all: make(chan struct{})}
}

func (m *measure) done(i uint64) {
	now := time.Now().UnixNano()
	if i >= uint64(len(m.start)) {
		return
	}
	d := time.Duration(now - m.start[i].Load())
	m.mu.Lock()
	defer m.mu.Unlock()
	m.got = append(m.got, d)
	if len(m.got) == len(m.start) {
		close(m.all)
	}
}

func (m *measure) run(client *asynq.Client, rate int) error {
	n := len(m.start)
	interval := time.Second / time.Duration(rate)
	errs := make(chan error, n)
	begin := time.Now()
	for i := range n {
		if wait := time.Until(begin.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		payload := binary.BigEndian.AppendUint64(nil, uint64(i))
		m.start[i].Store(time.Now().UnixNano())
		go func() {
			_, err := client.Enqueue(asynq.NewTask("echo", payload), asynq.MaxRetry(0))
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			return err
		}
	}
	select {
	case <-m.all:
		return nil
	case <-time.After(30 * time.Second):
		return errors.New("handlers missing")
	}
}

func (m *measure) percentiles() (p50, p99 time.Duration) {
	slices.Sort(m.got)
	return m.got[len(m.got)/2], m.got[len(m.got)*99/100]
}

func median(ds []time.Duration) time.Duration {
	s := slices.Sorted(slices.Values(ds))
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// startRedis runs redis-server on a free loopback port in a directory of
// its own, so a run leaves nothing behind.
func startRedis(fsync bool) (stop func(), addr string, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir, err := os.MkdirTemp("", "asynqbench-")
	if err != nil {
		return nil, "", err
	}
	args := []string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--dir", dir, "--save", ""}
	if fsync {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	cmd := exec.Command("redis-server", args...)
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, "", fmt.Errorf("start redis-server (apt-get install redis-server): %w", err)
	}
	stop = func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		os.RemoveAll(dir)
	}
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return stop, addr, nil
		}
		if time.Now().After(deadline) {
			stop()
			return nil, "", fmt.Errorf("redis-server did not listen on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
