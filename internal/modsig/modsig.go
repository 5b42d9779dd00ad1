// Package modsig signs and verifies WASM modules by their content hash, so
// a project can say which code its volunteers may run. A signature covers
// the module's SHA-256 and nothing else: the hash already binds every byte,
// and a domain prefix keeps a module signature from being reused as a
// signature over anything else made with the same key.
//
// The text forms are standard base64: a public key is its 32 raw bytes
// (44 characters, easy to paste into a flag), a private key file holds the
// 32-byte seed, a signature its 64 bytes.
package modsig

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// domain prefixes the signed message; bump it on any change of meaning.
const domain = "anthill-module-v1\n"

// Hash is a module's content address: lowercase hex SHA-256 of its bytes.
func Hash(code []byte) string {
	sum := sha256.Sum256(code)
	return hex.EncodeToString(sum[:])
}

// Signature is one signer's signature of a module, both in text form.
type Signature struct {
	Key string `json:"key"` // the signer's public key
	Sig string `json:"sig"`
}

// GenerateKey returns a fresh key pair in text form.
func GenerateKey() (public, private string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", err
	}
	return base64.StdEncoding.EncodeToString(pub), base64.StdEncoding.EncodeToString(priv.Seed()), nil
}

// ParsePublic reads a public key in text form.
func ParsePublic(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("not an anthill public key (want %d bytes of standard base64): %q", ed25519.PublicKeySize, clip(s))
	}
	return ed25519.PublicKey(b), nil
}

// ParsePrivate reads a private key in text form (a key file's content).
func ParsePrivate(s string) (ed25519.PrivateKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.SeedSize {
		return nil, errors.New("not an anthill private key (want a 32-byte seed in standard base64)")
	}
	return ed25519.NewKeyFromSeed(b), nil
}

// LoadPrivate reads a private key file, as `anthill keygen` writes it.
func LoadPrivate(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParsePrivate(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// PublicOf is the text form of priv's public key.
func PublicOf(priv ed25519.PrivateKey) string {
	return PublicText(priv.Public().(ed25519.PublicKey))
}

// PublicText is the text form of a public key: ParsePublic's inverse, so
// parsing and printing a pasted key gives its canonical form.
func PublicText(pub ed25519.PublicKey) string {
	return base64.StdEncoding.EncodeToString(pub)
}

// Sign signs the module of the given hash.
func Sign(priv ed25519.PrivateKey, hash string) Signature {
	sig := ed25519.Sign(priv, []byte(domain+hash))
	return Signature{Key: PublicOf(priv), Sig: base64.StdEncoding.EncodeToString(sig)}
}

// Verify reports whether s is a valid signature by s.Key of the module of
// the given hash.
func Verify(s Signature, hash string) bool {
	pub, err := ParsePublic(s.Key)
	if err != nil {
		return false
	}
	sig, err := base64.StdEncoding.DecodeString(s.Sig)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(pub, []byte(domain+hash), sig)
}

// SignedBy reports whether one of sigs is a valid signature of hash by
// one of the trusted keys (text forms, compared after parsing, so
// whitespace around a pasted key does not matter).
func SignedBy(sigs []Signature, hash string, trusted []string) bool {
	for _, s := range sigs {
		for _, k := range trusted {
			if sameKey(s.Key, k) && Verify(s, hash) {
				return true
			}
		}
	}
	return false
}

func sameKey(a, b string) bool {
	pa, err1 := ParsePublic(a)
	pb, err2 := ParsePublic(b)
	return err1 == nil && err2 == nil && pa.Equal(pb)
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}
