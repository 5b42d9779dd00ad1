package slave

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/anthill-project/anthill/sandbox"
)

// RegisterBuiltins registers the stock kinds every slave runs. Their
// semantics are a public contract:
//
//   - echo: the result is the payload.
//   - sleep: the payload is a decimal number of milliseconds; the task
//     sleeps that long (or until its context ends) and its result is the
//     payload. A payload that is not such a number is an error.
//   - fail: always fails; the error message is the payload.
//   - sha256: the result is the lowercase hex SHA-256 of the payload.
func RegisterBuiltins(r *sandbox.Registry) {
	r.Register("echo", echo)
	r.Register("sleep", sleep)
	r.Register("fail", fail)
	r.Register("sha256", sha)
}

func echo(_ context.Context, payload []byte) ([]byte, error) { return payload, nil }

func sleep(ctx context.Context, payload []byte) ([]byte, error) {
	ms, err := strconv.ParseUint(strings.TrimSpace(string(payload)), 10, 64)
	if err != nil || ms > math.MaxInt64/uint64(time.Millisecond) {
		return nil, fmt.Errorf("sleep: payload %q is not a decimal number of milliseconds", payload)
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return payload, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func fail(_ context.Context, payload []byte) ([]byte, error) { return nil, errors.New(string(payload)) }

func sha(_ context.Context, payload []byte) ([]byte, error) {
	sum := sha256.Sum256(payload)
	return []byte(hex.EncodeToString(sum[:])), nil
}
