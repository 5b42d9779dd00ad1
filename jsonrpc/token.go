package jsonrpc

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// TokenFile is the name of the admin token file inside the master's data
// dir.
const TokenFile = "admin.token"

// MinTokenLen is the shortest admin token accepted, in bytes.
const MinTokenLen = 16

// maxTokenFile bounds what is read of a token file.
const maxTokenFile = 4096

// LoadOrCreateToken returns the admin token kept in dataDir/admin.token,
// creating the directory (0700) and the file (0600, 32 random bytes in hex)
// when it does not exist; created says it did. Two processes racing on a
// fresh dir end up with the same token: the file is written aside and
// linked into place only if it is still absent.
//
// An existing file is trimmed of surrounding whitespace and must hold at
// least MinTokenLen bytes. On Unix it must not be readable or writable by
// group or others, the way ssh treats private keys: fix it with
// chmod 600.
func LoadOrCreateToken(dataDir string) (token, path string, created bool, err error) {
	path = filepath.Join(dataDir, TokenFile)
	if tok, err := readToken(path); !errors.Is(err, fs.ErrNotExist) {
		return tok, path, false, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", path, false, fmt.Errorf("admin token: %w", err)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", path, false, fmt.Errorf("admin token: %w", err)
	}
	tok := hex.EncodeToString(b[:])
	tmp, err := os.CreateTemp(dataDir, TokenFile+".*.tmp") // mode 0600
	if err != nil {
		return "", path, false, fmt.Errorf("admin token: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(tok + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", path, false, fmt.Errorf("admin token: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) { // another process won the race
			tok, err := readToken(path)
			return tok, path, false, err
		}
		return "", path, false, fmt.Errorf("admin token: %w", err)
	}
	return tok, path, true, nil
}

func readToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		return "", fmt.Errorf("admin token: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("admin token %s has mode %#o: it must be readable by its owner only (chmod 600 %s)", path, st.Mode().Perm(), path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	if len(b) > maxTokenFile {
		return "", fmt.Errorf("admin token %s is longer than %d bytes", path, maxTokenFile)
	}
	tok := strings.TrimSpace(string(b))
	if err := checkToken(tok); err != nil {
		return "", fmt.Errorf("admin token %s: %w", path, err)
	}
	return tok, nil
}

func checkToken(tok string) error {
	if len(tok) < MinTokenLen {
		return fmt.Errorf("token is %d bytes; at least %d are required", len(tok), MinTokenLen)
	}
	if strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return errors.New("token contains whitespace or control characters")
	}
	return nil
}
