package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Exec runs allow-listed programs, for clusters whose members trust each
// other's code: the task kind is the program's NAME. The payload is the
// program's stdin, its stdout is the result, a non-zero exit is an
// *ExitError. A program runs with no arguments, an empty environment but
// TMPDIR, a private temporary directory as its working directory, limits
// on CPU time, address space and open files, and in a process group of
// its own, killed whole when it exits or its task's context is done.
// Exec works on Linux only; its Run fails elsewhere. It is safe for
// concurrent use once set up.
//
// These are limits, not isolation: the program runs as the slave's user
// and sees what that user may see, the network included. See the package
// documentation.
type Exec struct {
	// Programs maps task kinds to absolute paths of executables, as
	// ParseAllowExec returns them.
	Programs map[string]string
	// CPUSeconds is the RLIMIT_CPU of a run. 0 means the time left to
	// the task's deadline, rounded up, or 300 seconds without one.
	CPUSeconds int
	// MemoryBytes is the RLIMIT_AS of a run, its address space. 0 means
	// 1 GiB.
	MemoryBytes uint64
	// OpenFiles is the RLIMIT_NOFILE of a run. 0 means 64.
	OpenFiles int
	// MaxOutput bounds stdout, in bytes: a program that writes more is
	// killed and its task fails with ErrOutputTooLarge. 0 means 16 MiB.
	MaxOutput int
	// Logger receives what goes wrong around a run, not in it: a
	// temporary directory that could not be removed, a process that left
	// its group. nil discards.
	Logger *slog.Logger
}

// programName is a plain token: it is a task kind and an argument of
// --allow-exec.
var programName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ParseAllowExec parses "NAME=PATH": NAME is a plain token (letters,
// digits, '.', '_', '-'), PATH the absolute path of an existing
// executable regular file.
func ParseAllowExec(spec string) (name, path string, err error) {
	name, path, ok := strings.Cut(spec, "=")
	switch {
	case !ok:
		return "", "", fmt.Errorf("allow-exec %q: want NAME=PATH", spec)
	case !programName.MatchString(name):
		return "", "", fmt.Errorf("allow-exec %q: NAME must be letters, digits, '.', '_' or '-', not starting with a sign", spec)
	case !filepath.IsAbs(path):
		return "", "", fmt.Errorf("allow-exec %q: PATH must be absolute", spec)
	}
	path = filepath.Clean(path)
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return "", "", fmt.Errorf("allow-exec %q: %w", spec, err)
	case !fi.Mode().IsRegular():
		return "", "", fmt.Errorf("allow-exec %q: %s is not a regular file", spec, path)
	case fi.Mode().Perm()&0o111 == 0:
		return "", "", fmt.Errorf("allow-exec %q: %s is not executable", spec, path)
	}
	return name, path, nil
}

// Kinds returns the names of the programs, sorted.
func (e *Exec) Kinds() []string {
	kinds := make([]string, 0, len(e.Programs))
	for k := range e.Programs {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	return kinds
}

// Run runs the program of kind with payload on its stdin and returns its
// stdout. A program that exits non-zero yields an *ExitError, one killed
// by a signal (its CPU limit, for one) an error naming the signal, both
// with the start and end of its stderr; a run stopped by ctx an error
// wrapping ctx.Err(); too much output ErrOutputTooLarge, wrapped.
func (e *Exec) Run(ctx context.Context, kind string, payload []byte) ([]byte, error) {
	path, ok := e.Programs[kind]
	if !ok {
		return nil, fmt.Errorf("unknown task kind %q", kind)
	}
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("program %s: path %q is not absolute", kind, path)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return e.run(ctx, path, payload)
}

func (e *Exec) logger() *slog.Logger {
	if e.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Logger
}

func (e *Exec) maxOutput() int {
	if e.MaxOutput > 0 {
		return e.MaxOutput
	}
	return defaultMaxOutput
}

var errExecUnsupported = errors.New("sandbox: Exec runs programs on Linux only")
