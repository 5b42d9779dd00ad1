//go:build !linux

package store

import (
	"errors"
	"os"
	"time"
)

func fdatasync(f *os.File) error { return f.Sync() }

// lockFile does not lock here: run one master per data directory.
func lockFile(*os.File, time.Duration) (bool, error) { return true, nil }

func freeSpace(string) (int64, bool) { return 0, false }

func fallocate(*os.File, int64, int64) error { return errors.ErrUnsupported }
