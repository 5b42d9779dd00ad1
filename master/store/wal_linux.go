package store

import (
	"os"
	"syscall"
	"time"
)

// fdatasync flushes f's data and the metadata needed to read it back, not
// its times: a write into blocks the file already has costs one flush.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }

// lockFile takes the lock bbolt takes on the store file, so recovery does
// not touch a file another process has open.
func lockFile(f *os.File, timeout time.Duration) (bool, error) {
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return true, nil
		}
		if err != syscall.EWOULDBLOCK {
			return false, err
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freeSpace is the room left for unprivileged writes on dir's file system.
func freeSpace(dir string) (int64, bool) {
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) != nil {
		return 0, false
	}
	return int64(st.Bavail) * int64(st.Bsize), true
}

// fallocate reserves blocks that read as zeros, without writing them.
func fallocate(f *os.File, off, n int64) error {
	return syscall.Fallocate(int(f.Fd()), 0, off, n)
}
