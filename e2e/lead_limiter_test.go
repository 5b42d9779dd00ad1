package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/anthill-project/anthill/internal/netguard"
	"github.com/anthill-project/anthill/master"
	"github.com/anthill-project/anthill/protocol"
)

// The limiter is shared by every door: a volunteer's own valid token (here
// the invitation, which anyone holding it may present) must not wipe the
// count of the guesses the same address makes between its handshakes, or
// guessing would never be locked out.
func TestValidVolunteerTokenDoesNotResetGuesses(t *testing.T) {
	secret := "a-long-enough-slave-token-0777"
	lim := netguard.NewLimiter(netguard.LimiterOptions{Base: time.Hour})
	m := startMaster(t, master.Options{SlaveToken: secret, Limiter: lim})
	var codes []string
	for round := range 3 {
		for i := range 9 {
			codes = append(codes, httpCode(httpHandshake(t, m.URL(), "/ws/slave", slaveHelloWith(strings.Repeat("0", round*9+i+1)))))
		}
		codes = append(codes, httpCode(httpHandshake(t, m.URL(), "/ws/slave", slaveHelloWith(secret))))
	}
	if got := codes[len(codes)-2]; got != protocol.CodeRateLimited {
		t.Fatalf("27 guesses with a valid handshake after every 9: %v; want rate_limited by the end", codes)
	}
}
