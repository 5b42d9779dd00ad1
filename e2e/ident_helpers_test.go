package e2e

import (
	"crypto/sha256"
	"encoding/hex"
)

// identSHA256 is the hex SHA-256 of s: how the store keeps a token.
func identSHA256(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
