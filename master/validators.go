package master

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/anthill-project/anthill/master/modules"
	"github.com/anthill-project/anthill/sandbox"
)

// Validators: an app's module that says whether two results agree runs
// here, on the master, in wazero in process (its deadline checks on, so a
// module that loops is stopped), with a small memory cap and no
// filesystem, network or environment. The contract, as docs/TRUST.md
// gives it: stdin is the first result's length as 4 bytes big-endian,
// the first result, then the second; exit 0 says they agree, exit 1 that
// they do not; anything else is an error, and the two count as
// disagreeing.

// validatorMemory caps a validator's linear memory; loadTimeout bounds
// its compilation.
const (
	validatorMemory = 64 << 20
	loadTimeout     = 5 * time.Minute
)

type validators struct {
	mods *modules.Registry
	log  *slog.Logger
	// life ends when the master shuts down (see shutdown); a compile in
	// progress then stops.
	life     context.Context
	shutdown context.CancelFunc

	mu  sync.Mutex
	w   *sandbox.WASM // made at the first comparison
	err error
}

func (v *validators) runner(ctx context.Context) (*sandbox.WASM, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.w == nil && v.err == nil {
		v.w, v.err = sandbox.NewWASM(ctx, sandbox.WASMOptions{MemoryLimit: validatorMemory, MaxLoaded: 16, Logger: v.log})
	}
	return v.w, v.err
}

// agree is sched.Options.Agree.
func (v *validators) agree(ctx context.Context, module string, a, b []byte) (bool, error) {
	w, err := v.runner(ctx)
	if err != nil {
		return false, fmt.Errorf("validator runtime: %w", err)
	}
	if !w.Loaded(module) {
		code, _, err := v.mods.Code(module)
		if err != nil {
			return false, fmt.Errorf("validator %s: %w", module, err)
		}
		// Compiling is once per module and may take seconds (longer
		// under a race detector): it is not bounded by one comparison's
		// deadline, or a large module would never be ready.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loadTimeout)
		stop := context.AfterFunc(v.life, cancel) // but a shutdown stops it
		err = w.Load(lctx, module, "validator", code)
		stop()
		cancel()
		if err != nil {
			return false, fmt.Errorf("validator %s: %w", module, err)
		}
	}
	in := make([]byte, 0, 4+len(a)+len(b))
	in = binary.BigEndian.AppendUint32(in, uint32(len(a)))
	in = append(append(in, a...), b...)
	_, err = w.Run(ctx, module, in, 4<<10)
	if ee, ok := errors.AsType[*sandbox.ExitError](err); ok && ee.Code == 1 {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("validator %s: %w", module, err)
	}
	return true, nil
}

func newValidators(mods *modules.Registry, log *slog.Logger) *validators {
	life, shutdown := context.WithCancel(context.Background())
	return &validators{mods: mods, log: log, life: life, shutdown: shutdown}
}

// close releases the runtime, once the scheduler has stopped.
func (v *validators) close() {
	v.shutdown()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.w != nil {
		_ = v.w.Close(context.Background())
		v.w = nil
	}
	v.err = errors.New("master stopped")
}
