package jsonrpc

import (
	"testing"
)

// The credential methods against a real master: tokens are shown once and
// never listed, bad names are refused naming the parameter, unknown ones
// are not found.
func TestCredentialMethods(t *testing.T) {
	e := start(t, envOpts{})
	var app AppToken
	e.call("Apps.Enroll", obj{"app": "payroll"}, &app)
	if app.App != "payroll" || len(app.Token) < 32 {
		t.Fatalf("Apps.Enroll gave %+v", app)
	}
	var creds AppCredentialList
	e.call("Apps.Credentials", nil, &creds)
	if len(creds.Credentials) != 1 || creds.Credentials[0].App != "payroll" {
		t.Fatalf("Apps.Credentials gave %+v", creds)
	}
	e.wantError("Apps.Enroll", obj{"app": "has space"}, CodeInvalidParams, "app:")
	e.wantError("Apps.Enroll", obj{}, CodeInvalidParams, "app")
	e.wantError("Apps.Revoke", obj{"app": "nobody"}, CodeNotFound, "not enrolled")
	e.call("Apps.Revoke", obj{"app": "payroll"}, nil)

	var v VolunteerToken
	e.call("Volunteers.Enroll", obj{"name": "lab-pc-7"}, &v)
	if v.Name != "lab-pc-7" || len(v.Token) < 32 {
		t.Fatalf("Volunteers.Enroll gave %+v", v)
	}
	var list VolunteerList
	e.call("Volunteers.List", nil, &list)
	if len(list.Volunteers) != 1 || list.Volunteers[0].Name != "lab-pc-7" || list.Volunteers[0].How != "operator" ||
		list.Volunteers[0].Sessions == nil {
		t.Fatalf("Volunteers.List gave %+v", list)
	}
	e.wantError("Volunteers.Enroll", obj{"name": "a/b"}, CodeInvalidParams, "name:")
	e.wantError("Volunteers.Revoke", obj{"name": "ghost"}, CodeNotFound, "not enrolled")
	e.call("Volunteers.Revoke", obj{"name": "lab-pc-7"}, nil)
	e.call("Volunteers.List", nil, &list)
	if len(list.Volunteers) != 0 {
		t.Fatalf("after revoke: %+v", list)
	}
}
