package web

import (
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/anthill-project/anthill/internal/netguard"
	"github.com/anthill-project/anthill/internal/view"
)

//go:embed assets
var assets embed.FS

// Options configures the dashboard.
type Options struct {
	// Token is the admin token that logs in; required. The JSON-RPC API
	// takes the same one.
	Token string
	// SessionTTL is how long a login lasts. Default 12h.
	SessionTTL time.Duration
	// Interval is the period of live updates. Default 1s.
	Interval time.Duration
	// MaxLive bounds the live feeds served at once, so open tabs cannot
	// load the master. Default 32.
	MaxLive int
	// Now is the clock for sessions and login codes. Default time.Now.
	Now func() time.Time
	// Logger receives the dashboard's logs. Nil discards them.
	Logger *slog.Logger
	// Limiter counts wrong tokens and login codes per IP and locks an
	// address out after a few (pass the master's, master.Limiter, so every
	// door shares it). Default: one of the dashboard's own.
	Limiter *netguard.Limiter
	// TrustProxy says a TLS-terminating reverse proxy sets
	// X-Forwarded-Proto and X-Forwarded-For: the cookie is then Secure
	// when the proxy says https, and failures count per forwarded address.
	// Never set it when browsers can reach the master directly. Default
	// false: the cookie is Secure only when the master serves TLS itself.
	TrustProxy bool
	// RevocationFile keeps the sessions ended by logout until they expire,
	// so a logged-out cookie stays dead across a master restart. Default
	// "": kept in memory only.
	RevocationFile string
}

// RevocationFile is the name cmd/anthill gives Options.RevocationFile in
// the master's data dir.
const RevocationFile = "dashboard-logouts"

// Server serves the dashboard. Mount it at "/" on the master with
// master.Handle; it stops its live feeds when the master stops.
type Server struct {
	m         Master
	opts      Options
	auth      *auth
	mux       *http.ServeMux
	index     *template.Template
	vol       *template.Template // the volunteer page
	boardPage *template.Template // the public leaderboard
	static    http.Handler
	up        websocket.Upgrader

	// The leaderboard as last built (see leaders).
	boardMu sync.Mutex
	board   []view.Leader
	boardAt time.Time

	hub *hub // builds the feeds' updates

	mu     sync.Mutex
	live   int // feeds being served
	closed bool
	feeds  sync.WaitGroup
	quit   chan struct{}
}

// New returns the dashboard of m.
func New(m Master, o Options) (*Server, error) {
	if o.Token == "" {
		return nil, errors.New("web: the admin token is required")
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 12 * time.Hour
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.MaxLive <= 0 {
		o.MaxLive = 32
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Limiter == nil {
		o.Limiter = netguard.NewLimiter(netguard.LimiterOptions{Logger: o.Logger})
	}
	a, err := newAuth(o.Token, o.SessionTTL, o.Now, o.RevocationFile)
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, err
	}
	index, err := template.ParseFS(sub, "index.html")
	if err != nil {
		return nil, err
	}
	vol, err := template.ParseFS(sub, "volunteer.html")
	if err != nil {
		return nil, err
	}
	board, err := template.ParseFS(sub, "leaderboard.html")
	if err != nil {
		return nil, err
	}
	s := &Server{
		m: m, opts: o, auth: a,
		mux: http.NewServeMux(), index: index, vol: vol, boardPage: board,
		static: http.StripPrefix("/static/", http.FileServerFS(sub)),
		quit:   make(chan struct{}),
	}
	s.hub = newHub(s)
	s.up = websocket.Upgrader{
		ReadBufferSize: 1024, WriteBufferSize: 16 << 10,
		EnableCompression: true,
		CheckOrigin:       sameOrigin,
	}
	s.mux.HandleFunc("GET /{$}", s.serveIndex)
	s.mux.HandleFunc("GET /login", s.serveLoginPage)
	s.mux.HandleFunc("POST /login", s.serveLogin)
	s.mux.HandleFunc("POST /logout", s.action(s.serveLogout))
	s.mux.HandleFunc("GET /static/", s.serveStatic)
	s.mux.HandleFunc("GET /volunteer", s.serveVolunteer)
	s.mux.HandleFunc("GET /leaderboard", s.serveLeaderboard)
	s.mux.HandleFunc("GET /leaderboard.json", s.serveLeaderboardJSON)
	s.mux.HandleFunc("GET /ui/volunteers", s.authed(s.serveVolunteers))
	s.mux.HandleFunc("GET /ui/session", s.authed(s.serveSession))
	s.mux.HandleFunc("GET /ui/live", s.authed(s.serveLive))
	s.mux.HandleFunc("GET /ui/tasks", s.authed(s.serveTasks))
	s.mux.HandleFunc("GET /ui/task", s.authed(s.serveTask))
	s.mux.HandleFunc("POST /ui/cancel", s.action(s.taskAction("canceled", m.Cancel)))
	s.mux.HandleFunc("POST /ui/retry", s.action(s.taskAction("retried", m.Retry)))
	s.mux.HandleFunc("POST /ui/drain", s.action(s.serveDrain))
	go func() {
		select {
		case <-m.Stopped():
			s.Close()
		case <-s.quit:
		}
	}()
	return s, nil
}

// LoginURL returns a link to the dashboard at base (such as
// "http://127.0.0.1:7070") that logs in once, within 15 minutes, without
// typing the token: for the demo and for `anthill master` to print.
func (s *Server) LoginURL(base string) string {
	return strings.TrimSuffix(base, "/") + "/login?code=" + s.auth.newCode()
}

// Close ends the live feeds and waits for them. The master's Stopping
// calls it too; it is idempotent.
func (s *Server) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.quit)
	}
	s.mu.Unlock()
	s.feeds.Wait()
	s.hub.wait() // no feed joins once closed and the feeds are gone
}

// The pages run only our own scripts and styles and are never framed:
// that leaves an injected string nothing to run and nothing to click.
// The volunteer page and its scripts (its workers take their policy from
// their own script's answer) may also compile WebAssembly, which
// 'wasm-unsafe-eval' allows without allowing eval of JavaScript.
const (
	csp          = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
	volunteerCSP = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

// volunteerPath reports whether p is the volunteer page or one of the
// scripts it runs.
func volunteerPath(p string) bool {
	return p == "/volunteer" || strings.HasPrefix(p, "/static/volunteer/") || strings.HasPrefix(p, "/static/vendor/browser_wasi_shim/")
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	if volunteerPath(r.URL.Path) {
		h.Set("Content-Security-Policy", volunteerCSP)
	} else {
		h.Set("Content-Security-Policy", csp)
	}
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// Not no-referrer: under it Chromium sends "Origin: null" with form
	// posts, and the login could not tell itself from a foreign page.
	h.Set("Referrer-Policy", "same-origin")
	s.mux.ServeHTTP(w, r)
}

func (s *Server) serveStatic(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, ".html") || strings.HasSuffix(r.URL.Path, "/") {
		http.NotFound(w, r) // pages go through their handlers, which check the session
		return
	}
	// Assets change with the binary; revalidating is cheap on a LAN.
	w.Header().Set("Cache-Control", "no-cache")
	s.static.ServeHTTP(w, r)
}

func (s *Server) serveIndex(w http.ResponseWriter, r *http.Request) {
	sess := s.auth.session(r)
	if sess == "" {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	in := s.m.Info()
	_ = s.index.Execute(w, map[string]string{"CSRF": s.auth.csrf(sess), "Version": in.Version})
}

// serveVolunteer is the browser volunteer's page. It is public: what it
// may do is decided by the master at the slave handshake, with the
// volunteer token it presents (or none, under open enrollment).
func (s *Server) serveVolunteer(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_ = s.vol.Execute(w, map[string]string{"Version": s.m.Info().Version})
}

func (s *Server) serveLoginPage(w http.ResponseWriter, r *http.Request) {
	if code := r.URL.Query().Get("code"); code != "" {
		ip := netguard.ClientIP(r, s.opts.TrustProxy)
		if wait := s.opts.Limiter.Allow(ip); wait > 0 {
			netguard.TooMany(w, wait, "too many failed logins from your address; try again later")
			return
		}
		if s.auth.useCode(code) {
			s.opts.Limiter.Succeed(ip)
			s.login(w, r)
			return
		}
		s.opts.Limiter.Fail(ip, "login code")
		s.loginPage(w, http.StatusUnauthorized, "That login link was used already or has expired. Log in with the admin token.")
		return
	}
	if s.auth.session(r) != "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	s.loginPage(w, http.StatusOK, "")
}

func (s *Server) serveLogin(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		netguard.CloseAfter(w)
		http.Error(w, "cross-origin login refused", http.StatusForbidden)
		return
	}
	// A locked-out address is refused before its token is read, let alone
	// checked; the limiter logs failures, sampled, not one line each.
	ip := netguard.ClientIP(r, s.opts.TrustProxy)
	if wait := s.opts.Limiter.Allow(ip); wait > 0 {
		netguard.TooMany(w, wait, "too many failed logins from your address; try again later")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if !s.auth.tokenOK(r.PostFormValue("token")) {
		s.opts.Limiter.Fail(ip, "login")
		s.loginPage(w, http.StatusUnauthorized, "That is not the admin token.")
		return
	}
	s.opts.Limiter.Succeed(ip)
	s.login(w, r)
}

// secure reports whether the browser reached us over TLS: ours, or a
// proxy's that TrustProxy lets us believe.
func (s *Server) secure(r *http.Request) bool {
	return r.TLS != nil || (s.opts.TrustProxy && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https"))
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: s.auth.issue(), Path: "/",
		MaxAge: int(s.opts.SessionTTL / time.Second), HttpOnly: true,
		Secure: s.secure(r), SameSite: http.SameSiteStrictMode,
	})
	s.opts.Logger.Info("dashboard login", "remote", r.RemoteAddr)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// serveLogout ends the session on the server, not only in this browser:
// a copy of the cookie is refused from now on.
func (s *Server) serveLogout(w http.ResponseWriter, r *http.Request) {
	if err := s.auth.revoke(s.auth.session(r)); err != nil {
		s.opts.Logger.Error("dashboard logout: the revocation is not saved; it lasts until a restart", "err", err)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: s.secure(r), SameSite: http.SameSiteStrictMode})
	writeJSON(w, http.StatusOK, okOut{true})
}

func (s *Server) loginPage(w http.ResponseWriter, code int, msg string) {
	page, err := assets.ReadFile("assets/login.html")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	out := strings.Replace(string(page), "<!--message-->", template.HTMLEscapeString(msg), 1)
	_, _ = w.Write([]byte(out))
}

func (s *Server) serveSession(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, okOut{true})
}

// authed refuses requests without a valid session.
func (s *Server) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.auth.session(r) == "" {
			netguard.CloseAfter(w)
			writeError(w, http.StatusUnauthorized, "log in first")
			return
		}
		h(w, r)
	}
}

// action guards a state-changing call: a session, its CSRF token and, when
// the browser names one, our own Origin.
func (s *Server) action(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess := s.auth.session(r)
		switch {
		case sess == "":
			netguard.CloseAfter(w)
			writeError(w, http.StatusUnauthorized, "log in first")
		case !sameOrigin(r):
			netguard.CloseAfter(w)
			writeError(w, http.StatusForbidden, "cross-origin request refused")
		case !hmacEqual(r.Header.Get(csrfHeader), s.auth.csrf(sess)):
			netguard.CloseAfter(w)
			writeError(w, http.StatusForbidden, "missing or wrong CSRF token")
		default:
			r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
			h(w, r)
		}
	}
}
