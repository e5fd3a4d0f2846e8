package bridge

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// RSA keys are slow to generate: one of each size per test binary.
var rsaKeys struct {
	once             sync.Once
	k2048, k1024     *rsa.PrivateKey
	err2048, err1024 error
}

func genRSAKeys() {
	rsaKeys.once.Do(func() {
		rsaKeys.k2048, rsaKeys.err2048 = rsa.GenerateKey(rand.Reader, 2048)
		rsaKeys.k1024, rsaKeys.err1024 = rsa.GenerateKey(rand.Reader, 1024)
	})
}

// testRSAKey returns the test binary's 2048-bit RSA key.
func testRSAKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	genRSAKeys()
	if rsaKeys.err2048 != nil {
		t.Fatalf("rsa.GenerateKey 2048: %v", rsaKeys.err2048)
	}
	return rsaKeys.k2048
}

// testRSA1024 returns the test binary's 1024-bit RSA key (too weak).
func testRSA1024(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	genRSAKeys()
	if rsaKeys.err1024 != nil {
		t.Fatalf("rsa.GenerateKey 1024: %v", rsaKeys.err1024)
	}
	return rsaKeys.k1024
}

// rfc7638 computes the RFC 7638 thumbprint of the JSON object given, its
// members already in lexicographic order and without whitespace.
func rfc7638(canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func fixed32(n *big.Int) string {
	b := make([]byte, 32)
	n.FillBytes(b)
	return b64(b)
}

func TestNewKey(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey := testRSAKey(t)
	secret := bytes.Repeat([]byte{0x42}, 32)

	ecKid := rfc7638(fmt.Sprintf(`{"crv":"P-256","kty":"EC","x":%q,"y":%q}`, fixed32(ec.X), fixed32(ec.Y)))
	edKid := rfc7638(fmt.Sprintf(`{"crv":"Ed25519","kty":"OKP","x":%q}`, b64(edPub)))
	rsaKid := rfc7638(fmt.Sprintf(`{"e":%q,"kty":"RSA","n":%q}`, b64(big.NewInt(int64(rsaKey.E)).Bytes()), b64(rsaKey.N.Bytes())))
	hmacKid := rfc7638(fmt.Sprintf(`{"k":%q,"kty":"oct"}`, b64(secret)))

	cases := []struct {
		name    string
		key     any
		alg     string
		kid     string
		canSign bool
		jwk     bool
	}{
		{"ECDSA P-256 private", ec, "ES256", ecKid, true, true},
		{"ECDSA P-256 public", &ec.PublicKey, "ES256", ecKid, false, true},
		{"Ed25519 private", edPriv, "EdDSA", edKid, true, true},
		{"Ed25519 public", edPub, "EdDSA", edKid, false, true},
		{"RSA 2048 private", rsaKey, "RS256", rsaKid, true, true},
		{"RSA 2048 public", &rsaKey.PublicKey, "RS256", rsaKid, false, true},
		{"HMAC 32 bytes", secret, "HS256", hmacKid, true, false},
		{"HMAC 64 bytes", bytes.Repeat([]byte{1}, 64), "HS256", rfc7638(fmt.Sprintf(`{"k":%q,"kty":"oct"}`, b64(bytes.Repeat([]byte{1}, 64)))), true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k, err := NewKey(c.key)
			if err != nil {
				t.Fatalf("NewKey: %v", err)
			}
			if k.Algorithm() != c.alg {
				t.Errorf("Algorithm: got %q, want %q", k.Algorithm(), c.alg)
			}
			if k.KID() != c.kid {
				t.Errorf("KID: got %q, want the RFC 7638 thumbprint %q", k.KID(), c.kid)
			}
			if k.CanSign() != c.canSign {
				t.Errorf("CanSign: got %v, want %v", k.CanSign(), c.canSign)
			}
			if (k.jwk != nil) != c.jwk {
				t.Errorf("published JWK: got %v, want %v", k.jwk != nil, c.jwk)
			}
			if k.jwk != nil && (k.jwk.KID != k.kid || string(k.jwk.ALG) != k.alg || k.jwk.USE != jwkset.UseSig) {
				t.Errorf("JWK kid/alg/use: got %q %q %q, want %q %q sig", k.jwk.KID, k.jwk.ALG, k.jwk.USE, k.kid, k.alg)
			}
			if !k.CanSign() {
				return
			}
			// The key signs what it verifies, through golang-jwt directly.
			tok, err := mint(k, &Claims{Name: "x"})
			if err != nil {
				t.Fatalf("mint: %v", err)
			}
			_, err = jwt.NewParser(jwt.WithValidMethods([]string{c.alg}), jwt.WithoutClaimsValidation()).
				Parse(tok, func(*jwt.Token) (any, error) { return k.verify, nil })
			if err != nil {
				t.Errorf("golang-jwt verify: %v", err)
			}
		})
	}

	// The HMAC secret is copied: changing the caller's slice changes
	// nothing.
	buf := bytes.Repeat([]byte{9}, 32)
	k := mustKey(t, buf)
	buf[0] = 0
	if s := k.sign.([]byte); s[0] != 9 {
		t.Errorf("HMAC secret aliases the caller's slice")
	}
}

func TestNewKeyRefusals(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	weak := testRSA1024(t)
	cases := []struct {
		name string
		key  any
		want string
	}{
		{"ECDSA P-384 private", p384, "P-256"},
		{"ECDSA P-384 public", &p384.PublicKey, "P-256"},
		{"ECDSA P-224 private", p224, "P-256"},
		{"RSA 1024 private", weak, "2048"},
		{"RSA 1024 public", &weak.PublicKey, "2048"},
		{"HMAC 31 bytes", make([]byte, 31), "32"},
		{"HMAC empty", []byte{}, "32"},
		{"HMAC nil", []byte(nil), "32"},
		{"string secret", strings.Repeat("s", 32), "unsupported"},
		{"nil", nil, "unsupported"},
		{"ECDSA value, not pointer", *p384, "unsupported"},
		{"*ed25519.PrivateKey", &edPriv, "unsupported"},
		{"X25519 (ECDH)", x25519, "unsupported"},
		{"X25519 public", x25519.PublicKey(), "unsupported"},
		{"nil *ecdsa.PrivateKey", (*ecdsa.PrivateKey)(nil), "ECDSA"},
		{"nil *ecdsa.PublicKey", (*ecdsa.PublicKey)(nil), "ECDSA"},
		{"empty ecdsa.PublicKey", &ecdsa.PublicKey{}, "ECDSA"},
		{"ecdsa.PublicKey without point", &ecdsa.PublicKey{Curve: elliptic.P256()}, "ECDSA"},
		//lint:ignore SA1019 the deprecated coordinates are the only way to build an invalid key
		{"P-256 point not on the curve", &ecdsa.PublicKey{Curve: elliptic.P256(), X: big.NewInt(1), Y: big.NewInt(1)}, "ES256"},
		{"nil *rsa.PrivateKey", (*rsa.PrivateKey)(nil), "RSA"},
		{"nil *rsa.PublicKey", (*rsa.PublicKey)(nil), "RSA"},
		{"empty rsa.PublicKey", &rsa.PublicKey{}, "RSA"},
		{"short Ed25519 private", ed25519.PrivateKey(make([]byte, 31)), "Ed25519"},
		{"short Ed25519 public", ed25519.PublicKey(make([]byte, 31)), "Ed25519"},
		{"Ed25519 seed as private", ed25519.PrivateKey(edPriv.Seed()), "Ed25519"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k, err := NewKey(c.key)
			if err == nil {
				t.Fatalf("NewKey: got key %s/%s, want an error", k.alg, k.kid)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("NewKey: got %q, want it to mention %q", err, c.want)
			}
		})
	}
}

// TestKeyThumbprintRFCExamples checks the kid against the published
// examples: RFC 7638 §3.1 (RSA) and RFC 8037 Appendix A.3 (Ed25519).
func TestKeyThumbprintRFCExamples(t *testing.T) {
	n, err := base64.RawURLEncoding.DecodeString("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
	if err != nil {
		t.Fatal(err)
	}
	rsaKey := mustKey(t, &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537})
	if got, want := rsaKey.KID(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; got != want {
		t.Errorf("RFC 7638 RSA example: got %q, want %q", got, want)
	}
	x, err := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	if err != nil {
		t.Fatal(err)
	}
	edKey := mustKey(t, ed25519.PublicKey(x))
	if got, want := edKey.KID(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; got != want {
		t.Errorf("RFC 8037 Ed25519 example: got %q, want %q", got, want)
	}
	// The private key of RFC 8037 A.1 has the same kid.
	d, _ := base64.RawURLEncoding.DecodeString("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
	if got := mustKey(t, ed25519.NewKeyFromSeed(d)).KID(); got != edKey.KID() {
		t.Errorf("RFC 8037 private key kid: got %q, want %q", got, edKey.KID())
	}
}

func pemOf(t testing.TB, typ string, der []byte, err error) []byte {
	t.Helper()
	if err != nil {
		t.Fatalf("marshal %s: %v", typ, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestParseKeyPEM(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	x25519, _ := ecdh.X25519().GenerateKey(rand.Reader)
	rsaKey := testRSAKey(t)
	weak := testRSA1024(t)

	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		return pemOf(t, "PRIVATE KEY", der, err)
	}
	pkix := func(k any) []byte {
		der, err := x509.MarshalPKIXPublicKey(k)
		return pemOf(t, "PUBLIC KEY", der, err)
	}
	sec1, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	sec1P384, _ := x509.MarshalECPrivateKey(p384)

	ok := []struct {
		name    string
		pem     []byte
		want    any
		canSign bool
	}{
		{"PKCS#8 EC", pkcs8(ec), ec, true},
		{"PKCS#8 Ed25519", pkcs8(edPriv), edPriv, true},
		{"PKCS#8 RSA", pkcs8(rsaKey), rsaKey, true},
		{"SEC 1 EC PRIVATE KEY", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), ec, true},
		{"PKCS#1 RSA PRIVATE KEY", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), rsaKey, true},
		{"PUBLIC KEY EC", pkix(&ec.PublicKey), ec, false},
		{"PUBLIC KEY Ed25519", pkix(edPub), edPriv, false},
		{"PUBLIC KEY RSA", pkix(&rsaKey.PublicKey), rsaKey, false},
		{"text around the block", append(append([]byte("comment\n"), pkcs8(ec)...), "trailer\n"...), ec, true},
	}
	for _, c := range ok {
		t.Run(c.name, func(t *testing.T) {
			k, err := ParseKeyPEM(c.pem)
			if err != nil {
				t.Fatalf("ParseKeyPEM: %v", err)
			}
			if want := mustKey(t, c.want); k.KID() != want.KID() || k.Algorithm() != want.Algorithm() {
				t.Errorf("got %s/%s, want %s/%s", k.Algorithm(), k.KID(), want.Algorithm(), want.KID())
			}
			if k.CanSign() != c.canSign {
				t.Errorf("CanSign: got %v, want %v", k.CanSign(), c.canSign)
			}
		})
	}

	bad := []struct {
		name string
		pem  []byte
	}{
		{"empty", nil},
		{"garbage", []byte("not a key at all")},
		{"base64 without armor", []byte(base64.StdEncoding.EncodeToString(sec1))},
		{"CERTIFICATE", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: sec1})},
		{"RSA PUBLIC KEY (PKCS#1)", pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)})},
		{"ENCRYPTED PRIVATE KEY", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: sec1})},
		{"PRIVATE KEY with SEC 1 body", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: sec1})},
		{"EC PRIVATE KEY with garbage", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte("garbage")})},
		{"RSA PRIVATE KEY with garbage", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte("garbage")})},
		{"PUBLIC KEY with garbage", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{0x30, 0x03, 0x02, 0x01}})},
		{"truncated PEM", pkcs8(ec)[:60]},
		{"PKCS#8 P-384", pkcs8(p384)},
		{"SEC 1 P-384", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1P384})},
		{"PKCS#8 RSA 1024", pkcs8(weak)},
		{"PKCS#1 RSA 1024", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(weak)})},
		{"PUBLIC KEY RSA 1024", pkix(&weak.PublicKey)},
		{"PKCS#8 X25519", pkcs8(x25519)},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			if k, err := ParseKeyPEM(c.pem); err == nil {
				t.Errorf("ParseKeyPEM: got key %s/%s, want an error", k.alg, k.kid)
			}
		})
	}
}

func TestKeyPEMFiles(t *testing.T) {
	dir := t.TempDir()
	for _, key := range []any{newTestKey(t).sign, ed25519.NewKeyFromSeed(make([]byte, 32)), testRSAKey(t)} {
		k := mustKey(t, key)
		p, err := MarshalKeyPEM(k)
		if err != nil {
			t.Fatalf("MarshalKeyPEM %s: %v", k.alg, err)
		}
		path := filepath.Join(dir, k.alg+".pem")
		if err := os.WriteFile(path, p, 0o600); err != nil {
			t.Fatal(err)
		}
		back, err := LoadKeyFile(path)
		if err != nil {
			t.Fatalf("LoadKeyFile %s: %v", k.alg, err)
		}
		if back.KID() != k.KID() || !back.CanSign() {
			t.Errorf("%s round trip: got %s (can sign %v), want %s", k.alg, back.KID(), back.CanSign(), k.KID())
		}
	}
	if _, err := MarshalKeyPEM(mustKey(t, make([]byte, 32))); err == nil {
		t.Errorf("MarshalKeyPEM of an HMAC secret: got nil, want an error")
	}
	if _, err := MarshalKeyPEM(mustKey(t, &newTestKey(t).sign.(*ecdsa.PrivateKey).PublicKey)); err == nil {
		t.Errorf("MarshalKeyPEM of a public key: got nil, want an error")
	}
	if _, err := LoadKeyFile(filepath.Join(dir, "missing.pem")); err == nil {
		t.Errorf("LoadKeyFile of a missing file: got nil, want an error")
	}
	garbage := filepath.Join(dir, "garbage.pem")
	_ = os.WriteFile(garbage, []byte("garbage"), 0o600)
	if _, err := LoadKeyFile(garbage); err == nil || !strings.Contains(err.Error(), garbage) {
		t.Errorf("LoadKeyFile of garbage: got %v, want an error naming the file", err)
	}
}

// privateMembers are JWK members that hold private or secret material.
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

func TestJWKSHandler(t *testing.T) {
	signer := newTestKey(t)
	ed := mustKey(t, ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32)))
	rsaPub := mustKey(t, &testRSAKey(t).PublicKey)
	hmacKey := mustKey(t, bytes.Repeat([]byte{4}, 32))
	b := newTestBridge(t, func(c *Config) {
		c.SigningKey = signer
		c.VerificationKeys = []*Key{ed, rsaPub, hmacKey}
	})
	h := b.JWKSHandler()

	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("GET: status got %d, want 200", w.Code)
	}
	if got := w.Header().Get("Content-Type"); got != "application/jwk-set+json" {
		t.Errorf("Content-Type: got %q, want application/jwk-set+json", got)
	}
	if got := w.Header().Get("Cache-Control"); !strings.Contains(got, "max-age=") || strings.Contains(got, "private") {
		t.Errorf("Cache-Control: got %q, want a public max-age", got)
	}
	var set struct{ Keys []map[string]any }
	if err := json.Unmarshal(w.Body.Bytes(), &set); err != nil {
		t.Fatalf("body %s: %v", w.Body, err)
	}
	want := map[string]string{signer.kid: "ES256", ed.kid: "EdDSA", rsaPub.kid: "RS256"}
	if len(set.Keys) != len(want) {
		t.Errorf("keys: got %d, want %d (signer and previous keys, no HMAC)", len(set.Keys), len(want))
	}
	for _, k := range set.Keys {
		kid, _ := k["kid"].(string)
		if alg, ok := want[kid]; !ok || k["alg"] != alg || k["use"] != "sig" {
			t.Errorf("key %v: want one of %v with its alg and use sig", k, want)
		}
		for _, m := range privateMembers {
			if _, ok := k[m]; ok {
				t.Errorf("key %s publishes private member %q", kid, m)
			}
		}
		if kid == hmacKey.kid {
			t.Errorf("HMAC key published")
		}
	}
	if strings.Contains(w.Body.String(), b64(hmacKey.sign.([]byte))) {
		t.Errorf("JWKS contains the HMAC secret")
	}

	// A downstream service can verify our tokens with the published keys.
	tok := mintTestToken(t, b, "alice", nil)
	for _, raw := range set.Keys {
		if raw["kid"] != signer.kid {
			continue
		}
		j, _ := json.Marshal(raw)
		jwk, err := jwkset.NewJWKFromRawJSON(j, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			t.Fatalf("jwkset: %v", err)
		}
		if _, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return jwk.Key(), nil },
			jwt.WithValidMethods([]string{"ES256"}), jwt.WithAudience(testAudience), jwt.WithIssuer(testIssuer)); err != nil {
			t.Errorf("verify with the published key: %v", err)
		}
	}

	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(m, "/.well-known/jwks.json", strings.NewReader("{}")))
		if w.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s: status got %d, want 405", m, w.Code)
		}
		if got := w.Header().Get("Allow"); !strings.Contains(got, "GET") {
			t.Errorf("%s: Allow got %q, want GET", m, got)
		}
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodHead, "/.well-known/jwks.json", nil))
	if w.Code != http.StatusOK {
		t.Errorf("HEAD: status got %d, want 200", w.Code)
	}

	// An HMAC-only bridge publishes an empty set.
	hb := newTestBridge(t, func(c *Config) { c.SigningKey = hmacKey })
	w = httptest.NewRecorder()
	hb.JWKSHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	if got := strings.TrimSpace(w.Body.String()); got != `{"keys":[]}` {
		t.Errorf("HMAC-only JWKS: got %s, want {\"keys\":[]}", got)
	}
}
