package dial

import (
	"testing"

	"github.com/anthill-project/anthill/protocol"
)

// The client's own cap wins over a larger or missing announcement.
func TestReadLimitIsTheSmallerAndNeverNone(t *testing.T) {
	for _, c := range []struct{ local, announced, want int }{
		{0, 0, DefaultMaxFrame},
		{0, -1, DefaultMaxFrame},
		{0, 1 << 30, DefaultMaxFrame},
		{0, 1 << 20, 1 << 20},
		{4 << 20, 0, 4 << 20},
		{4 << 20, 8 << 20, 4 << 20},
		{4 << 20, 1 << 20, 1 << 20},
	} {
		if got := ReadLimit(c.local, c.announced); got != c.want {
			t.Errorf("ReadLimit(%d, %d) = %d, want %d", c.local, c.announced, got, c.want)
		}
	}
}

// rate_limited is worth a retry, later; unauthorized is not.
func TestRateLimitedIsNotFatal(t *testing.T) {
	if Fatal(&RefusedError{&protocol.Error{Code: protocol.CodeRateLimited}}) {
		t.Error("rate_limited is fatal: a slave behind a guesser's NAT would stop for good")
	}
	if !Fatal(&RefusedError{&protocol.Error{Code: protocol.CodeUnauthorized}}) {
		t.Error("unauthorized is not fatal")
	}
}

func TestClientTLS(t *testing.T) {
	if c, err := ClientTLS(""); c != nil || err != nil {
		t.Errorf("no CA file: %v %v, want the system's roots (nil)", c, err)
	}
	if _, err := ClientTLS(t.TempDir() + "/missing.pem"); err == nil {
		t.Error("a missing CA file was accepted")
	}
	if _, err := ClientTLS("limit_test.go"); err == nil {
		t.Error("a file without a PEM certificate was accepted")
	}
}
