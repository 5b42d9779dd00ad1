package master

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/anthill-project/anthill/internal/modsig"
	"github.com/anthill-project/anthill/internal/netguard"
	"github.com/anthill-project/anthill/internal/testwasm"
	"github.com/anthill-project/anthill/master/modules"
	"github.com/anthill-project/anthill/protocol"
)

// request makes one HTTP request to m and returns the status, the
// headers and the body.
func request(t *testing.T, m *Master, method, path string, body []byte, header ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+m.Addr().String()+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func bearer(tok string) string { return "Bearer " + tok }

// errorOf decodes a module door's JSON error.
func errorOf(t *testing.T, b []byte) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil || e.Error == "" {
		t.Fatalf("not a JSON error: %q", b)
	}
	return e.Error
}

func signer(t *testing.T) (priv string, pub string) {
	t.Helper()
	pub, priv, err := modsig.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

func sign(t *testing.T, priv string, code []byte) modsig.Signature {
	t.Helper()
	k, err := modsig.ParsePrivate(priv)
	if err != nil {
		t.Fatal(err)
	}
	return modsig.Sign(k, modsig.Hash(code))
}

// GET /modules/{hash} serves the bytes to the admin, a volunteer and an
// app, with the headers a slave and a cache need; everyone else is
// refused, and wrong tokens count towards a lockout.
func TestModuleFetch(t *testing.T) {
	lim := netguard.NewLimiter(netguard.LimiterOptions{Free: 3})
	m := newMaster(t, t.TempDir(), Options{Limiter: lim})
	code := testwasm.Command(t.Name())
	priv, pub := signer(t)
	info, err := m.UploadModule(context.Background(), "noop", code, []modsig.Signature{sign(t, priv, code)}, modules.ByAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if info.Hash != modsig.Hash(code) || info.Size != int64(len(code)) || info.Name != "noop" || len(info.Signers) != 1 || info.Signers[0] != pub {
		t.Fatalf("upload gave %+v", info)
	}
	vol, err := m.EnrollVolunteer("v1")
	if err != nil {
		t.Fatal(err)
	}
	app, err := m.EnrollApp("payroll")
	if err != nil {
		t.Fatal(err)
	}
	path := "/modules/" + info.Hash
	for _, who := range [][]string{
		{"Authorization", bearer(testAdmin)},
		{"Authorization", bearer(vol)},
		{"Authorization", bearer(app), protocol.HeaderApp, "payroll"},
	} {
		status, h, body := request(t, m, "GET", path, nil, who...)
		if status != http.StatusOK || !bytes.Equal(body, code) {
			t.Fatalf("%v: %d %q", who, status, body)
		}
		if h.Get("Content-Type") != "application/wasm" || h.Get("ETag") != `"`+info.Hash+`"` ||
			h.Get("Cache-Control") != "private, max-age=31536000, immutable" {
			t.Errorf("%v: headers %v", who, h)
		}
		var sigs []modsig.Signature
		if err := json.Unmarshal([]byte(h.Get(protocol.HeaderSignatures)), &sigs); err != nil || len(sigs) != 1 ||
			!modsig.SignedBy(sigs, info.Hash, []string{pub}) {
			t.Errorf("%v: signatures header %q: %v", who, h.Get(protocol.HeaderSignatures), err)
		}
	}
	if status, _, _ := request(t, m, "GET", path, nil, "Authorization", bearer(vol), "If-None-Match", `"`+info.Hash+`"`); status != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", status)
	}
	if status, _, b := request(t, m, "GET", "/modules/"+strings.Repeat("0", 64), nil, "Authorization", bearer(vol)); status != http.StatusNotFound || !strings.Contains(errorOf(t, b), "no module") {
		t.Errorf("unknown hash: %d %s", status, b)
	}
	if status, _, b := request(t, m, "GET", "/modules/ABC", nil, "Authorization", bearer(vol)); status != http.StatusBadRequest || !strings.Contains(errorOf(t, b), "hash: must be 64 lowercase hex digits") {
		t.Errorf("malformed hash: %d %s", status, b)
	}

	// No token is no guess; wrong ones are, until the address is locked out.
	if status, h, _ := request(t, m, "GET", path, nil); status != http.StatusUnauthorized || h.Get("WWW-Authenticate") == "" {
		t.Errorf("no token: %d %v", status, h)
	}
	for _, wrong := range [][]string{
		{"Authorization", bearer("not-a-token")},
		{"Authorization", bearer(app)}, // an app's token without its app id
		{"Authorization", bearer(vol), protocol.HeaderApp, "payroll"},
	} {
		if status, _, _ := request(t, m, "GET", path, nil, wrong...); status != http.StatusUnauthorized {
			t.Errorf("%v: %d, want 401", wrong, status)
		}
	}
	if status, _, _ := request(t, m, "GET", path, nil, "Authorization", bearer("again")); status != http.StatusUnauthorized {
		t.Errorf("fourth wrong token: %d, want 401", status)
	}
	if status, _, _ := request(t, m, "GET", path, nil, "Authorization", bearer(testAdmin)); status != http.StatusTooManyRequests {
		t.Errorf("locked out address with the right token: %d, want 429", status)
	}
}

// POST /modules takes a module from an app or the operator, with its
// signatures, and refuses bad uploads with a JSON error naming the field.
func TestModuleUpload(t *testing.T) {
	m := newMaster(t, t.TempDir(), Options{MaxModuleBytes: 1 << 10})
	app, err := m.EnrollApp("payroll")
	if err != nil {
		t.Fatal(err)
	}
	vol, err := m.EnrollVolunteer("v1")
	if err != nil {
		t.Fatal(err)
	}
	code := testwasm.Command(t.Name())
	priv, pub := signer(t)
	sj, _ := json.Marshal([]modsig.Signature{sign(t, priv, code)})
	asApp := []string{"Authorization", bearer(app), protocol.HeaderApp, "payroll"}
	status, _, b := request(t, m, "POST", "/modules?name=sum", code, append(asApp, protocol.HeaderSignatures, string(sj))...)
	if status != http.StatusOK {
		t.Fatalf("upload: %d %s", status, b)
	}
	var res modules.UploadResult
	if err := json.Unmarshal(b, &res); err != nil || res.Hash != modsig.Hash(code) || res.Size != int64(len(code)) || res.Name != "sum" {
		t.Fatalf("upload result %s: %v", b, err)
	}
	info, err := m.ModuleInfo(res.Hash)
	if err != nil || info.By != "app:payroll" || len(info.Signers) != 1 || info.Signers[0] != pub {
		t.Fatalf("ModuleInfo: %+v %v", info, err)
	}
	// The same bytes again, by the admin: nothing changes but a new signer.
	priv2, pub2 := signer(t)
	sj2, _ := json.Marshal([]modsig.Signature{sign(t, priv2, code)})
	status, _, b = request(t, m, "POST", "/modules?name=other", code, "Authorization", bearer(testAdmin), protocol.HeaderSignatures, string(sj2))
	if status != http.StatusOK || !strings.Contains(string(b), `"name":"sum"`) {
		t.Fatalf("second upload: %d %s", status, b)
	}
	if signers, ok := m.ModuleSigners(res.Hash); !ok || len(signers) != 2 || signers[0] != pub || signers[1] != pub2 {
		t.Fatalf("ModuleSigners: %v %v", signers, ok)
	}

	for _, c := range []struct {
		what   string
		body   []byte
		header []string
		status int
		msg    string
	}{
		{"a volunteer", code, []string{"Authorization", bearer(vol)}, http.StatusForbidden, "not upload"},
		{"no token", code, nil, http.StatusUnauthorized, "unauthorized"},
		{"empty", nil, asApp, http.StatusBadRequest, "wasm: is empty"},
		{"not wasm", []byte("#!/bin/sh\necho hi\n"), asApp, http.StatusBadRequest, "wasm: not a WebAssembly module"},
		{"too large", append(testwasm.Command(""), make([]byte, 2<<10)...), asApp, http.StatusRequestEntityTooLarge, "limit of 1024 bytes"},
		{"bad header", code, append(asApp, protocol.HeaderSignatures, "{"), http.StatusBadRequest, protocol.HeaderSignatures},
		{"bad key", code, append(asApp, protocol.HeaderSignatures, `[{"key":"nope","sig":"x"}]`), http.StatusBadRequest, "signatures[0].key"},
		{"foreign signature", code, append(asApp, protocol.HeaderSignatures, mustSigs(t, sign(t, priv, []byte("other")))), http.StatusBadRequest, "signatures[0]: does not verify"},
	} {
		status, _, b := request(t, m, "POST", "/modules", c.body, c.header...)
		if status != c.status || !strings.Contains(errorOf(t, b), c.msg) {
			t.Errorf("%s: %d %s; want %d with %q", c.what, status, b, c.status, c.msg)
		}
	}
	long := strings.Repeat("n", 200)
	if status, _, b := request(t, m, "POST", "/modules?name="+long, code, asApp...); status != http.StatusBadRequest || !strings.Contains(errorOf(t, b), "name: 200 bytes") {
		t.Errorf("long name: %d %s", status, b)
	}
	if n := len(m.Modules()); n != 1 {
		t.Errorf("%d modules after refused uploads, want 1", n)
	}
}

func mustSigs(t *testing.T, sigs ...modsig.Signature) string {
	b, err := json.Marshal(sigs)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Modules survive a restart; a deleted one is gone for good.
func TestModulesAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	m, err := New(Options{Listen: "127.0.0.1:0", Data: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, b := testwasm.Command("a"), testwasm.Command("b")
	for i, code := range [][]byte{a, b} {
		if _, err := m.UploadModule(ctx, fmt.Sprint("m", i), code, nil, modules.ByAdmin); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.DeleteModule(modsig.Hash(b)); err != nil {
		t.Fatal(err)
	}
	if err := m.DeleteModule(modsig.Hash(b)); !errors.Is(err, ErrModuleNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if err := m.DeleteModule("zz"); !errors.Is(err, ErrInvalidModule) {
		t.Fatalf("delete of a malformed hash: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	m = newMaster(t, dir, Options{})
	list := m.Modules()
	if len(list) != 1 || list[0].Hash != modsig.Hash(a) || list[0].Name != "m0" || list[0].By != "admin" || list[0].Signers == nil {
		t.Fatalf("after restart: %+v", list)
	}
	status, _, body := request(t, m, "GET", "/modules/"+modsig.Hash(a), nil, "Authorization", bearer(testAdmin))
	if status != http.StatusOK || !bytes.Equal(body, a) {
		t.Fatalf("GET after restart: %d", status)
	}
	if _, ok := m.ModuleSigners(modsig.Hash(b)); ok {
		t.Error("a deleted module is still known")
	}
}
