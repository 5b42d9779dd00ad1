package modsig

import (
	"strings"
	"testing"

	"github.com/anthill-project/anthill/protocol"
)

func TestSignVerify(t *testing.T) {
	pub, priv, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParsePrivate(priv + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if PublicOf(k) != pub {
		t.Fatalf("public key of the parsed private key %q, want %q", PublicOf(k), pub)
	}
	h := Hash([]byte("\x00asm\x01\x00\x00\x00"))
	if !protocol.ValidModuleHash(h) {
		t.Fatalf("Hash gave %q, not a valid hash", h)
	}
	s := Sign(k, h)
	if !Verify(s, h) {
		t.Fatal("a fresh signature does not verify")
	}
	if !SignedBy([]Signature{s}, h, []string{" " + pub + "\n"}) {
		t.Fatal("SignedBy refuses the signer's own key")
	}
	other, _, _ := GenerateKey()
	if SignedBy([]Signature{s}, h, []string{other}) {
		t.Fatal("SignedBy accepts a key that did not sign")
	}
	if Verify(s, Hash([]byte("other"))) {
		t.Fatal("a signature verifies for another module")
	}
	forged := Signature{Key: other, Sig: s.Sig}
	if Verify(forged, h) || SignedBy([]Signature{forged}, h, []string{other}) {
		t.Fatal("a signature verifies under a key that did not make it")
	}
	bad := s
	bad.Sig = strings.Repeat("A", len(s.Sig))
	if Verify(bad, h) {
		t.Fatal("a zero signature verifies")
	}
}

func TestParseErrors(t *testing.T) {
	for _, s := range []string{"", "abc", "!!!!", strings.Repeat("A", 40)} {
		if _, err := ParsePublic(s); err == nil {
			t.Errorf("ParsePublic(%q) accepted", s)
		}
		if _, err := ParsePrivate(s); err == nil {
			t.Errorf("ParsePrivate(%q) accepted", s)
		}
	}
	for _, h := range []string{"", "ABC", strings.Repeat("g", 64), strings.Repeat("A", 64), strings.Repeat("a", 63)} {
		if protocol.ValidModuleHash(h) {
			t.Errorf("ValidModuleHash(%q) = true", h)
		}
	}
}
