//go:build !linux

package sandbox

import "syscall"

// workerSysProcAttr is nil: only Linux can tie a child's life to its
// parent's, so elsewhere a worker outlives a parent that is killed (one
// that exits closes the worker's stdin, which ends it).
func workerSysProcAttr() *syscall.SysProcAttr { return nil }
