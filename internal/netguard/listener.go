package netguard

import (
	"io"
	"net"
	"net/netip"
	"sync"
)

// Listener caps the connections it has accepted and not yet seen closed,
// per remote IP and in total. A connection over a cap is closed at once,
// before a byte is read: one host holding idle sockets cannot exhaust the
// process's file descriptors, and the others keep being served.
type Listener struct {
	net.Listener
	perIP, total int
	onRefuse     func(ip string, total bool)

	mu    sync.Mutex
	byIP  map[string]int
	count int
}

// NewListener wraps ln. perIP and total are the caps; zero or less means
// no cap of that kind. onRefuse, if not nil, hears of every refusal; it
// must not block.
func NewListener(ln net.Listener, perIP, total int, onRefuse func(ip string, total bool)) *Listener {
	return &Listener{Listener: ln, perIP: perIP, total: total, onRefuse: onRefuse, byIP: map[string]int{}}
}

// Accept returns the next connection within the caps, closing those over.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := hostOf(c.RemoteAddr().String())
		l.mu.Lock()
		overTotal := l.total > 0 && l.count >= l.total
		overIP := l.perIP > 0 && l.byIP[ip] >= l.perIP
		if !overTotal && !overIP {
			l.count++
			l.byIP[ip]++
			l.mu.Unlock()
			return &conn{Conn: c, l: l, ip: ip}, nil
		}
		l.mu.Unlock()
		c.Close()
		if l.onRefuse != nil {
			l.onRefuse(ip, overTotal)
		}
	}
}

// Held reports the connections held now, in total and from ip.
func (l *Listener) Held(ip string) (total, fromIP int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count, l.byIP[ip]
}

func (l *Listener) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.count--
	if l.byIP[ip]--; l.byIP[ip] <= 0 {
		delete(l.byIP, ip)
	}
}

// conn gives its slot back once, however often it is closed: net/http and
// a hijacking handler may both close it.
type conn struct {
	net.Conn
	l    *Listener
	ip   string
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.ip) })
	return err
}

// CloseWrite half-closes like the TCP connection underneath, which
// net/http does before closing a connection it answered with
// Connection: close, so the client sees the end at once.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadFrom keeps the TCP connection's sendfile path for net/http.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(c.Conn, r)
}

// hostOf is the IP of a host:port address, or the address itself, as
// Key makes it.
func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return Key(addr)
	}
	return Key(host)
}

// Key is the address a client is counted under: an IPv4 address as it
// is, an IPv6 one as its /64, since one host commonly holds a whole /64
// and could otherwise take a fresh address per try.
func Key(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(64)
	if err != nil {
		return ip
	}
	return p.String()
}
