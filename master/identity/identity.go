// Package identity is the master's registry of credentials: application
// tokens, each bound to one app id, and volunteer identities, each a
// unique name with its own token. Tokens are random, shown once when they
// are issued and kept only as SHA-256 hashes, in the store's credentials
// bucket. It knows no sockets and no tasks: the master asks it who a Hello
// is, and closes what a revocation ends.
package identity

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// How a volunteer identity came to be, as Volunteers.List reports it.
const (
	HowOperator   = "operator"   // Volunteers.Enroll
	HowInvitation = "invitation" // a slave presented the shared --slave-token
	HowOpen       = "open"       // a slave joined a master with --open-enrollment
	HowAdmin      = "admin"      // a slave presented the admin token (the operator's own machine)
)

// MaxNameBytes caps an identity name or an app id; it matches the
// protocol's name limit.
const MaxNameBytes = 128

// Errors of the registry. Match them with errors.Is.
var (
	// ErrUnknown: no such app credential or volunteer identity.
	ErrUnknown = errors.New("not enrolled")
	// ErrBadName: a name that cannot be an identity (see CheckName).
	ErrBadName = errors.New("invalid name")
)

// Store is where credentials persist; *store.Store is one.
type Store interface {
	PutCred(key, val []byte) error
	DeleteCred(key []byte) error
	LoadCreds(fn func(key, val []byte) error) error
}

// record is a credential as stored: never the token, only its hash.
type record struct {
	Name       string    `json:"name"`
	Hash       string    `json:"sha256"`
	How        string    `json:"how,omitempty"`
	EnrolledAt time.Time `json:"enrolled_at"`
}

type cred struct {
	record
	hash     [sha256.Size]byte
	lastSeen time.Time // in memory only: a write per connection would cost more than it tells
}

const (
	appPrefix = "app/"
	volPrefix = "vol/"
)

// Registry holds every credential in memory, backed by the store. Its
// methods are safe for concurrent use.
type Registry struct {
	st  Store
	now func() time.Time

	mu     sync.Mutex
	apps   map[string]*cred
	vols   map[string]*cred
	byHash map[[sha256.Size]byte]*cred // volunteers by their token's hash
}

// Open loads the credentials in st. now defaults to time.Now.
func Open(st Store, now func() time.Time) (*Registry, error) {
	if now == nil {
		now = time.Now
	}
	r := &Registry{st: st, now: now, apps: map[string]*cred{}, vols: map[string]*cred{}, byHash: map[[sha256.Size]byte]*cred{}}
	err := st.LoadCreds(func(k, v []byte) error {
		var c cred
		if err := json.Unmarshal(v, &c.record); err != nil {
			return fmt.Errorf("credential %q: %w", k, err)
		}
		h, err := hex.DecodeString(c.Hash)
		if err != nil || len(h) != sha256.Size {
			return fmt.Errorf("credential %q: bad hash", k)
		}
		copy(c.hash[:], h)
		switch key := string(k); {
		case strings.HasPrefix(key, appPrefix):
			r.apps[c.Name] = &c
		case strings.HasPrefix(key, volPrefix):
			r.vols[c.Name] = &c
			r.byHash[c.hash] = &c
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	return r, nil
}

// NewToken returns a fresh random token: 32 bytes, hex.
func NewToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

func hashOf(token string) [sha256.Size]byte { return sha256.Sum256([]byte(token)) }

// CheckName says why name cannot be an identity or app id, or nil: 1 to
// MaxNameBytes of letters, digits, '.', '_' and '-', so a name is safe in
// logs, labels and attributions ("name/session").
func CheckName(name string) error {
	if name == "" || len(name) > MaxNameBytes {
		return fmt.Errorf("%w: must be 1 to %d bytes", ErrBadName, MaxNameBytes)
	}
	for _, c := range name {
		if !nameChar(c) {
			return fmt.Errorf("%w: %q has %q; use letters, digits, '.', '_' and '-'", ErrBadName, name, c)
		}
	}
	return nil
}

func nameChar(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

func (r *Registry) put(prefix string, c *cred) error {
	v, err := json.Marshal(&c.record)
	if err != nil {
		return err
	}
	if err := r.st.PutCred([]byte(prefix+c.Name), v); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	return nil
}

func (r *Registry) newCred(name, how string) (*cred, string) {
	token := NewToken()
	c := &cred{record: record{Name: name, How: how, EnrolledAt: r.now().UTC()}, hash: hashOf(token)}
	c.Hash = hex.EncodeToString(c.hash[:])
	return c, token
}

// EnrollApp issues a token for app id app, replacing any earlier one. The
// token is returned once; only its hash is kept.
func (r *Registry) EnrollApp(app string) (string, error) {
	if err := CheckName(app); err != nil {
		return "", err
	}
	c, token := r.newCred(app, HowOperator)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.put(appPrefix, c); err != nil {
		return "", err
	}
	r.apps[app] = c
	return token, nil
}

// RevokeApp forgets app's token. The app's tasks are not touched.
func (r *Registry) RevokeApp(app string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.apps[app] == nil {
		return fmt.Errorf("app %q: %w", app, ErrUnknown)
	}
	if err := r.st.DeleteCred([]byte(appPrefix + app)); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	delete(r.apps, app)
	return nil
}

// CheckApp reports whether token is app's own token. A token of another
// app never passes.
func (r *Registry) CheckApp(app, token string) bool {
	h := hashOf(token)
	r.mu.Lock()
	c := r.apps[app]
	r.mu.Unlock()
	if c == nil {
		return false
	}
	return subtle.ConstantTimeCompare(h[:], c.hash[:]) == 1
}

// App is an app credential as listed; never its token.
type App struct {
	App        string    `json:"app"`
	EnrolledAt time.Time `json:"enrolled_at"`
}

// Apps lists the app credentials by id.
func (r *Registry) Apps() []App {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]App, 0, len(r.apps))
	for _, c := range r.apps {
		out = append(out, App{App: c.Name, EnrolledAt: c.EnrolledAt})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].App < out[j].App })
	return out
}

// Enroll issues a token for the volunteer identity name, replacing any
// earlier token of that name (the old one stops working). how says who
// asked (HowOperator, ...).
func (r *Registry) Enroll(name, how string) (string, error) {
	if err := CheckName(name); err != nil {
		return "", err
	}
	c, token := r.newCred(name, how)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.put(volPrefix, c); err != nil {
		return "", err
	}
	if old := r.vols[name]; old != nil {
		delete(r.byHash, old.hash)
	}
	r.vols[name] = c
	r.byHash[c.hash] = c
	return token, nil
}

// EnrollNew enrolls a new identity whose name the master chooses: label
// (a slave's self-chosen display name) cleaned up, plus a random suffix,
// so names stay unique whatever slaves call themselves.
func (r *Registry) EnrollNew(label, how string) (name, token string, err error) {
	b := Sanitize(label)
	if len(b) > 48 {
		b = strings.Trim(b[:48], "-")
	}
	for range 8 {
		var s [4]byte
		_, _ = rand.Read(s[:])
		name = b + "-" + hex.EncodeToString(s[:])
		r.mu.Lock()
		taken := r.vols[name] != nil
		r.mu.Unlock()
		if !taken {
			token, err = r.Enroll(name, how)
			return name, token, err
		}
	}
	return "", "", errors.New("identity: no free name") // 2^32 suffixes taken 8 times running
}

// Sanitize turns a self-chosen label into a valid name: every character
// CheckName refuses becomes '-', and an empty result "volunteer".
func Sanitize(label string) string {
	b := []rune(label)
	for i, c := range b {
		if !nameChar(c) {
			b[i] = '-'
		}
	}
	s := strings.Trim(string(b), "-")
	if len(s) > MaxNameBytes {
		s = s[:MaxNameBytes]
	}
	if s == "" {
		return "volunteer"
	}
	return s
}

// Ensure makes sure the identity name exists, enrolling it with how (and
// a token nobody is shown) if not: for a credential that is not the
// identity's own, the admin token.
func (r *Registry) Ensure(name, how string) error {
	if r.Enrolled(name) {
		return nil
	}
	_, err := r.Enroll(name, how)
	return err
}

// Revoke forgets the identity name: its token stops working at once.
func (r *Registry) Revoke(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.vols[name]
	if c == nil {
		return fmt.Errorf("volunteer %q: %w", name, ErrUnknown)
	}
	if err := r.st.DeleteCred([]byte(volPrefix + name)); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	delete(r.vols, name)
	delete(r.byHash, c.hash)
	return nil
}

// Volunteer returns the identity whose token this is, and notes it was
// seen. Lookup is by the token's SHA-256: how long it takes depends on the
// hash, which tells a guesser nothing about any token.
func (r *Registry) Volunteer(token string) (string, bool) {
	if token == "" {
		return "", false
	}
	h := hashOf(token)
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.byHash[h]
	if c == nil {
		return "", false
	}
	c.lastSeen = r.now().UTC()
	return c.Name, true
}

// Enrolled reports whether the identity name holds a token now.
func (r *Registry) Enrolled(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.vols[name] != nil
}

// Volunteer is an identity as listed; never its token.
type Volunteer struct {
	Name       string     `json:"name"`
	How        string     `json:"how"` // operator, invitation, open or admin
	EnrolledAt time.Time  `json:"enrolled_at"`
	LastSeen   *time.Time `json:"last_seen"` // its last handshake since the master started; null if none
	Sessions   []string   `json:"sessions"`  // its live slave sessions, filled by the master
}

// Volunteers lists the identities by name, Sessions empty.
func (r *Registry) Volunteers() []Volunteer {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Volunteer, 0, len(r.vols))
	for _, c := range r.vols {
		v := Volunteer{Name: c.Name, How: c.How, EnrolledAt: c.EnrolledAt, Sessions: []string{}}
		if !c.lastSeen.IsZero() {
			t := c.lastSeen
			v.LastSeen = &t
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
