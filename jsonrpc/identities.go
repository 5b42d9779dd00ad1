package jsonrpc

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/anthill-project/anthill/internal/view"
	"github.com/anthill-project/anthill/master/identity"
)

// Identities is what the credential methods (Apps.Enroll, Apps.Revoke,
// Apps.Credentials, Volunteers.*) need of a master. A *master.Master is
// one; it lives beside Master rather than in it because the scheduler,
// which meets Master, holds no credentials.
type Identities interface {
	EnrollApp(app string) (token string, err error)
	RevokeApp(app string) error
	AppCredentials() []identity.App
	EnrollVolunteer(name string) (token string, err error)
	RevokeVolunteer(name string) error
	Volunteers() []identity.Volunteer
}

// AppParams name one application id: Apps.Enroll, Apps.Revoke.
type AppParams struct {
	App string `json:"app" rpc:"required"`
}

// AppToken is Apps.Enroll's result. The token is shown this once: the
// master keeps only its hash.
type AppToken struct {
	App   string `json:"app"`
	Token string `json:"token"`
}

// AppCredentialList is Apps.Credentials' result, by app id; never a token.
type AppCredentialList struct {
	Credentials []identity.App `json:"credentials"`
}

// VolunteerParams name one volunteer identity: Volunteers.Enroll,
// Volunteers.Revoke.
type VolunteerParams struct {
	Name string `json:"name" rpc:"required"`
}

// VolunteerToken is Volunteers.Enroll's result. The token is shown this
// once: the master keeps only its hash.
type VolunteerToken struct {
	Name  string `json:"name"`
	Token string `json:"token"`
}

// VolunteerList is Volunteers.List's result, by name; never a token.
type VolunteerList struct {
	Volunteers []Volunteer `json:"volunteers"`
}

// Volunteer is a volunteer identity with its results, trust and credit:
// Volunteers.Get's result, and an entry of Volunteers.List (without the
// record per app).
type Volunteer = view.Volunteer

type nameData struct {
	Name string `json:"name"`
}

func (h *handler) identities() (Identities, error) {
	if h.opts.Identities == nil {
		return nil, rpcError(CodeUnavailable, nil, "unavailable: this master keeps no credentials")
	}
	return h.opts.Identities, nil
}

// identityError maps the registry's errors; field names the parameter.
func (h *handler) identityError(err error, field, name string) error {
	switch {
	case errors.Is(err, identity.ErrBadName):
		return invalidParam(field, err.Error())
	case errors.Is(err, identity.ErrUnknown):
		return rpcError(CodeNotFound, nameData{name}, "%s %q is not enrolled", field, clip(name))
	}
	return h.masterError(err)
}

// credentialCall decodes a credential method's params and runs call with
// the master's registry: every credential method starts the same way.
func credentialCall[P any](h *handler, raw *json.RawMessage, call func(Identities, P) error) error {
	var p P
	if err := decodeParams(raw, &p); err != nil {
		return err
	}
	ids, err := h.identities()
	if err != nil {
		return err
	}
	return call(ids, p)
}

// Enroll issues a token for an application id, replacing its earlier one.
func (s *appsService) Enroll(r *http.Request, raw *json.RawMessage, out *AppToken) error {
	return credentialCall(s.h, raw, func(ids Identities, p AppParams) error {
		token, err := ids.EnrollApp(p.App)
		if err != nil {
			return s.h.identityError(err, "app", p.App)
		}
		*out = AppToken{App: p.App, Token: token}
		return nil
	})
}

// Revoke forgets an application's token and closes its connection; its
// tasks stay.
func (s *appsService) Revoke(r *http.Request, raw *json.RawMessage, out *OKResult) error {
	return credentialCall(s.h, raw, func(ids Identities, p AppParams) error {
		if err := ids.RevokeApp(p.App); err != nil {
			return s.h.identityError(err, "app", p.App)
		}
		out.OK = true
		return nil
	})
}

// Credentials lists the application ids that hold a token.
func (s *appsService) Credentials(r *http.Request, raw *json.RawMessage, out *AppCredentialList) error {
	return credentialCall(s.h, raw, func(ids Identities, _ struct{}) error {
		out.Credentials = ids.AppCredentials()
		return nil
	})
}

// volunteersService is the Volunteers.* methods.
type volunteersService struct{ h *handler }

// Enroll issues a token for a volunteer identity; enrolling a name again
// replaces its token and ends its sessions.
func (s *volunteersService) Enroll(r *http.Request, raw *json.RawMessage, out *VolunteerToken) error {
	return credentialCall(s.h, raw, func(ids Identities, p VolunteerParams) error {
		token, err := ids.EnrollVolunteer(p.Name)
		if err != nil {
			return s.h.identityError(err, "name", p.Name)
		}
		*out = VolunteerToken{Name: p.Name, Token: token}
		return nil
	})
}

// Revoke revokes a volunteer identity: its sessions close at once and what
// they ran is re-queued at no attempt cost.
func (s *volunteersService) Revoke(r *http.Request, raw *json.RawMessage, out *OKResult) error {
	return credentialCall(s.h, raw, func(ids Identities, p VolunteerParams) error {
		if err := ids.RevokeVolunteer(p.Name); err != nil {
			return s.h.identityError(err, "name", p.Name)
		}
		out.OK = true
		return nil
	})
}

// List returns every volunteer: the enrolled identities and any other
// with a record, each with its results and credit.
func (s *volunteersService) List(r *http.Request, raw *json.RawMessage, out *VolunteerList) error {
	var p struct{}
	if err := decodeParams(raw, &p); err != nil {
		return err
	}
	var enrolled []identity.Volunteer
	if ids := s.h.opts.Identities; ids != nil {
		enrolled = ids.Volunteers()
	}
	out.Volunteers = view.Volunteers(enrolled, s.h.m.Trust())
	return nil
}

// Get returns one volunteer with its record per app.
func (s *volunteersService) Get(r *http.Request, raw *json.RawMessage, out *Volunteer) error {
	var p VolunteerParams
	if err := decodeParams(raw, &p); err != nil {
		return err
	}
	var id identity.Volunteer
	if ids := s.h.opts.Identities; ids != nil {
		for _, v := range ids.Volunteers() {
			if v.Name == p.Name {
				id = v
			}
		}
	}
	tr := s.h.m.VolunteerTrustOf(p.Name)
	if id.Name == "" && tr.Apps == nil {
		return rpcError(CodeNotFound, nameData{p.Name}, "volunteer %q is not enrolled and has no results", clip(p.Name))
	}
	*out = view.VolunteerOf(id, tr, true)
	return nil
}
