package master

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/anthill-project/anthill/internal/modsig"
	"github.com/anthill-project/anthill/internal/netguard"
	"github.com/anthill-project/anthill/master/modules"
	"github.com/anthill-project/anthill/protocol"
)

// WASM modules: the registry (master/modules) checks and keeps them; the
// master adds what needs the scheduler (a module tasks still name is not
// deleted) and the HTTP doors, GET /modules/{hash} for slaves and POST
// /modules for applications and the operator.

// ModuleInfo describes an uploaded module.
type ModuleInfo = modules.Info

// Module errors, re-exported for callers of the methods below: match them
// with errors.Is; the *modules.Error says which field is at fault.
var (
	ErrInvalidModule  = modules.ErrInvalid
	ErrModuleTooLarge = modules.ErrTooLarge
	ErrModuleNotFound = modules.ErrNotFound
	ErrModuleInUse    = modules.ErrInUse
)

// UploadModule checks code and stores it durably under its hash, with the
// signatures (each must verify) and name given; by says who uploaded it
// (modules.ByAdmin or modules.ByApp). Uploading stored bytes again adds
// their new signatures and keeps the first name. Errors are a
// *modules.Error for what the caller got wrong.
func (m *Master) UploadModule(ctx context.Context, name string, code []byte, sigs []modsig.Signature, by string) (ModuleInfo, error) {
	info, _, err := m.mods.Put(ctx, name, code, sigs, by)
	if err != nil {
		return info, err
	}
	// New signers may open the module to slaves with trust keys.
	m.sched.ModuleChanged(info.Hash)
	m.opts.Logger.Info("module uploaded", "hash", info.Hash, "name", info.Name, "size", info.Size, "by", by, "signers", len(info.Signers))
	return info, nil
}

// Modules lists every uploaded module, oldest first.
func (m *Master) Modules() []ModuleInfo { return m.mods.List() }

// ModuleInfo describes the module hash.
func (m *Master) ModuleInfo(hash string) (ModuleInfo, error) { return m.mods.Info(hash) }

// ModuleSigners returns the public keys of a known module's signatures, and
// whether the master has the module: the scheduler's lookup
// (sched.Options.Module). It reads memory only and never calls the
// scheduler.
func (m *Master) ModuleSigners(hash string) ([]string, bool) { return m.mods.Signers(hash) }

// MaxModuleBytes is the largest module an upload may carry.
func (m *Master) MaxModuleBytes() int { return m.mods.MaxBytes() }

// DeleteModule removes the module hash, unless unfinished tasks still name
// it: then the error (ErrModuleInUse) says how many.
func (m *Master) DeleteModule(hash string) error {
	// A module is in use while tasks name it or an app validates with it.
	err := m.mods.Delete(hash, func() int { return m.sched.ModuleTasks(hash) + m.sched.Validators(hash) })
	if err == nil {
		m.sched.ForgetModule(hash)
		m.opts.Logger.Info("module deleted", "hash", hash)
	}
	return err
}

// moduleCaller is who presented a credential at a module door.
type moduleCaller struct {
	by        string // modules.ByAdmin or modules.ByApp, for an uploader
	volunteer bool   // a volunteer's token: it may fetch, not upload
}

// moduleAuth says who r's bearer token is. It answers the refusals itself
// (429 while the address is locked out, 401 for a missing or wrong token,
// which counts in the shared limiter when one was presented) and then
// returns false.
func (m *Master) moduleAuth(w http.ResponseWriter, r *http.Request) (moduleCaller, bool) {
	ip := netguard.ClientIP(r, m.opts.TrustProxy)
	if wait := m.opts.Limiter.Allow(ip); wait > 0 {
		netguard.CloseAfter(w)
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		moduleError(w, http.StatusTooManyRequests, "too many wrong tokens from your address; try again later")
		return moduleCaller{}, false
	}
	auth := r.Header.Get("Authorization")
	scheme, tok, _ := strings.Cut(auth, " ")
	tok = strings.TrimSpace(tok)
	var c moduleCaller
	ok := false
	if strings.EqualFold(scheme, "Bearer") && tok != "" {
		switch app := r.Header.Get(protocol.HeaderApp); {
		case app != "":
			ok = m.ident.CheckApp(app, tok) || m.opts.AdminToken != "" && sameSecret(tok, m.opts.AdminToken)
			c.by = modules.ByApp(app)
		case m.opts.AdminToken != "" && sameSecret(tok, m.opts.AdminToken):
			ok, c.by = true, modules.ByAdmin
		default:
			_, ok = m.ident.Volunteer(tok)
			c.volunteer = true
		}
	}
	if !ok {
		if auth != "" {
			m.opts.Limiter.Fail(ip, "modules")
		}
		netguard.CloseAfter(w)
		w.Header().Set("WWW-Authenticate", `Bearer realm="anthill"`)
		moduleError(w, http.StatusUnauthorized, "unauthorized: send Authorization: Bearer <token>: the admin token, a volunteer's token, or an app's token with "+protocol.HeaderApp+": <app id>")
		return moduleCaller{}, false
	}
	return c, true
}

// serveModule is GET /modules/{hash}: the module's bytes, to any enrolled
// volunteer, app or the operator. A hash names its content for good, so
// the answer may be cached for as long as a cache likes.
func (m *Master) serveModule(w http.ResponseWriter, r *http.Request) {
	if _, ok := m.moduleAuth(w, r); !ok {
		return
	}
	hash := r.PathValue("hash")
	code, sigs, err := m.mods.Code(hash)
	if err != nil {
		m.moduleFailed(w, err)
		return
	}
	if sigs == nil {
		sigs = []modsig.Signature{}
	}
	sj, err := json.Marshal(sigs)
	if err != nil {
		m.moduleFailed(w, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/wasm")
	h.Set("ETag", `"`+hash+`"`)
	h.Set("Cache-Control", "private, max-age=31536000, immutable")
	h.Set(protocol.HeaderSignatures, string(sj))
	if info, err := m.mods.Info(hash); err == nil {
		h.Set(protocol.HeaderModuleName, info.Name)
	}
	h.Set("X-Content-Type-Options", "nosniff")
	// ServeContent answers If-None-Match from the ETag and byte ranges, so
	// a slave that lost a download half-way resumes it.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(code))
}

// serveUpload is POST /modules?name=N: the body is the module, the
// optional protocol.HeaderSignatures its signatures. Applications (their token and
// protocol.HeaderApp) and the operator may upload; volunteers may not.
func (m *Master) serveUpload(w http.ResponseWriter, r *http.Request) {
	c, ok := m.moduleAuth(w, r)
	if !ok {
		return
	}
	if c.volunteer {
		netguard.CloseAfter(w)
		moduleError(w, http.StatusForbidden, "forbidden: a volunteer's token may fetch modules, not upload them; use an app's token with "+protocol.HeaderApp+" or the admin token")
		return
	}
	var sigs []modsig.Signature
	if v := r.Header.Get(protocol.HeaderSignatures); v != "" {
		if err := json.Unmarshal([]byte(v), &sigs); err != nil {
			netguard.CloseAfter(w)
			moduleError(w, http.StatusBadRequest, protocol.HeaderSignatures+`: must be a JSON array of {"key","sig"} objects: `+err.Error())
			return
		}
	}
	max := m.mods.MaxBytes()
	if r.ContentLength > int64(max) {
		netguard.CloseAfter(w)
		moduleError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("wasm: %d bytes is over this master's limit of %d bytes for a module", r.ContentLength, max))
		return
	}
	code, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(max)))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			moduleError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("wasm: the body is over this master's limit of %d bytes for a module", max))
			return
		}
		moduleError(w, http.StatusBadRequest, "reading the body: "+err.Error())
		return
	}
	info, err := m.UploadModule(r.Context(), r.URL.Query().Get("name"), code, sigs, c.by)
	if err != nil {
		m.moduleFailed(w, err)
		return
	}
	writeJSON(w, http.StatusOK, modules.UploadResult{Hash: info.Hash, Size: info.Size, Name: info.Name})
}

// moduleFailed answers a registry error with its HTTP status.
func (m *Master) moduleFailed(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, modules.ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, modules.ErrTooLarge):
		status = http.StatusRequestEntityTooLarge
	case errors.Is(err, modules.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, modules.ErrInUse):
		status = http.StatusConflict
	default:
		m.opts.Logger.Error("module request failed", "err", err)
		err = errors.New("internal error: the master could not serve the module; its log says why")
	}
	moduleError(w, status, err.Error())
}

func moduleError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
