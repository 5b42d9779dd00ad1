package netguard

import (
	"bytes"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestLimiterLocksOutAfterFreeFailuresAndBacksOff(t *testing.T) {
	now := time.Unix(1000, 0)
	var logs bytes.Buffer
	l := NewLimiter(LimiterOptions{Free: 3, Base: time.Second, Max: 8 * time.Second, SampleEvery: time.Minute,
		Now: func() time.Time { return now }, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for i := range 3 {
		if w := l.Allow("1.2.3.4"); w != 0 {
			t.Fatalf("failure %d: locked out already (%v)", i, w)
		}
		l.Fail("1.2.3.4", "login")
	}
	if w := l.Allow("1.2.3.4"); w != 0 {
		t.Fatalf("locked out after only Free failures: %v", w)
	}
	l.Fail("1.2.3.4", "login")
	if w := l.Allow("1.2.3.4"); w != time.Second {
		t.Fatalf("first lockout %v, want 1s", w)
	}
	if w := l.Allow("5.6.7.8"); w != 0 {
		t.Fatalf("another address is locked out: %v", w)
	}
	now = now.Add(time.Second)
	l.Fail("1.2.3.4", "login")
	if w := l.Allow("1.2.3.4"); w != 2*time.Second {
		t.Fatalf("second lockout %v, want 2s", w)
	}
	for range 10 {
		l.Fail("1.2.3.4", "login")
	}
	if w := l.Allow("1.2.3.4"); w != 8*time.Second {
		t.Fatalf("lockout %v, want the cap 8s", w)
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 {
		t.Fatalf("%d log lines for 15 failures within a minute, want 1:\n%s", n, logs.String())
	}
	now = now.Add(time.Minute)
	l.Fail("1.2.3.4", "login")
	if n := strings.Count(logs.String(), "credential failures"); n != 1 {
		t.Fatalf("no summary after a minute:\n%s", logs.String())
	}
	l.Succeed("1.2.3.4")
	if w := l.Allow("1.2.3.4"); w != 0 {
		t.Fatalf("still locked out after a success: %v", w)
	}
}

func TestLimiterTableIsBounded(t *testing.T) {
	for _, free := range []int{10, 1} { // 1: every address is locked out
		l := NewLimiter(LimiterOptions{MaxIPs: 10, Free: free})
		for i := range 100 {
			ip := net.IPv4(10, 0, 0, byte(i)).String()
			l.Fail(ip, "rpc")
			l.Fail(ip, "rpc")
		}
		if n := len(l.ips); n > 10 {
			t.Fatalf("free %d: %d addresses tracked, cap 10", free, n)
		}
	}
}

func TestListenerCapsPerIPAndInTotal(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := make(chan bool, 10)
	l := NewListener(raw, 2, 3, func(ip string, total bool) { refused <- total })
	defer l.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial()
	dial()
	a1, a2 := <-accepted, <-accepted
	third := dial()
	if total := <-refused; total {
		t.Fatal("the third connection from one IP was refused as over the total")
	}
	// The refused connection is closed before a byte is read.
	_ = third.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := third.Read(make([]byte, 1)); err == nil {
		t.Fatal("the connection over the per-IP cap is open")
	}
	a1.Close()
	a1.Close() // closing twice gives the slot back once
	dial()
	<-accepted
	if total, ip := l.Held("127.0.0.1"); total != 2 || ip != 2 {
		t.Fatalf("open %d total, %d from the IP; want 2 and 2", total, ip)
	}
	a2.Close()
}

func TestKeyGroupsIPv6By64(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":            "192.0.2.7",
		"::ffff:192.0.2.7":     "192.0.2.7",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1": "2001:db8:1:2::/64",
		"not an ip":            "not an ip",
	} {
		if got := Key(in); got != want {
			t.Errorf("Key(%q) = %q, want %q", in, got, want)
		}
	}
}

// Many addresses failing at once still write a bounded number of lines.
func TestLimiterLogsFewLinesForManyAddresses(t *testing.T) {
	now := time.Unix(1000, 0)
	var logs bytes.Buffer
	l := NewLimiter(LimiterOptions{Now: func() time.Time { return now }, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for i := range 500 {
		l.Fail(net.IPv4(10, 0, byte(i>>8), byte(i)).String(), "rpc")
	}
	if n := strings.Count(logs.String(), "\n"); n != maxFirstLines {
		t.Fatalf("%d lines for 500 addresses in a minute, want %d", n, maxFirstLines)
	}
	now = now.Add(time.Minute)
	l.Fail("10.9.9.9", "rpc")
	if !strings.Contains(logs.String(), "addresses=480") {
		t.Fatalf("no summary of the addresses left out:\n%s", logs.String())
	}
}

// Behind a trusted proxy the client is the address the proxy appended;
// otherwise the header is the client's own claim and is ignored.
func TestClientIP(t *testing.T) {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "10.0.0.1:5555"
	r.Header.Add("X-Forwarded-For", "6.6.6.6, 198.51.100.7")
	if got := ClientIP(r, false); got != "10.0.0.1" {
		t.Errorf("untrusted: %s, want the peer 10.0.0.1", got)
	}
	if got := ClientIP(r, true); got != "198.51.100.7" {
		t.Errorf("trusted: %s, want the address the proxy appended", got)
	}
	r.Header.Del("X-Forwarded-For")
	if got := ClientIP(r, true); got != "10.0.0.1" {
		t.Errorf("trusted, no header: %s, want the peer", got)
	}
}

func TestLockoutDoublesWithoutOverflow(t *testing.T) {
	for _, c := range []struct {
		base, max time.Duration
		over      int
		want      time.Duration
	}{
		{time.Second, time.Minute, 1, time.Second},
		{time.Second, time.Minute, 3, 4 * time.Second},
		{time.Second, time.Minute, 1000, time.Minute},
		{time.Hour, 1 << 62, 1000, 1 << 62},
		{time.Hour, time.Minute, 1, time.Minute},
	} {
		if got := lockout(c.base, c.max, c.over); got != c.want {
			t.Errorf("lockout(%v, %v, %d) = %v, want %v", c.base, c.max, c.over, got, c.want)
		}
	}
}
