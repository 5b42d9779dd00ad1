package slave

import "syscall"

// totalMemory is the machine's RAM in bytes, announced in the Hello.
func totalMemory() uint64 {
	var info syscall.Sysinfo_t
	if syscall.Sysinfo(&info) != nil {
		return 0
	}
	return uint64(info.Totalram) * uint64(info.Unit)
}
