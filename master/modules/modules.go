// Package modules is the master's registry of WASM modules: code uploaded
// by the operator or an application, stored once under its SHA-256 (in
// master/store) with a name, its uploader and the signatures that verify.
// It checks uploads and keeps every module's metadata in memory, so the
// scheduler's lookups never wait on the store. It knows no sockets and no
// tasks: whether a task still needs a module is the caller's to say when it
// deletes one.
package modules

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/anthill-project/anthill/internal/modsig"
	"github.com/anthill-project/anthill/master/store"
	"github.com/anthill-project/anthill/protocol"
)

// DefaultMaxBytes is the largest module Options.MaxBytes allows by default.
const DefaultMaxBytes = 32 << 20

// MaxSignatures caps the signatures a module keeps, over all its uploads.
const MaxSignatures = 16

// Errors of the registry, the Kind of an *Error. Match them with errors.Is.
var (
	// ErrInvalid: an upload or a hash the registry refuses; the Error's
	// Field says which part is wrong.
	ErrInvalid = errors.New("invalid module")
	// ErrTooLarge: the module is over Options.MaxBytes.
	ErrTooLarge = errors.New("module too large")
	// ErrNotFound: no module has that hash.
	ErrNotFound = errors.New("module not found")
	// ErrInUse: unfinished tasks name the module, so it cannot be deleted.
	ErrInUse = errors.New("module in use")
)

// Error is why the registry refused a call.
type Error struct {
	Kind  error  // ErrInvalid, ErrTooLarge, ErrNotFound or ErrInUse
	Field string // the part at fault: "wasm", "name", "signatures[1]", "hash"
	Msg   string
	Tasks int // ErrInUse: the unfinished tasks that name the module
}

func (e *Error) Error() string { return e.Field + ": " + e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

// Info describes a module, as Modules.List and the CLI show it.
type Info struct {
	Hash    string    `json:"hash"` // modsig.Hash of the code
	Name    string    `json:"name"`
	Size    int64     `json:"size"`
	Created time.Time `json:"created"` // its first upload
	By      string    `json:"by"`      // who uploaded it first: "admin" or "app:ID"
	// Signers are the public keys of its signatures, in the order they
	// were uploaded; every one verified when it was.
	Signers []string `json:"signers"`
}

// UploadResult is the answer to an upload, on POST /modules and
// Modules.Upload alike.
type UploadResult struct {
	Hash string `json:"hash"`
	Size int64  `json:"size"`
	Name string `json:"name"`
}

// ByAdmin is the By of a module uploaded with the admin token.
const ByAdmin = "admin"

// ByApp is the By of a module uploaded with app's token.
func ByApp(app string) string { return "app:" + app }

// Store is where modules persist; *store.Store is one.
type Store interface {
	PutModule(meta store.Module, code []byte) (store.Module, bool, error)
	ModuleCode(hash string) ([]byte, error)
	Modules() ([]store.Module, error)
	DeleteModule(hash string) error
}

// Options configure Open. Every field's zero value means the default
// written beside it.
type Options struct {
	// MaxBytes caps a module's size. Default DefaultMaxBytes.
	MaxBytes int
	// Check refuses bytes that are not a module the slaves can run (a WASI
	// command); its error says why. Default: every module passes.
	Check func(ctx context.Context, code []byte) error
	// Now stamps a new module's Created. Default time.Now.
	Now func() time.Time
}

// Registry holds every module's metadata in memory, backed by the store.
// Its methods are safe for concurrent use.
//
// Locking: write orders uploads and deletes and is held across their
// store transactions and Delete's inUse call; mu guards byHash and is
// never held while calling out, so Signers, called by the scheduler under
// its own lock, never waits on the store or on the scheduler.
type Registry struct {
	st   Store
	opts Options

	write sync.Mutex

	mu     sync.RWMutex
	byHash map[string]*entry
}

type entry struct {
	info     Info
	sigs     []modsig.Signature
	deleting bool // Delete is asking whether tasks need it: Signers says unknown
}

// Open loads the metadata of every stored module.
func Open(st Store, opts Options) (*Registry, error) {
	if opts.MaxBytes < 0 {
		return nil, fmt.Errorf("modules: negative MaxBytes %d", opts.MaxBytes)
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.Check == nil {
		opts.Check = func(context.Context, []byte) error { return nil }
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	ms, err := st.Modules()
	if err != nil {
		return nil, fmt.Errorf("modules: %w", err)
	}
	r := &Registry{st: st, opts: opts, byHash: make(map[string]*entry, len(ms))}
	for _, m := range ms {
		r.byHash[m.Hash] = entryOf(m)
	}
	return r, nil
}

// MaxBytes is the largest module Put accepts.
func (r *Registry) MaxBytes() int { return r.opts.MaxBytes }

func entryOf(m store.Module) *entry {
	e := &entry{
		info: Info{Hash: m.Hash, Name: m.Name, Size: m.Size, Created: m.Created, By: m.By, Signers: []string{}},
		sigs: m.Signatures,
	}
	for _, s := range m.Signatures {
		e.info.Signers = append(e.info.Signers, s.Key)
	}
	return e
}

// Put checks and durably stores a module and returns what is now known of
// it, and whether it gained signers (a new module with signatures
// included). Uploading bytes already stored adds the signatures it did not
// have and keeps the first name, time and uploader.
//
// It refuses empty code, code over MaxBytes, code Options.Check refuses, a
// name of more than protocol.MaxNameBytes bytes or with control
// characters, and a signature that does not verify for the code's hash.
func (r *Registry) Put(ctx context.Context, name string, code []byte, sigs []modsig.Signature, by string) (Info, bool, error) {
	switch {
	case len(code) == 0:
		return Info{}, false, invalid("wasm", "is empty: a module is a WebAssembly binary")
	case len(code) > r.opts.MaxBytes:
		return Info{}, false, &Error{Kind: ErrTooLarge, Field: "wasm",
			Msg: fmt.Sprintf("%d bytes is over this master's limit of %d bytes for a module", len(code), r.opts.MaxBytes)}
	}
	if err := CheckName(name); err != nil {
		return Info{}, false, err
	}
	if len(sigs) > MaxSignatures {
		return Info{}, false, invalid("signatures", fmt.Sprintf("%d signatures; a module keeps at most %d", len(sigs), MaxSignatures))
	}
	hash := modsig.Hash(code)
	canon, err := checkSignatures(sigs, hash)
	if err != nil {
		return Info{}, false, err
	}
	if err := r.opts.Check(ctx, code); err != nil {
		return Info{}, false, invalid("wasm", err.Error())
	}

	r.write.Lock()
	defer r.write.Unlock()
	r.mu.RLock()
	old := r.byHash[hash]
	var had []modsig.Signature
	if old != nil {
		had = old.sigs
	}
	r.mu.RUnlock()
	if n := len(union(had, canon)); n > MaxSignatures {
		return Info{}, false, invalid("signatures", fmt.Sprintf("module %s would have %d signatures; it keeps at most %d", hash, n, MaxSignatures))
	}
	stored, _, err := r.st.PutModule(store.Module{Hash: hash, Name: name, Created: r.opts.Now().UTC(), By: by, Signatures: canon}, code)
	if err != nil {
		return Info{}, false, err
	}
	e := entryOf(stored)
	r.mu.Lock()
	r.byHash[hash] = e
	r.mu.Unlock()
	return cloneInfo(e.info), len(stored.Signatures) > len(had), nil
}

// CheckName refuses a module name the registry would not keep: longer than
// protocol.MaxNameBytes, not UTF-8, or with control characters. The empty
// name is allowed.
func CheckName(name string) error {
	switch {
	case len(name) > protocol.MaxNameBytes:
		return invalid("name", fmt.Sprintf("%d bytes is longer than the limit of %d", len(name), protocol.MaxNameBytes))
	case !utf8.ValidString(name):
		return invalid("name", "is not valid UTF-8")
	case strings.ContainsFunc(name, unicode.IsControl):
		return invalid("name", "contains a control character")
	}
	return nil
}

// checkSignatures verifies sigs for hash and returns them with their keys
// in canonical text, so one key is one signer however it was pasted.
func checkSignatures(sigs []modsig.Signature, hash string) ([]modsig.Signature, error) {
	out := make([]modsig.Signature, 0, len(sigs))
	for i, s := range sigs {
		field := fmt.Sprintf("signatures[%d]", i)
		pub, err := modsig.ParsePublic(s.Key)
		if err != nil {
			return nil, invalid(field+".key", err.Error())
		}
		s.Key, s.Sig = base64.StdEncoding.EncodeToString(pub), strings.TrimSpace(s.Sig)
		if !modsig.Verify(s, hash) {
			return nil, invalid(field, fmt.Sprintf("does not verify: it is not a signature by %s of module %s", s.Key, hash))
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

func union(a, b []modsig.Signature) []modsig.Signature {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func invalid(field, msg string) *Error { return &Error{Kind: ErrInvalid, Field: field, Msg: msg} }

// CheckHash refuses a string that cannot be a module's hash.
func CheckHash(hash string) error {
	if !protocol.ValidModuleHash(hash) {
		return invalid("hash", "must be 64 lowercase hex digits (a module's SHA-256)")
	}
	return nil
}

func notFound(hash string) *Error {
	return &Error{Kind: ErrNotFound, Field: "hash", Msg: fmt.Sprintf("no module %s on this master", hash)}
}

// Info describes the module hash.
func (r *Registry) Info(hash string) (Info, error) {
	if err := CheckHash(hash); err != nil {
		return Info{}, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	e := r.byHash[hash]
	if e == nil {
		return Info{}, notFound(hash)
	}
	return cloneInfo(e.info), nil
}

// List describes every module, oldest first.
func (r *Registry) List() []Info {
	r.mu.RLock()
	out := make([]Info, 0, len(r.byHash))
	for _, e := range r.byHash {
		out = append(out, cloneInfo(e.info))
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b Info) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Hash, b.Hash)
	})
	return out
}

// Signers returns the public keys of a module's signatures, and whether
// the registry has it. A module being deleted is not had.
func (r *Registry) Signers(hash string) ([]string, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e := r.byHash[hash]
	if e == nil || e.deleting {
		return nil, false
	}
	return slices.Clone(e.info.Signers), true
}

// Code returns a module's bytes and signatures.
func (r *Registry) Code(hash string) ([]byte, []modsig.Signature, error) {
	if err := CheckHash(hash); err != nil {
		return nil, nil, err
	}
	r.mu.RLock()
	e := r.byHash[hash]
	var sigs []modsig.Signature
	if e != nil {
		sigs = slices.Clone(e.sigs)
	}
	r.mu.RUnlock()
	if e == nil {
		return nil, nil, notFound(hash)
	}
	code, err := r.st.ModuleCode(hash)
	if errors.Is(err, store.ErrModuleNotFound) {
		return nil, nil, notFound(hash) // deleted since
	}
	return code, sigs, err
}

// Delete durably removes the module hash unless inUse, asked while
// Signers already says the module is gone (so no new task can name it),
// counts tasks that still need it.
func (r *Registry) Delete(hash string, inUse func() int) error {
	if err := CheckHash(hash); err != nil {
		return err
	}
	r.write.Lock()
	defer r.write.Unlock()
	r.mu.Lock()
	e := r.byHash[hash]
	if e != nil {
		e.deleting = true
	}
	r.mu.Unlock()
	if e == nil {
		return notFound(hash)
	}
	keep := func() {
		r.mu.Lock()
		e.deleting = false
		r.mu.Unlock()
	}
	if n := inUse(); n > 0 {
		keep()
		s := "s"
		if n == 1 {
			s = ""
		}
		return &Error{Kind: ErrInUse, Field: "hash", Tasks: n,
			Msg: fmt.Sprintf("module %s is still named by %d unfinished task%s or app validator%s; cancel them, let them finish or configure the apps without it first", hash, n, s, s)}
	}
	if err := r.st.DeleteModule(hash); err != nil && !errors.Is(err, store.ErrModuleNotFound) {
		keep()
		return err
	}
	r.mu.Lock()
	delete(r.byHash, hash)
	r.mu.Unlock()
	return nil
}

func cloneInfo(i Info) Info {
	i.Signers = slices.Clone(i.Signers)
	return i
}
