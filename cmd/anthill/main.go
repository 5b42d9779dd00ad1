// Command anthill is the one Anthill binary: the master, the volunteer
// slave, the demo and the benchmark. It is the only place that parses flags
// and handles signals; everything it runs lives in the packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/anthill-project/anthill/sandbox"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise the VCS revision Go stamped into the binary is used.
var version = ""

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return "dev"
}

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return append([]command{
		{"master", "run a MasterNode", runMaster},
		{"slave", "run a volunteer slave that executes tasks", runSlave},
		{"demo", "run a master, local slaves and the mandelbrot job", runDemo},
		{"bench", "measure end-to-end throughput and latency", runBench},
		{"keygen", "make a key pair for signing WASM modules", runKeygen},
		{"version", "print the version", func(_ context.Context, _ []string, stdout, _ io.Writer) error {
			fmt.Fprintln(stdout, "anthill", versionString())
			return nil
		}},
	}, clientCommands()...)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "anthill: volunteer-computing task distribution")
	fmt.Fprintln(w, "\nusage: anthill <command> [flags]   (anthill <command> --help for its flags)")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
}

// errUsage marks a bad command line: exit code 2, like flag's.
var errUsage = errors.New("usage")

func main() {
	// A slave runs WASM modules in worker processes of this binary: when
	// started as one, serve and exit before anything else.
	sandbox.ServeWorkerIfAsked()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "--help" {
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name != name {
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		// After the first signal starts a clean stop, restore the default
		// handling: a second Ctrl-C kills a process stuck in a task that
		// ignores cancellation.
		go func() { <-ctx.Done(); stop() }()
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		default:
			fmt.Fprintf(stderr, "anthill %s: %v\n", name, err)
			return exitCode(err)
		}
	}
	fmt.Fprintf(stderr, "anthill: unknown command %q\n\n", name)
	usage(stderr)
	return 2
}

// newFlags makes a subcommand's flag set; parse errors return errUsage.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("anthill "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return errUsage
	}
	return nil
}

// logFlags adds --log-level and --log-format and returns a constructor for
// the logger they describe.
func logFlags(fs *flag.FlagSet, stderr io.Writer) func() (*slog.Logger, error) {
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	format := fs.String("log-format", "text", "log format: text or json")
	return func() (*slog.Logger, error) {
		var l slog.Level
		if err := l.UnmarshalText([]byte(*level)); err != nil {
			return nil, fmt.Errorf("--log-level: %w", err)
		}
		o := &slog.HandlerOptions{Level: l}
		switch *format {
		case "text":
			return slog.New(slog.NewTextHandler(stderr, o)), nil
		case "json":
			return slog.New(slog.NewJSONHandler(stderr, o)), nil
		}
		return nil, fmt.Errorf("--log-format %q: want text or json", *format)
	}
}
