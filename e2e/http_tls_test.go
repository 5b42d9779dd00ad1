package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anthill-project/anthill/appnode"
	"github.com/anthill-project/anthill/internal/testmaster"
	"github.com/anthill-project/anthill/jsonrpc"
	"github.com/anthill-project/anthill/master"
	"github.com/anthill-project/anthill/web"
)

// httpCerts makes a throwaway CA and a certificate it signed for
// 127.0.0.1 and localhost, written as PEM files in a temp dir.
type httpCerts struct {
	ca, cert, key string
	pool          *x509.CertPool
}

func httpMakeCerts(t *testing.T) httpCerts {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "anthill test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "anthill master"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c := httpCerts{ca: write("ca.pem", "CERTIFICATE", caDER), cert: write("cert.pem", "CERTIFICATE", der),
		key: write("key.pem", "EC PRIVATE KEY", keyDER), pool: x509.NewCertPool()}
	c.pool.AddCert(caCert)
	return c
}

// TLS end to end: a master process serving https and wss, a slave process
// and an appnode verifying it with --ca, the CLI likewise; clients
// without the CA are refused, and the dashboard cookie is Secure.
func TestHTTPTLSEndToEnd(t *testing.T) {
	certs := httpMakeCerts(t)
	addr := freePort(t)
	data := t.TempDir()
	mp := start(t, "master", "--listen", addr, "--data", data, "--tls-cert", certs.cert, "--tls-key", certs.key)
	mp.line(t, "JSON-RPC API at https://"+addr)
	wss := "wss://" + addr

	startSlave(t, wss, "tls-volunteer", "--ca", certs.ca)
	c := newCollector()
	ctx, cancel := context.WithTimeout(context.Background(), httpFailsafe)
	defer cancel()
	app, err := appnode.Connect(ctx, appnode.Options{Master: wss, App: "tls-app", Token: testmaster.AdminToken, CA: certs.ca, TaskFinished: c.finished, Logger: testmaster.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = app.Shutdown(ctx)
	})
	tasks := echoTasks(20)
	push(t, app, tasks...)
	checkEchoed(t, c, tasks)

	out, code := run(t, "stats", "--master", "https://"+addr, "--ca", certs.ca, "--data", data)
	if code != 0 {
		t.Fatalf("anthill stats --ca: exit %d\n%s", code, out)
	}
	out, code = run(t, "stats", "--master", "https://"+addr, "--data", data)
	if code != exitUnreachableCode || !strings.Contains(out, "certificate") {
		t.Fatalf("anthill stats without the CA: exit %d, want %d naming the certificate\n%s", code, exitUnreachableCode, out)
	}
	rpc := &jsonrpc.Client{URL: "https://" + addr, Token: readToken(t, data), TLS: &tls.Config{RootCAs: certs.pool}}
	var info map[string]any
	call(t, rpc, "Master.Info", nil, &info)

	_, err = appnode.Connect(ctx, appnode.Options{Master: wss, App: "no-ca"})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("an appnode without the CA: %v, want a certificate error", err)
	}
	if _, err := appnode.Connect(ctx, appnode.Options{Master: "ws://" + addr, App: "cleartext"}); err == nil {
		t.Fatal("a cleartext WebSocket to the TLS master was served")
	}

	hc := &http.Client{Timeout: httpFailsafe, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certs.pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.PostForm("https://"+addr+"/login", url.Values{"token": {readToken(t, data)}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if sc := resp.Header.Get("Set-Cookie"); !strings.Contains(sc, "anthill_session=") || !strings.Contains(sc, "Secure") {
		t.Fatalf("the session cookie under TLS: %q, want Secure", sc)
	}
}

// exitUnreachableCode is cmd/anthill's exit code for a master it could not
// reach (a TLS failure included).
const exitUnreachableCode = 5

// Behind a TLS-terminating proxy the cookie is Secure when the master is
// told to trust the proxy's X-Forwarded-Proto, and never by default: a
// client cannot talk a master into believing it uses TLS.
func TestHTTPSecureCookieBehindATrustedProxyOnly(t *testing.T) {
	for _, trust := range []bool{false, true} {
		token := strings.Repeat("t", 32)
		m := testmaster.Start(t, master.Options{TrustProxy: trust}, func(m *master.Master) error {
			dash, err := web.New(m.Scheduler(), web.Options{Token: token, TrustProxy: trust})
			if err != nil {
				return err
			}
			t.Cleanup(dash.Close)
			m.Handle("/", dash)
			return nil
		})
		req, _ := http.NewRequest(http.MethodPost, "http://"+m.Addr().String()+"/login", strings.NewReader(url.Values{"token": {token}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-Proto", "https")
		hc := &http.Client{Timeout: httpFailsafe, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		sc := resp.Header.Get("Set-Cookie")
		if !strings.Contains(sc, "anthill_session=") || strings.Contains(sc, "Secure") != trust {
			t.Errorf("trust proxy %v, X-Forwarded-Proto https: cookie %q; want Secure only when trusted", trust, sc)
		}
	}
}

// Bad TLS and frame flags are refused at start with a message that names
// them, never a silent fall back to cleartext or no limit.
func TestHTTPEdgeFlagsAreChecked(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"master", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--tls-cert", missing}, 1, "needs both a certificate and a key"},
		{[]string{"master", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--tls-cert", missing, "--tls-key", missing}, 1, "TLS certificate"},
		{[]string{"slave", "--master", "wss://127.0.0.1:1", "--ca", missing}, 1, "CA file"},
		{[]string{"slave", "--master", "ws://127.0.0.1:1", "--max-frame", "-1"}, 1, "negative max frame"},
		{[]string{"stats", "--master", "https://127.0.0.1:1", "--token", strings.Repeat("t", 32), "--ca", missing}, 2, "--ca"},
	} {
		out, code := run(t, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.says) {
			t.Errorf("anthill %s: exit %d, want %d; output should contain %q:\n%s", strings.Join(tc.args, " "), code, tc.code, tc.says, out)
		}
	}
}
