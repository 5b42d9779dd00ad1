package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// drainTimeout bounds the wait for the pipes to close once the process
// group is killed. Killed processes close them at once; only a process
// that left the group (setsid) can hold them open, and it is not waited
// for longer.
const drainTimeout = 2 * time.Second

func (e *Exec) run(ctx context.Context, path string, payload []byte) ([]byte, error) {
	log := e.logger()
	dir, err := os.MkdirTemp("", "anthill-exec-")
	if err != nil {
		return nil, fmt.Errorf("temporary directory of the task: %w", err)
	}
	defer func() {
		if err := os.RemoveAll(dir); err != nil {
			log.Warn("exec: removing the task's temporary directory", "dir", dir, "err", err)
		}
	}()

	// Go's SysProcAttr cannot set rlimits, and setting them between fork
	// and exec would need code of ours in the child. A shell sets them
	// instead, for itself, and execs the program, which inherits them: the
	// shell's ulimit sets both the soft and the hard limit, so the program
	// cannot raise them. The hard CPU limit is a second above the soft one,
	// so that the program gets SIGXCPU, and a chance to report, before
	// SIGKILL. The shell's own PWD is unset, so that the program gets only
	// the environment given here. The limits are numbers and the path is
	// $0, never parsed by the shell.
	cpu, mem, files := e.limits(ctx)
	script := fmt.Sprintf(`unset PWD
ulimit -S -t %d && ulimit -H -t %d && ulimit -v %d && ulimit -n %d || {
	echo "sandbox: cannot set the limits of the task" >&2; exit 125; }
exec "$0"`, cpu, cpu+1, mem/1024, files)
	cmd := exec.Command("/bin/sh", "-c", script, path)
	cmd.Dir = dir
	// Nothing of the slave's environment, its secrets included, reaches
	// the program; TMPDIR points its temporary files into its own
	// directory, which is removed after the run, rather than /tmp.
	cmd.Env = []string{"TMPDIR=" + dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}

	// The pipes are ours, not os/exec's, so that Wait returns when the
	// program exits, even if a process it left behind holds them open,
	// and the group is killed before they are drained.
	stdin, stdinW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer stdinW.Close()
	stdoutR, stdout, err := os.Pipe()
	if err != nil {
		stdin.Close()
		return nil, err
	}
	defer stdoutR.Close()
	stderrR, stderr, err := os.Pipe()
	if err != nil {
		stdin.Close()
		stdout.Close()
		return nil, err
	}
	defer stderrR.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	err = cmd.Start()
	stdin.Close()
	stdout.Close()
	stderr.Close()
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", path, err)
	}

	pgid := cmd.Process.Pid
	killGroup := func() { syscall.Kill(-pgid, syscall.SIGKILL) }
	stopOnDone := context.AfterFunc(ctx, killGroup)

	max := e.maxOutput()
	var (
		wg       sync.WaitGroup
		out      []byte
		exceeded bool
		errOut   stderrWriter
	)
	wg.Go(func() {
		stdinW.Write(payload) // a program need not read its stdin
		stdinW.Close()
	})
	wg.Go(func() { out, exceeded = readAtMost(stdoutR, max, killGroup) })
	wg.Go(func() { io.Copy(&errOut, stderrR) })

	// The group is killed while the program is a zombie, not yet reaped:
	// its pid, the group's id, cannot be reused meanwhile.
	waitErr := waitExited(pgid)
	killGroup()
	stopOnDone()
	if waitErr == nil {
		waitErr = cmd.Wait()
	} else {
		cmd.Wait()
	}

	drain := time.Now().Add(drainTimeout)
	stdinW.SetWriteDeadline(drain)
	stdoutR.SetReadDeadline(drain)
	stderrR.SetReadDeadline(drain)
	wg.Wait()
	if time.Now().After(drain) {
		log.Warn("exec: a process of the task left its process group and holds its pipes", "program", path)
	}

	var exit *exec.ExitError
	switch {
	case exceeded:
		return nil, fmt.Errorf("program stopped: stdout exceeded %d bytes: %w", max, ErrOutputTooLarge)
	case ctx.Err() != nil:
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("program stopped at its deadline: %w", ctx.Err())
		}
		return nil, fmt.Errorf("program stopped: %w", ctx.Err())
	case errors.As(waitErr, &exit):
		status, _ := exit.Sys().(syscall.WaitStatus)
		if status.Signaled() {
			msg := fmt.Sprintf("program killed by signal %d (%v)", status.Signal(), status.Signal())
			if status.Signal() == syscall.SIGXCPU {
				msg += fmt.Sprintf(": it used its %d s of CPU time", cpu)
			}
			return nil, errors.New(withStderr(msg, errOut.String()))
		}
		return nil, &ExitError{Code: uint32(exit.ExitCode()), Stderr: errOut.String(), what: "program"}
	case waitErr != nil:
		return nil, fmt.Errorf("waiting for %s: %w", path, waitErr)
	}
	return out, nil
}

// limits are the run's RLIMIT_CPU in seconds, RLIMIT_AS in bytes and
// RLIMIT_NOFILE.
func (e *Exec) limits(ctx context.Context) (cpu int, mem uint64, files int) {
	cpu, mem, files = e.CPUSeconds, e.MemoryBytes, e.OpenFiles
	if cpu <= 0 {
		cpu = 300
		if deadline, ok := ctx.Deadline(); ok {
			cpu = max(1, int(math.Ceil(time.Until(deadline).Seconds())))
		}
	}
	if mem == 0 {
		mem = 1 << 30
	}
	if files <= 0 {
		files = 64
	}
	return cpu, mem, files
}

// readAtMost reads r to its end, keeping up to max bytes; past them it
// calls full and stops reading, which makes the writers' next write fail.
func readAtMost(r *os.File, max int, full func()) (out []byte, exceeded bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if len(out)+n > max {
			full()
			r.Close()
			return nil, true
		}
		out = append(out, buf[:n]...)
		if err != nil {
			return out, false
		}
	}
}

// waitExited blocks until the process pid has exited, and leaves it
// unreaped, as os.Process does before its Wait.
func waitExited(pid int) error {
	const pPID = 1
	var info [16]uint64 // a siginfo_t
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&info)), syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		if errno != syscall.EINTR {
			if errno != 0 {
				return fmt.Errorf("waitid: %w", errno)
			}
			return nil
		}
	}
}
