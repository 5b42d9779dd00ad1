//go:build !linux

package sandbox

import "syscall"

// workerSysProcAttr is nil: only Linux can tie a child's life to its
// parent's. Elsewhere a parent's exit closes its workers' stdin, which
// ends an idle worker, but one running a module in an endless loop
// outlives it.
func workerSysProcAttr() *syscall.SysProcAttr { return nil }
