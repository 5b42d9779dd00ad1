package sandbox

import "syscall"

// workerSysProcAttr has the kernel kill a worker when the thread that
// started it exits, with the process in particular: a slave killed with
// SIGKILL leaves no worker behind.
func workerSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
