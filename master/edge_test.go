package master

import (
	"crypto/tls"
	"strings"
	"testing"
)

func TestEdgeOptionsAreChecked(t *testing.T) {
	for name, o := range map[string]Options{
		"cert without key":      {TLSCert: "cert.pem"},
		"key without cert":      {TLSKey: "key.pem"},
		"missing cert files":    {TLSCert: "/nonexistent/cert.pem", TLSKey: "/nonexistent/key.pem"},
		"TLSConfig without one": {TLSConfig: &tls.Config{}},
		"negative idle timeout": {IdleTimeout: -1},
		"negative header bytes": {MaxHeaderBytes: -1},
	} {
		o.Listen, o.Data = "127.0.0.1:0", t.TempDir()
		m, err := New(o)
		if err == nil {
			m.Close()
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestURLSaysWSWithoutTLS(t *testing.T) {
	m := newMaster(t, t.TempDir(), Options{})
	if !strings.HasPrefix(m.URL(), "ws://") || m.TLS() {
		t.Fatalf("URL %s, TLS %v", m.URL(), m.TLS())
	}
}
