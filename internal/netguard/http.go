package netguard

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ClientIP is the IP a request's credential failures are counted against:
// the peer's address, or, when trustProxy says the master sits behind a
// proxy that sets it, the last address of X-Forwarded-For (the one that
// proxy added; the ones before it are whatever the client claimed).
func ClientIP(r *http.Request, trustProxy bool) string {
	if trustProxy {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			parts := strings.Split(xff[len(xff)-1], ",")
			if ip := strings.TrimSpace(parts[len(parts)-1]); ip != "" {
				return Key(ip)
			}
		}
	}
	return hostOf(r.RemoteAddr)
}

// CloseAfter marks the response to end the connection. Answering a
// request that is refused anyway without reading its body, on a
// connection that will not be reused, means a client that sends its body
// one byte at a time gets its answer at once and holds nothing after it
// (net/http would otherwise drain the body before writing the header).
func CloseAfter(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	// net/http drains what is left of a small body when the handler ends,
	// even on a connection it then closes: a read deadline already passed
	// cuts that short, so a body sent one byte at a time holds nothing.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
}

// TooMany answers a locked-out client with 429 and when to try again.
func TooMany(w http.ResponseWriter, wait time.Duration, msg string) {
	CloseAfter(w)
	w.Header().Set("Retry-After", strconv.Itoa(int(wait.Round(time.Second)/time.Second)+1))
	http.Error(w, msg, http.StatusTooManyRequests)
}

// RequireBearer serves next only to requests with Authorization: Bearer
// token, compared in constant time; the others get 401 (or 429 while
// their IP is locked out by l). An empty token serves everyone.
func RequireBearer(token string, l *Limiter, trustProxy bool, door string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := ClientIP(r, trustProxy)
		if wait := l.Allow(ip); wait > 0 {
			TooMany(w, wait, "too many wrong tokens from your address; try again later")
			return
		}
		auth := r.Header.Get("Authorization")
		scheme, tok, _ := strings.Cut(auth, " ")
		got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			// A scraper set up without the token is no guesser: only a
			// wrong credential counts, or it would lock its host out.
			if auth != "" {
				l.Fail(ip, door)
			}
			CloseAfter(w)
			w.Header().Set("WWW-Authenticate", `Bearer realm="anthill"`)
			http.Error(w, "unauthorized: this endpoint needs Authorization: Bearer <token>", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
