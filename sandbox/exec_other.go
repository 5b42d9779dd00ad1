//go:build !linux

package sandbox

import "context"

func (e *Exec) run(context.Context, string, []byte) ([]byte, error) {
	return nil, errExecUnsupported
}
