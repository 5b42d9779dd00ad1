package jsonrpc

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/anthill-project/anthill/internal/modsig"
	"github.com/anthill-project/anthill/master/modules"
)

// Modules is what the module methods (Modules.*) need of a master. A
// *master.Master is one; like Identities it lives beside Master because
// the scheduler keeps no modules.
type Modules interface {
	UploadModule(ctx context.Context, name string, code []byte, sigs []modsig.Signature, by string) (modules.Info, error)
	Modules() []modules.Info
	ModuleInfo(hash string) (modules.Info, error)
	DeleteModule(hash string) error
	MaxModuleBytes() int
}

// ModuleUploadParams are Modules.Upload's parameters: the module's bytes
// (base64 in JSON), an optional name and the signatures made with
// modsig.Sign over its hash; each must verify.
type ModuleUploadParams struct {
	WASM       []byte             `json:"wasm" rpc:"required"`
	Name       string             `json:"name,omitempty"`
	Signatures []modsig.Signature `json:"signatures,omitempty"`
}

// ModuleUploadResult is Modules.Upload's result.
type ModuleUploadResult = modules.UploadResult

// ModuleParams name one module by hash: Modules.Get, Modules.Delete.
type ModuleParams struct {
	Hash string `json:"hash" rpc:"required"`
}

// Module is Modules.Get's result and one entry of Modules.List's.
type Module = modules.Info

// ModuleList is Modules.List's result, oldest first.
type ModuleList struct {
	Modules []Module `json:"modules"`
}

// ModuleDeleteResult is Modules.Delete's result: nothing.
type ModuleDeleteResult struct{}

// modulesService is the Modules.* methods.
type modulesService struct{ h *handler }

type hashData struct {
	Hash  string `json:"hash"`
	Tasks int    `json:"tasks,omitempty"`
}

// moduleCall decodes a module method's params and runs call with the
// master's module registry.
func moduleCall[P any](h *handler, raw *json.RawMessage, call func(Modules, P) error) error {
	var p P
	if err := decodeParams(raw, &p); err != nil {
		return err
	}
	if h.opts.Modules == nil {
		return rpcError(CodeUnavailable, nil, "unavailable: this master keeps no modules")
	}
	return call(h.opts.Modules, p)
}

// moduleError maps the registry's errors; hash is the module concerned.
func (h *handler) moduleError(err error, hash string) error {
	e, ok := errors.AsType[*modules.Error](err)
	if !ok {
		return h.masterError(err)
	}
	switch {
	case errors.Is(err, modules.ErrInvalid):
		return invalidParam(e.Field, e.Msg)
	case errors.Is(err, modules.ErrTooLarge):
		return rpcError(CodeTooLarge, fieldData{Field: e.Field}, "payload too large: %s: %s", e.Field, e.Msg)
	case errors.Is(err, modules.ErrNotFound):
		return rpcError(CodeNotFound, hashData{Hash: hash}, "not found: %s", e.Msg)
	case errors.Is(err, modules.ErrInUse):
		return rpcError(CodeConflict, hashData{Hash: hash, Tasks: e.Tasks}, "conflict: %s", e.Msg)
	}
	return h.masterError(err)
}

// Upload stores a module (as the admin) and returns its hash.
func (s *modulesService) Upload(r *http.Request, raw *json.RawMessage, out *ModuleUploadResult) error {
	return moduleCall(s.h, raw, func(ms Modules, p ModuleUploadParams) error {
		info, err := ms.UploadModule(r.Context(), p.Name, p.WASM, p.Signatures, modules.ByAdmin)
		if err != nil {
			return s.h.moduleError(err, "")
		}
		*out = ModuleUploadResult{Hash: info.Hash, Size: info.Size, Name: info.Name}
		return nil
	})
}

// List describes every module.
func (s *modulesService) List(r *http.Request, raw *json.RawMessage, out *ModuleList) error {
	return moduleCall(s.h, raw, func(ms Modules, _ struct{}) error {
		out.Modules = ms.Modules()
		return nil
	})
}

// Get describes one module.
func (s *modulesService) Get(r *http.Request, raw *json.RawMessage, out *Module) error {
	return moduleCall(s.h, raw, func(ms Modules, p ModuleParams) error {
		info, err := ms.ModuleInfo(p.Hash)
		if err != nil {
			return s.h.moduleError(err, p.Hash)
		}
		*out = info
		return nil
	})
}

// Delete removes a module no unfinished task names.
func (s *modulesService) Delete(r *http.Request, raw *json.RawMessage, out *ModuleDeleteResult) error {
	return moduleCall(s.h, raw, func(ms Modules, p ModuleParams) error {
		if err := ms.DeleteModule(p.Hash); err != nil {
			return s.h.moduleError(err, p.Hash)
		}
		return nil
	})
}
