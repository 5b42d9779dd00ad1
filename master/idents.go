package master

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"slices"

	"github.com/anthill-project/anthill/master/identity"
	"github.com/anthill-project/anthill/master/sched"
	"github.com/anthill-project/anthill/protocol"
)

// Who may connect, and closing what a revocation ends. The registry
// (master/identity) says who a token is; the master keeps which live
// connections each credential holds, so revoking one closes them at once.

// auth is what a Hello's credential turned out to be.
type auth struct {
	volunteer string // a slave's identity
	issued    string // a token enrolled during this handshake, for the Welcome
	admin     bool   // it presented the admin token
}

// sameSecret compares two secrets in constant time, whatever their lengths.
func sameSecret(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// authenticate says who h is on the role's endpoint, or refuses it with a
// protocol code and why. A slave with an invitation, the admin token or
// (under open enrollment) no credential at all is enrolled here, before
// its Welcome, so the Welcome can carry its new token.
func (m *Master) authenticate(h *protocol.Hello, role, remote string) (a auth, code, why string) {
	admin := m.opts.AdminToken != "" && h.Token != "" && sameSecret(h.Token, m.opts.AdminToken)
	if role == protocol.RoleApp {
		if admin || m.ident.CheckApp(h.Name, h.Token) {
			return auth{admin: admin}, "", ""
		}
		return a, protocol.CodeUnauthorized, fmt.Sprintf("app %q needs its own token (anthill apps enroll %s) or the admin token", clipName(h.Name), clipName(h.Name))
	}
	if name, ok := m.ident.Volunteer(h.Token); ok {
		return auth{volunteer: name}, "", ""
	}
	var how string
	switch {
	case h.Token == "" && m.opts.OpenEnrollment:
		how = identity.HowOpen
	case h.Token != "" && m.opts.SlaveToken != "" && sameSecret(h.Token, m.opts.SlaveToken):
		how = identity.HowInvitation
	case admin:
		// The operator's own machine: it runs as the identity its label
		// names, created on first use. The admin token stays its
		// credential, so no token of its own is issued.
		name := identity.Sanitize(h.Name)
		if err := m.ident.Ensure(name, identity.HowAdmin); err != nil {
			m.opts.Logger.Error("enrolling an operator's slave", "err", err)
			return a, protocol.CodeInternal, "could not enroll the volunteer"
		}
		return auth{volunteer: name, admin: true}, "", ""
	case h.Token == "":
		return a, protocol.CodeUnauthorized, "this master admits enrolled volunteers only: ask its operator for a token (anthill volunteers enroll NAME) and run anthill slave --token TOKEN"
	default:
		return a, protocol.CodeUnauthorized, "unknown or revoked volunteer token"
	}
	name, token, err := m.ident.EnrollNew(h.Name, how)
	if err != nil {
		m.opts.Logger.Error("enrolling a volunteer", "err", err)
		return a, protocol.CodeInternal, "could not enroll the volunteer"
	}
	m.opts.Logger.Info("volunteer enrolled", "volunteer", name, "how", how, "label", h.Name, "remote", remote)
	return auth{volunteer: name, issued: token}, "", ""
}

func clipName(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// slaveConn is a live slave session, for revocation.
type slaveConn struct {
	sl *sched.Slave
	p  *peer
}

func (m *Master) trackSlave(volunteer string, sc slaveConn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sessions[volunteer] == nil {
		m.sessions[volunteer] = map[*sched.Slave]*peer{}
	}
	m.sessions[volunteer][sc.sl] = sc.p
}

func (m *Master) untrackSlave(volunteer string, sl *sched.Slave) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions[volunteer], sl)
	if len(m.sessions[volunteer]) == 0 {
		delete(m.sessions, volunteer)
	}
}

// endSessions takes back what every live session of volunteer holds, at
// no attempt cost, and closes them as unauthorized.
func (m *Master) endSessions(volunteer, why string) int {
	m.mu.Lock()
	var scs []slaveConn
	for sl, p := range m.sessions[volunteer] {
		scs = append(scs, slaveConn{sl, p})
	}
	m.mu.Unlock()
	for _, sc := range scs {
		n := m.sched.RevokeSlave(sc.sl, why)
		sc.p.log.Info("volunteer session ended", "why", why, "requeued", n)
		sc.p.Close(protocol.CodeUnauthorized, "volunteer "+volunteer+": "+why)
	}
	return len(scs)
}

// EnrollApp issues a token for app id app (Apps.Enroll), replacing its
// earlier one; a connection that used the old token is closed.
func (m *Master) EnrollApp(app string) (string, error) {
	token, err := m.ident.EnrollApp(app)
	if err != nil {
		return "", err
	}
	m.closeApp(app, false, "its token was replaced")
	m.opts.Logger.Info("app enrolled", "app", app)
	return token, nil
}

// RevokeApp forgets app's token and closes its connection (Apps.Revoke).
// Its tasks stay: the operator may enroll it again.
func (m *Master) RevokeApp(app string) error {
	if err := m.ident.RevokeApp(app); err != nil {
		return err
	}
	m.closeApp(app, true, "its token was revoked")
	m.opts.Logger.Info("app revoked", "app", app)
	return nil
}

// closeApp closes app's live connections: all of them when all, else
// only those that used an app token.
func (m *Master) closeApp(app string, all bool, why string) {
	m.mu.Lock()
	var ps []*peer
	for p, admin := range m.appConns[app] {
		if all || !admin {
			ps = append(ps, p)
		}
	}
	m.mu.Unlock()
	for _, p := range ps {
		p.Close(protocol.CodeUnauthorized, "app "+app+": "+why)
	}
}

// stillValid reports whether the credential a slave's session was
// admitted with still holds, once the session is tracked: a revocation or
// a replacement that ran in between could not see it.
func (m *Master) stillValid(a auth, token string) bool {
	switch {
	case a.issued != "":
		token = a.issued // enrolled in this very handshake
	case a.admin:
		return m.ident.Enrolled(a.volunteer)
	}
	name, ok := m.ident.Volunteer(token)
	return ok && name == a.volunteer
}

// AppCredentials lists the app ids holding a token.
func (m *Master) AppCredentials() []identity.App { return m.ident.Apps() }

// EnrollVolunteer enrolls the identity name and returns its token
// (Volunteers.Enroll). Enrolling a name again replaces its token: the old
// one stops working and its live sessions end.
func (m *Master) EnrollVolunteer(name string) (string, error) {
	token, err := m.ident.Enroll(name, identity.HowOperator)
	if err != nil {
		return "", err
	}
	m.endSessions(name, "its token was replaced")
	m.opts.Logger.Info("volunteer enrolled", "volunteer", name, "how", identity.HowOperator)
	return token, nil
}

// RevokeVolunteer revokes the identity name (Volunteers.Revoke): its
// token stops working, its sessions close now, and what they ran goes
// back to the queue at no attempt cost.
func (m *Master) RevokeVolunteer(name string) error {
	if err := m.ident.Revoke(name); err != nil {
		return err
	}
	n := m.endSessions(name, "revoked")
	m.opts.Logger.Info("volunteer revoked", "volunteer", name, "sessions_closed", n)
	return nil
}

// Volunteers lists every identity with its live sessions
// (Volunteers.List); never a token.
func (m *Master) Volunteers() []identity.Volunteer {
	vs := m.ident.Volunteers()
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range vs {
		for sl := range m.sessions[vs[i].Name] {
			vs[i].Sessions = append(vs[i].Sessions, sl.Session())
		}
		slices.Sort(vs[i].Sessions)
	}
	return vs
}

// Identity errors, re-exported for callers of the methods above.
var (
	ErrNotEnrolled = identity.ErrUnknown
	ErrBadName     = identity.ErrBadName
)
