package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/anthill-project/anthill/appnode"
	"github.com/anthill-project/anthill/jsonrpc"
	"github.com/anthill-project/anthill/master"
	"github.com/anthill-project/anthill/samples/mandelbrot"
	"github.com/anthill-project/anthill/samples/wasm"
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	slaves := fs.Int("slaves", 3, "local slave processes to start")
	concurrency := fs.Int("concurrency", 0, "tasks each slave runs at once (default: number of CPUs)")
	data := fs.String("data", "", "store directory (default: a temporary one, removed on exit)")
	listen := fs.String("listen", "127.0.0.1:7070", "master address (a free port is used if this one is taken)")
	out := fs.String("out", "mandelbrot.png", "where to write the image")
	width := fs.Int("width", 1600, "image width in pixels")
	height := fs.Int("height", 1000, "image height in pixels")
	tile := fs.Int("tile", 100, "tile edge in pixels: one task per tile")
	iter := fs.Int("max-iter", 2000, "iterations per pixel")
	exit := fs.Bool("exit", false, "stop as soon as the job is done")
	useWASM := fs.Bool("wasm", false, "render through the kernel as a WASM module (built here with the Go toolchain, uploaded, fetched by the slaves) instead of their built-in kind")
	logger := logFlags(fs, stderr)
	fs.Lookup("log-level").DefValue = "warn"
	_ = fs.Set("log-level", "warn")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *slaves < 1 {
		return fmt.Errorf("--slaves must be at least 1")
	}
	// Refuse a job every slave would refuse, before starting anything.
	cfg := mandelbrot.Config{Width: *width, Height: *height, TileSize: *tile, MaxIter: *iter}
	if err := cfg.Validate(); err != nil {
		return err
	}
	log, err := logger()
	if err != nil {
		return err
	}

	dir := *data
	if dir == "" {
		if dir, err = os.MkdirTemp("", "anthill-demo-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	reg := newRegistry()
	tok, tokPath, _, err := jsonrpc.LoadOrCreateToken(dir)
	if err != nil {
		return err
	}
	// The demo runs on this machine for whoever runs it: anyone may add a
	// volunteer, as the closing hint says.
	mo := master.Options{Listen: *listen, Data: dir, Logger: log, Version: versionString(), Metrics: reg,
		AdminToken: tok, OpenEnrollment: true}
	m, err := master.New(mo)
	var opErr *net.OpError
	if errors.As(err, &opErr) && *listen != "127.0.0.1:0" {
		fmt.Fprintf(stdout, "%s is taken; using a free port\n", *listen)
		mo.Listen = "127.0.0.1:0"
		m, err = master.New(mo)
	}
	if err != nil {
		return err
	}
	parts, err := attachHTTP(m, mo, tok, tokPath, reg, log)
	if err != nil {
		m.Close()
		return err
	}
	mdone := make(chan error, 1)
	go func() { mdone <- m.Run(context.Background()) }()
	defer func() {
		m.Close()
		<-mdone
	}()
	token, err := os.ReadFile(parts.tokenPath)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "master   %s (store: %s)\n", m.URL(), dir)
	fmt.Fprintf(stdout, "api      http://%s/rpc  token %s\n", m.Addr(), strings.TrimSpace(string(token)))
	fmt.Fprintf(stdout, "metrics  http://%s/metrics\n", m.Addr())
	fmt.Fprintf(stdout, "web      %s  (logs in once; later, with the token)\n", parts.dash.LoginURL(httpBase(m)))
	fmt.Fprintf(stdout, "browser  %s/volunteer  (a tab that opens it volunteers for WASM tasks: try --wasm)\n", httpBase(m))

	var extra []string
	if *concurrency > 0 {
		extra = []string{"--concurrency", fmt.Sprint(*concurrency)}
	}
	// The demo enrolls its own volunteers, one identity per slave.
	procs, err := startSlaves(m.URL(), "demo-slave", *slaves, m.EnrollVolunteer, stderr, extra...)
	defer stopSlaves(procs, log)
	if err != nil {
		return err
	}
	if err := waitConnected(ctx, m, *slaves); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "slaves   %d local processes, connected\n", *slaves)

	node, err := appnode.Connect(ctx, appnode.Options{Master: m.URL(), App: "mandelbrot-demo", Token: tok, Logger: log})
	if err != nil {
		return err
	}
	defer node.Shutdown(context.WithoutCancel(ctx))

	var module string // the kernel's hash with --wasm
	if *useWASM {
		if module, err = uploadKernel(ctx, node, stdout); err != nil {
			return err
		}
	}
	job := newJob(cfg, module)
	fmt.Fprintf(stdout, "job      mandelbrot %dx%d in %d tiles of %dpx, %d iterations\n",
		*width, *height, job.Total(), *tile, *iter)
	start := time.Now()
	if err := node.Run(ctx, job, appnode.RunOptions{Window: 4 * *slaves * max(*concurrency, 2)}); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stdout, "interrupted")
			return nil
		}
		return err
	}
	elapsed := time.Since(start)
	if err := job.Err(); err != nil {
		return err
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	var png bytes.Buffer
	if err := job.Image().WritePNG(&png); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(png.Bytes()); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}

	st := m.Scheduler().Stats()
	fmt.Fprintf(stdout, "done     %d tasks in %v: %.0f tasks/s\n", job.Total(), elapsed.Round(time.Millisecond),
		float64(job.Total())/elapsed.Seconds())
	for _, s := range st.Slaves {
		fmt.Fprintf(stdout, "         %-14s %4d tasks  busy %v\n", s.Identity, s.Done, s.Busy.Round(time.Millisecond))
	}
	fmt.Fprintf(stdout, "store    %d commits for %d changes (group commit)\n", st.Store.Commits, st.Store.Ops)
	fmt.Fprintf(stdout, "image    %s\n", *out)
	if *useWASM {
		// The claim of the WASM path: the module computes what the
		// native kernel does, to the bit. Checked here, on every run.
		native, err := renderNative(ctx, cfg)
		if err != nil {
			return err
		}
		if !bytes.Equal(native, png.Bytes()) {
			return errors.New("the image rendered through WASM differs from the native render")
		}
		fmt.Fprintln(stdout, "         bit-identical to the native render")
	}
	if *exit {
		return nil
	}
	fmt.Fprintf(stdout, "\nThe master keeps running, and the demo keeps zooming into the set so the\n"+
		"dashboard has live work to show. Add a volunteer from another terminal\n"+
		"(the demo's master lets anyone join and gives each its own identity):\n"+
		"  go run ./cmd/anthill slave --master %s\nPress Ctrl-C to stop.\n", m.URL())
	err = zoom(ctx, node, cfg, module, appnode.RunOptions{Window: 4 * *slaves * max(*concurrency, 2)})
	fmt.Fprintln(stdout, "stopping")
	return err
}

// newJob renders c with the slaves' built-in kernel, or with the WASM
// module of the given hash.
func newJob(c mandelbrot.Config, module string) *mandelbrot.Job {
	if module == "" {
		return mandelbrot.NewJob(c)
	}
	return mandelbrot.NewWASMJob(c, module)
}

// uploadKernel builds the mandelbrot kernel for wasip1 and uploads it as
// the application does, returning its hash.
func uploadKernel(ctx context.Context, node *appnode.Node, stdout io.Writer) (string, error) {
	start := time.Now()
	code, err := wasm.Build(ctx, "mandelbrot")
	if err != nil {
		return "", err
	}
	hash, err := node.UploadModule(ctx, "mandelbrot.wasm", code)
	if err != nil {
		return "", fmt.Errorf("upload the kernel: %w", err)
	}
	fmt.Fprintf(stdout, "module   mandelbrot.wasm, %.1f MB, built and uploaded in %v\n         sha256 %s\n",
		float64(len(code))/1e6, time.Since(start).Round(time.Millisecond), hash)
	return hash, nil
}

// renderNative renders the image in this process with the native kernel,
// as PNG bytes.
func renderNative(ctx context.Context, cfg mandelbrot.Config) ([]byte, error) {
	cfg = cfg.WithDefaults()
	img := mandelbrot.NewImage(cfg)
	for _, t := range cfg.Tiles() {
		px, err := mandelbrot.Render(ctx, t.Payload())
		if err != nil {
			return nil, err
		}
		if err := img.Paint(t, px); err != nil {
			return nil, err
		}
	}
	var b bytes.Buffer
	err := img.WritePNG(&b)
	return b.Bytes(), err
}

// zoomCenterX, zoomCenterY is a point on the set's edge whose neighbourhood stays
// detailed at every depth ("seahorse valley").
const zoomCenterX, zoomCenterY = -0.743643887037151, 0.131825904205330

// zoom renders frames ever deeper into the set until ctx ends, at most one
// a second and idle at least as long as it computes: enough to watch on the
// dashboard without taking the whole machine for a demo left open. After a
// hundred frames it starts over.
func zoom(ctx context.Context, node *appnode.Node, base mandelbrot.Config, module string, ro appnode.RunOptions) error {
	base = base.WithDefaults()
	for frame := 0; ; frame = (frame + 1) % 100 {
		c := base
		c.CenterX, c.CenterY = zoomCenterX, zoomCenterY
		c.Scale = 3.5 / float64(c.Width) * math.Pow(0.85, float64(frame))
		start := time.Now()
		if err := node.Run(ctx, newJob(c, module), ro); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		took := time.Since(start)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(max(time.Second-took, took)):
		}
	}
}

// startSlaves runs n `anthill slave` processes of this very binary against
// url, named prefix-1, prefix-2, ..., each with the token that token
// returns for its name and the extra flags. They keep no state: their
// identities belong to a run whose store is temporary.
func startSlaves(url, prefix string, n int, token func(name string) (string, error), stderr io.Writer, extra ...string) ([]*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var procs []*exec.Cmd
	for i := range n {
		name := fmt.Sprintf("%s-%d", prefix, i+1)
		tok, err := token(name)
		if err != nil {
			return procs, err
		}
		args := []string{"slave", "--master", url, "--name", name, "--token", tok, "--state", "", "--log-level", "warn"}
		cmd := exec.Command(exe, append(args, extra...)...)
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Start(); err != nil {
			return procs, fmt.Errorf("start slave: %w", err)
		}
		procs = append(procs, cmd)
	}
	return procs, nil
}

// stopSlaves asks each slave to stop as a volunteer's Ctrl-C would, and
// waits for them.
func stopSlaves(procs []*exec.Cmd, log *slog.Logger) {
	for _, p := range procs {
		_ = p.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range procs {
		done := make(chan error, 1)
		go func() { done <- p.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				log.Warn("slave exited", "pid", p.Process.Pid, "err", err)
			}
		case <-time.After(15 * time.Second):
			_ = p.Process.Kill()
			<-done
		}
	}
}

func waitConnected(ctx context.Context, m *master.Master, n int) error {
	deadline := time.Now().Add(30 * time.Second)
	for len(m.Scheduler().Stats().Slaves) < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d slaves connected after 30s", len(m.Scheduler().Stats().Slaves), n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}
