package store

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test must leave no committer behind: Close waits for it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
