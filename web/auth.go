package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	sessionCookie = "anthill_session"
	csrfHeader    = "X-CSRF-Token"
	// codeTTL bounds how long a one-time login link works: it is printed
	// on a terminal and may end up in a scrollback or a shared screen.
	codeTTL = 15 * time.Minute
	// maxCodes bounds the one-time codes kept, whoever asks for them.
	maxCodes = 64
)

var b64 = base64.RawURLEncoding

// auth issues and checks session cookies and CSRF tokens. Sessions are not
// stored: a cookie is its expiry and a nonce, signed with a key derived
// from the admin token. That is what lets an open dashboard carry on
// through a master restart, and rotating the token ends every session.
type auth struct {
	token []byte
	key   []byte
	ttl   time.Duration
	now   func() time.Time

	mu      sync.Mutex
	codes   map[string]time.Time // one-time login codes and their expiry
	revoked map[string]int64     // nonces of sessions ended by logout, and their expiry (Unix seconds)
	file    string               // where revoked is kept; "" for memory only
}

// maxRevoked bounds the sessions remembered as logged out. Only a holder
// of a session can log one out, and sessions expire, so it is never
// reached in practice; past it the soonest to expire is forgotten.
const maxRevoked = 4096

func newAuth(token string, ttl time.Duration, now func() time.Time, file string) (*auth, error) {
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte("anthill dashboard session v1"))
	a := &auth{token: []byte(token), key: mac.Sum(nil), ttl: ttl, now: now, codes: map[string]time.Time{},
		revoked: map[string]int64{}, file: file}
	if err := a.loadRevoked(); err != nil {
		return nil, err
	}
	return a, nil
}

// loadRevoked reads the revocation file: one "expiry nonce" per line.
func (a *auth) loadRevoked() error {
	if a.file == "" {
		return nil
	}
	b, err := os.ReadFile(a.file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("web: sessions ended by logout: %w", err)
	}
	nowUnix := a.now().Unix()
	for line := range strings.Lines(string(b)) {
		exp, nonce, ok := strings.Cut(strings.TrimSpace(line), " ")
		e, err := strconv.ParseInt(exp, 10, 64)
		if !ok || err != nil || nonce == "" {
			return fmt.Errorf("web: %s: a line is not \"expiry nonce\": %.80q", a.file, line)
		}
		if e > nowUnix {
			a.revoked[nonce] = e
		}
	}
	return nil
}

// revoke ends the session v (a valid cookie value) until it expires, and
// saves that when the auth has a file. The session is refused from now on
// even if saving fails.
func (a *auth) revoke(v string) error {
	body64, _, ok := strings.Cut(v, ".")
	body, err := b64.DecodeString(body64)
	if !ok || err != nil || len(body) != 24 {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	nowUnix := a.now().Unix()
	for n, e := range a.revoked {
		if e <= nowUnix {
			delete(a.revoked, n)
		}
	}
	for len(a.revoked) >= maxRevoked {
		soonest, at := "", int64(0)
		for n, e := range a.revoked {
			if soonest == "" || e < at {
				soonest, at = n, e
			}
		}
		delete(a.revoked, soonest)
	}
	a.revoked[b64.EncodeToString(body[8:])] = int64(binary.BigEndian.Uint64(body[:8]))
	if a.file == "" {
		return nil
	}
	var out strings.Builder
	for n, e := range a.revoked {
		fmt.Fprintf(&out, "%d %s\n", e, n)
	}
	tmp := a.file + ".tmp"
	if err := os.WriteFile(tmp, []byte(out.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, a.file)
}

func (a *auth) isRevoked(body []byte) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.revoked[b64.EncodeToString(body[8:])]
	return ok
}

func (a *auth) sign(parts ...[]byte) []byte {
	mac := hmac.New(sha256.New, a.key)
	for _, p := range parts {
		mac.Write(p)
	}
	return mac.Sum(nil)
}

// issue returns a new session cookie value.
func (a *auth) issue() string {
	var body [24]byte
	binary.BigEndian.PutUint64(body[:8], uint64(a.now().Add(a.ttl).Unix()))
	rand.Read(body[8:])
	return b64.EncodeToString(body[:]) + "." + b64.EncodeToString(a.sign([]byte("session"), body[:]))
}

// valid reports whether v is a session cookie we issued that has not
// expired.
func (a *auth) valid(v string) bool {
	body64, sig64, ok := strings.Cut(v, ".")
	if !ok {
		return false
	}
	body, err1 := b64.DecodeString(body64)
	sig, err2 := b64.DecodeString(sig64)
	if err1 != nil || err2 != nil || len(body) != 24 {
		return false
	}
	if !hmac.Equal(sig, a.sign([]byte("session"), body)) {
		return false
	}
	return a.now().Unix() < int64(binary.BigEndian.Uint64(body[:8])) && !a.isRevoked(body)
}

// session returns the request's valid session cookie, or "".
func (a *auth) session(r *http.Request) string {
	c, err := r.Cookie(sessionCookie)
	if err != nil || !a.valid(c.Value) {
		return ""
	}
	return c.Value
}

// csrf is the token a page of session must echo in X-CSRF-Token. Tying it
// to the session means a leaked page from another session is useless.
func (a *auth) csrf(session string) string {
	return b64.EncodeToString(a.sign([]byte("csrf"), []byte(session))[:18])
}

func (a *auth) tokenOK(t string) bool {
	return len(t) > 0 && subtle.ConstantTimeCompare([]byte(t), a.token) == 1
}

// newCode returns a one-time login code, valid for codeTTL.
func (a *auth) newCode() string {
	var b [18]byte
	rand.Read(b[:])
	code := b64.EncodeToString(b[:])
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pruneLocked()
	if len(a.codes) >= maxCodes {
		for c := range a.codes { // drop any: they are all fresh
			delete(a.codes, c)
			break
		}
	}
	a.codes[code] = a.now().Add(codeTTL)
	return code
}

// useCode consumes a one-time code.
func (a *auth) useCode(code string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pruneLocked()
	if _, ok := a.codes[code]; !ok {
		return false
	}
	delete(a.codes, code)
	return true
}

func (a *auth) pruneLocked() {
	now := a.now()
	for c, exp := range a.codes {
		if !now.Before(exp) {
			delete(a.codes, c)
		}
	}
}

// sameOrigin reports whether the request's Origin, if any, names the host
// the request was sent to. Browsers always send Origin on WebSocket
// handshakes and cross-site POSTs; tools like curl send none and have no
// ambient cookies to abuse.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	if err != nil {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

func hmacEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
