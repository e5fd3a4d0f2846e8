package bridge

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/mux"

	"github.com/sessionbridge/sessionbridge/internal/webtest"
)

// The tests of this file forge tokens by hand (base64url of JSON header
// and payload, then a crafted signature) so that every byte is under
// control, and send each one three ways: to the verifier directly, as
// Authorization: Bearer and as the JWT cookie through the middleware on a
// dual route.

// jwsSeg encodes one JWS segment: a string or []byte as is, anything else
// as JSON.
func jwsSeg(v any) string {
	switch v := v.(type) {
	case string:
		return b64([]byte(v))
	case []byte:
		return b64(v)
	}
	j, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("jwsSeg: %v", err))
	}
	return b64(j)
}

// signJWS signs header and payload (see jwsSeg) with k's pinned algorithm.
func signJWS(t testing.TB, k *Key, header, payload any) string {
	t.Helper()
	return signInput(t, k, jwsSeg(header)+"."+jwsSeg(payload))
}

// signInput signs a JWS signing input (header.payload, as given) with k.
func signInput(t testing.TB, k *Key, input string) string {
	t.Helper()
	sig, err := k.method.Sign(input, k.sign)
	if err != nil {
		t.Fatalf("sign with %s: %v", k.alg, err)
	}
	return input + "." + b64(sig)
}

// splitJWS returns the three segments of a compact JWS.
func splitJWS(t testing.TB, tok string) (h, p, s string) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d segments, want 3", len(parts))
	}
	return parts[0], parts[1], parts[2]
}

// sigBytes decodes the signature of a compact JWS.
func sigBytes(t testing.TB, tok string) []byte {
	t.Helper()
	_, _, s := splitJWS(t, tok)
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("signature: %v", err)
	}
	return b
}

// withSig replaces the signature of tok.
func withSig(t testing.TB, tok string, sig []byte) string {
	t.Helper()
	h, p, _ := splitJWS(t, tok)
	return h + "." + p + "." + b64(sig)
}

const b64URLAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// setTrailingBits sets the lowest unused bit of a segment's last character:
// a lenient decoder returns the same bytes, a strict one refuses it.
func setTrailingBits(t testing.TB, seg string) string {
	t.Helper()
	if n := len(seg) % 4; n != 2 && n != 3 {
		t.Fatalf("segment of length %d has no unused bits", len(seg))
	}
	i := strings.IndexByte(b64URLAlphabet, seg[len(seg)-1])
	if i < 0 || i&1 != 0 {
		t.Fatalf("segment %q does not end canonically", seg)
	}
	return seg[:len(seg)-1] + string(b64URLAlphabet[i|1])
}

// member and noMember change a header or claims map.
func member(name string, v any) func(map[string]any) {
	return func(m map[string]any) { m[name] = v }
}

func noMember(name string) func(map[string]any) {
	return func(m map[string]any) { delete(m, name) }
}

// oddLength pads m (member "pad") until its JSON is not a multiple of 3
// bytes long, so that its base64url form has unused bits and would need
// '=' padding.
func oddLength(m map[string]any) {
	for pad := ""; ; pad += "x" {
		if pad != "" {
			m["pad"] = pad
		}
		j, _ := json.Marshal(m)
		if len(j)%3 != 0 {
			return
		}
	}
}

// tokFixture is a Bridge serving /dual (dual mode, no sessions) behind its
// middleware, with a settable clock.
type tokFixture struct {
	b     *Bridge
	clock *webtest.Clock
	key   *Key // the signing key
	h     http.Handler
}

func newTokFixture(t testing.TB, mod func(*Config)) *tokFixture {
	t.Helper()
	clock := webtest.NewClock()
	router := mux.NewRouter()
	router.HandleFunc("/dual", identityHandler)
	b := newTestBridge(t, func(c *Config) {
		c.Now = clock.Now
		c.Routes = Routes{"/dual": Dual}
		c.Router = router
		if mod != nil {
			mod(c)
		}
	})
	router.Use(b.Middleware)
	return &tokFixture{b: b, clock: clock, key: b.cfg.SigningKey, h: router}
}

// claims returns valid claims for the fixture's issuer and audience,
// issued now and living 10 minutes, changed by mods.
func (f *tokFixture) claims(mods ...func(map[string]any)) map[string]any {
	now := f.clock.Now().Unix()
	c := map[string]any{
		"iss": testIssuer, "sub": "alice", "aud": testAudience,
		"iat": now, "nbf": now, "exp": now + 600, "jti": "jti-alice", "sid": "sid-alice",
	}
	for _, m := range mods {
		m(c)
	}
	return c
}

// header returns a valid header for k, changed by mods.
func (f *tokFixture) header(k *Key, mods ...func(map[string]any)) map[string]any {
	h := map[string]any{"alg": k.alg, "typ": "JWT", "kid": k.kid}
	for _, m := range mods {
		m(h)
	}
	return h
}

// valid returns a valid token signed by the signing key, its claims
// changed by mods.
func (f *tokFixture) valid(t testing.TB, mods ...func(map[string]any)) string {
	t.Helper()
	return signJWS(t, f.key, f.header(f.key), f.claims(mods...))
}

// send sends tok on GET /dual as a bearer token or as the JWT cookie.
func (f *tokFixture) send(tok string, asCookie bool) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "https://bridge.test/dual", nil)
	if asCookie {
		r.Header.Set("Cookie", f.b.cfg.CookieName+"="+tok)
	} else {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w
}

// tokFail is the kind of refusal a token gets.
type tokFail uint8

const (
	failInvalid tokFail = iota // *_invalid, ErrInvalidToken
	failExpired                // *_expired, ErrTokenExpired
	failRevoked                // *_revoked, ErrTokenRevoked
)

func (k tokFail) sentinel() error {
	return [...]error{ErrInvalidToken, ErrTokenExpired, ErrTokenRevoked}[k]
}

// reasons are the counted reasons of the bearer and the cookie refusal.
func (k tokFail) reasons() (bearer, cookie Reason) {
	return ReasonBearerInvalid + Reason(k), ReasonCookieInvalid + Reason(k)
}

// jwtErrors are golang-jwt's errors: a token refused before any decoding
// wraps none of them.
var jwtErrors = []error{
	jwt.ErrTokenMalformed, jwt.ErrTokenUnverifiable, jwt.ErrTokenSignatureInvalid,
	jwt.ErrTokenInvalidClaims, jwt.ErrTokenRequiredClaimMissing, jwt.ErrTokenExpired,
}

// tokAttack is a token that must be refused.
type tokAttack struct {
	name  string
	mod   func(*Config)     // configuration change, or nil
	setup func(*tokFixture) // before the token is made, or nil
	tok   func(testing.TB, *tokFixture) string
	fail  tokFail
	early bool // refused by checkShape, before any decoding
}

// checkRefused sends tok the three ways and checks the refusal.
func checkRefused(t *testing.T, f *tokFixture, tok string, fail tokFail, early bool) {
	t.Helper()
	_, err := f.b.verifier.verify(tok)
	if !errors.Is(err, fail.sentinel()) {
		t.Errorf("verify: got %v, want an error wrapping %v", err, fail.sentinel())
	}
	if early {
		if checkShape(tok, f.b.cfg.MaxTokenSize) == nil {
			t.Errorf("checkShape: got nil, want a refusal before decoding")
		}
		for _, je := range jwtErrors {
			if errors.Is(err, je) {
				t.Errorf("verify: got %v, which wraps %v: the token was decoded", err, je)
			}
		}
	}
	bearerReason, cookieReason := fail.reasons()
	for _, asCookie := range []bool{false, true} {
		want := bearerReason
		if asCookie {
			want = cookieReason
		}
		w := f.send(tok, asCookie)
		if w.Code != http.StatusUnauthorized {
			t.Errorf("cookie=%v: status got %d, want 401; body %s", asCookie, w.Code, w.Body)
			continue
		}
		var body struct{ Reason string }
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Reason != want.String() {
			t.Errorf("cookie=%v: body reason got %q (%v), want %q", asCookie, body.Reason, err, want)
		}
		if got := w.Header().Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
			t.Errorf("cookie=%v: WWW-Authenticate got %q, want Bearer error=\"invalid_token\"", asCookie, got)
		}
	}
	wantReasons(t, f.b, "/dual", map[Reason]uint64{bearerReason: 1, cookieReason: 1})
	wantRequests(t, f.b, "/dual", map[Mode]map[Source]uint64{Dual: {SourceRejected: 2}})
}

// fetchServer counts the requests a token could make the bridge send.
type fetchServer struct {
	*httptest.Server
	hits atomic.Int64
}

func newFetchServer(t *testing.T) *fetchServer {
	s := &fetchServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"keys":[]}`))
	}))
	t.Cleanup(s.Close)
	return s
}

// publicKeyForms are the encodings of k's public key an attacker might use
// as an HMAC secret.
func publicKeyForms(t testing.TB, k *Key) map[string][]byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.verify)
	if err != nil {
		t.Fatalf("MarshalPKIXPublicKey: %v", err)
	}
	p := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	jwk, err := json.Marshal(k.jwk)
	if err != nil {
		t.Fatalf("marshal JWK: %v", err)
	}
	jwks, err := jwksJSON([]*Key{k})
	if err != nil {
		t.Fatalf("jwksJSON: %v", err)
	}
	forms := map[string][]byte{
		"PEM": p, "PEM trimmed": bytes.TrimSpace(p), "DER": der, "JWK JSON": jwk, "JWKS JSON": jwks,
	}
	if pub, ok := k.verify.(*ecdsa.PublicKey); ok {
		raw, err := pub.Bytes()
		if err != nil {
			t.Fatalf("ecdsa public key bytes: %v", err)
		}
		forms["uncompressed point"] = raw
	}
	return forms
}

// hs256 signs header.payload with HMAC-SHA256 keyed by secret.
func hs256(t testing.TB, header, payload any, secret []byte) string {
	t.Helper()
	input := jwsSeg(header) + "." + jwsSeg(payload)
	sig, err := jwt.SigningMethodHS256.Sign(input, secret)
	if err != nil {
		t.Fatalf("HS256: %v", err)
	}
	return input + "." + b64(sig)
}

// selfSignedDER returns a self-signed certificate for k (for x5c).
func selfSignedDER(t testing.TB, k *Key) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.verify, k.sign)
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	return der
}

func mustKey(t testing.TB, key any) *Key {
	t.Helper()
	k, err := NewKey(key)
	if err != nil {
		t.Fatalf("NewKey(%T): %v", key, err)
	}
	return k
}

// withPrevious adds verification keys.
func withPrevious(keys ...*Key) func(*Config) {
	return func(c *Config) { c.VerificationKeys = append(c.VerificationKeys, keys...) }
}

func TestTokenAttacks(t *testing.T) {
	fetch := newFetchServer(t)
	attacker := newTestKey(t) // another ES256 key nobody trusts
	attackerEd := mustKey(t, ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32)))
	previous := newTestKey(t)
	hmacKey := mustKey(t, bytes.Repeat([]byte("s"), 32))
	p256N := elliptic.P256().Params().N
	rsaSigner := mustKey(t, testRSAKey(t))

	var cases []tokAttack
	add := func(c ...tokAttack) { cases = append(cases, c...) }

	// Size and charset: refused before decoding.
	add(
		tokAttack{name: "oversize valid signature", early: true, tok: func(t testing.TB, f *tokFixture) string {
			tok := f.valid(t, member("pad", strings.Repeat("a", 6200)))
			if len(tok) <= DefaultMaxTokenSize {
				t.Fatalf("token of %d bytes is not over the cap", len(tok))
			}
			return tok
		}},
		tokAttack{name: "oversize 1 MiB", early: true, tok: func(t testing.TB, f *tokFixture) string {
			return strings.Repeat("a", 1<<20) + ".b.c"
		}},
	)
	for _, c := range []struct{ name, s string }{
		{"space", " "}, {"plus", "+"}, {"slash", "/"}, {"NUL", "\x00"}, {"newline", "\n"},
		{"tab", "\t"}, {"percent", "%2E"}, {"quote", `"`}, {"non-ASCII", "é"}, {"backslash", `\`},
	} {
		add(tokAttack{name: "charset " + c.name + " in signature", early: true, tok: func(t testing.TB, f *tokFixture) string {
			tok := f.valid(t)
			i := strings.LastIndexByte(tok, '.') + 5
			return tok[:i] + c.s + tok[i:]
		}})
	}
	add(
		tokAttack{name: "charset standard alphabet", early: true, tok: func(t testing.TB, f *tokFixture) string {
			h, p, s := splitJWS(t, f.valid(t))
			return h + "." + p + ".+/" + s[2:]
		}},
		tokAttack{name: "padded payload, signed", early: true, tok: func(t testing.TB, f *tokFixture) string {
			c := f.claims()
			oddLength(c)
			j, _ := json.Marshal(c)
			p := base64.URLEncoding.EncodeToString(j)
			if !strings.HasSuffix(p, "=") {
				t.Fatalf("payload %q is not padded", p)
			}
			return signInput(t, f.key, jwsSeg(f.header(f.key))+"."+p)
		}},
		tokAttack{name: "padded signature", early: true, tok: func(t testing.TB, f *tokFixture) string {
			tok := f.valid(t)
			return tok + "=="
		}},
	)

	// alg none in every case, with and without a signature.
	for _, alg := range []string{"none", "None", "NONE", "nOnE"} {
		add(
			tokAttack{name: "alg " + alg + " no signature", tok: func(t testing.TB, f *tokFixture) string {
				return jwsSeg(f.header(f.key, member("alg", alg))) + "." + jwsSeg(f.claims()) + "."
			}},
			tokAttack{name: "alg " + alg + " without kid", tok: func(t testing.TB, f *tokFixture) string {
				return jwsSeg(map[string]any{"alg": alg}) + "." + jwsSeg(f.claims()) + "."
			}},
			tokAttack{name: "alg " + alg + " with signature", tok: func(t testing.TB, f *tokFixture) string {
				input := jwsSeg(f.header(f.key, member("alg", alg))) + "." + jwsSeg(f.claims())
				sig, _ := f.key.method.Sign(input, f.key.sign)
				return input + "." + b64(sig)
			}},
		)
	}

	// Algorithm confusion: HS256 keyed with the public key, every encoding,
	// with HS256 unknown to the bridge or trusted for another key.
	confusion := []struct {
		name string
		mod  func(*Config)
	}{
		{"ES256 only", nil},
		{"HS256 key also trusted", withPrevious(hmacKey)},
		{"HS256 signer, ES256 previous", func(c *Config) {
			es := c.SigningKey
			c.SigningKey = hmacKey
			c.VerificationKeys = []*Key{es}
		}},
	}
	for _, conf := range confusion {
		for _, form := range []string{"PEM", "PEM trimmed", "DER", "JWK JSON", "JWKS JSON", "uncompressed point"} {
			for _, withKid := range []bool{true, false} {
				add(tokAttack{
					name: fmt.Sprintf("HS256 with %s public key as secret, %s, kid %v", form, conf.name, withKid),
					mod:  conf.mod,
					tok: func(t testing.TB, f *tokFixture) string {
						es := f.key
						if es.alg != "ES256" {
							es = f.b.cfg.VerificationKeys[0]
						}
						h := map[string]any{"alg": "HS256", "typ": "JWT"}
						if withKid {
							h["kid"] = es.kid
						}
						return hs256(t, h, f.claims(), publicKeyForms(t, es)[form])
					},
				})
			}
		}
	}
	add(
		tokAttack{name: "HS256 with RSA public key PEM, RS256 signer", mod: func(c *Config) {
			c.SigningKey = rsaSigner
			c.VerificationKeys = []*Key{hmacKey}
		}, tok: func(t testing.TB, f *tokFixture) string {
			return hs256(t, map[string]any{"alg": "HS256", "typ": "JWT", "kid": f.key.kid}, f.claims(), publicKeyForms(t, f.key)["PEM"])
		}},
		tokAttack{name: "HS256 with Ed25519 public key, EdDSA signer", mod: func(c *Config) {
			c.SigningKey = attackerEd
		}, tok: func(t testing.TB, f *tokFixture) string {
			return hs256(t, map[string]any{"alg": "HS256", "typ": "JWT", "kid": f.key.kid}, f.claims(), publicKeyForms(t, f.key)["DER"])
		}},
		tokAttack{name: "EdDSA signature under the ES256 kid, EdDSA also trusted", mod: withPrevious(mustKey(t, attackerEd.verify)),
			tok: func(t testing.TB, f *tokFixture) string {
				return signJWS(t, attackerEd, map[string]any{"alg": "EdDSA", "kid": f.key.kid}, f.claims())
			}},
		tokAttack{name: "HS256 with the HS256 key's kid but the wrong secret", mod: withPrevious(hmacKey),
			tok: func(t testing.TB, f *tokFixture) string {
				return hs256(t, map[string]any{"alg": "HS256", "kid": hmacKey.kid}, f.claims(), bytes.Repeat([]byte("t"), 32))
			}},
		tokAttack{name: "alg RS256 on the ES256 kid", tok: func(t testing.TB, f *tokFixture) string {
			_, p, s := splitJWS(t, f.valid(t))
			return jwsSeg(f.header(f.key, member("alg", "RS256"))) + "." + p + "." + s
		}},
		tokAttack{name: "alg ES384 on the ES256 kid", tok: func(t testing.TB, f *tokFixture) string {
			_, p, s := splitJWS(t, f.valid(t))
			return jwsSeg(f.header(f.key, member("alg", "ES384"))) + "." + p + "." + s
		}},
		tokAttack{name: "alg missing", tok: func(t testing.TB, f *tokFixture) string {
			return signJWS(t, f.key, f.header(f.key, noMember("alg")), f.claims())
		}},
		tokAttack{name: "alg not a string", tok: func(t testing.TB, f *tokFixture) string {
			return signJWS(t, f.key, f.header(f.key, member("alg", []string{"ES256"})), f.claims())
		}},
	)

	// Segments and serialization.
	add(
		tokAttack{name: "stripped signature", tok: func(t testing.TB, f *tokFixture) string {
			h, p, _ := splitJWS(t, f.valid(t))
			return h + "." + p + "."
		}},
		tokAttack{name: "2 segments", early: true, tok: func(t testing.TB, f *tokFixture) string {
			h, p, _ := splitJWS(t, f.valid(t))
			return h + "." + p
		}},
		tokAttack{name: "1 segment", early: true, tok: func(t testing.TB, f *tokFixture) string {
			h, _, _ := splitJWS(t, f.valid(t))
			return h
		}},
		tokAttack{name: "4 segments", early: true, tok: func(t testing.TB, f *tokFixture) string {
			return f.valid(t) + ".AAAA"
		}},
		tokAttack{name: "5 segments (JWE shape)", early: true, tok: func(t testing.TB, f *tokFixture) string {
			h, p, s := splitJWS(t, f.valid(t))
			return h + "." + p + "." + s + ".AAAA.AAAA"
		}},
		tokAttack{name: "empty segments", tok: func(t testing.TB, f *tokFixture) string { return ".." }},
		tokAttack{name: "JSON serialization, flattened", early: true, tok: func(t testing.TB, f *tokFixture) string {
			h, p, s := splitJWS(t, f.valid(t))
			j, _ := json.Marshal(map[string]string{"protected": h, "payload": p, "signature": s})
			return string(j)
		}},
		tokAttack{name: "JSON serialization, general", early: true, tok: func(t testing.TB, f *tokFixture) string {
			h, p, s := splitJWS(t, f.valid(t))
			j, _ := json.Marshal(map[string]any{"payload": p, "signatures": []map[string]string{{"protected": h, "signature": s}}})
			return string(j)
		}},
	)

	// ECDSA signatures.
	add(
		tokAttack{name: "ECDSA r=s=0 (psychic signature)", tok: func(t testing.TB, f *tokFixture) string {
			return withSig(t, f.valid(t), make([]byte, 64))
		}},
		tokAttack{name: "ECDSA r=0, s valid", tok: func(t testing.TB, f *tokFixture) string {
			tok := f.valid(t)
			sig := sigBytes(t, tok)
			clear(sig[:32])
			return withSig(t, tok, sig)
		}},
		tokAttack{name: "ECDSA r=s=n", tok: func(t testing.TB, f *tokFixture) string {
			sig := make([]byte, 64)
			p256N.FillBytes(sig[:32])
			p256N.FillBytes(sig[32:])
			return withSig(t, f.valid(t), sig)
		}},
		tokAttack{name: "ECDSA DER-encoded valid signature", tok: func(t testing.TB, f *tokFixture) string {
			tok := f.valid(t)
			sig := sigBytes(t, tok)
			der, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])})
			if err != nil {
				t.Fatalf("asn1: %v", err)
			}
			return withSig(t, tok, der)
		}},
		tokAttack{name: "ECDSA signature 63 bytes", tok: func(t testing.TB, f *tokFixture) string {
			tok := f.valid(t)
			return withSig(t, tok, sigBytes(t, tok)[:63])
		}},
		tokAttack{name: "ECDSA signature 65 bytes", tok: func(t testing.TB, f *tokFixture) string {
			tok := f.valid(t)
			return withSig(t, tok, append(sigBytes(t, tok), 0))
		}},
		tokAttack{name: "ECDSA signature 32 bytes", tok: func(t testing.TB, f *tokFixture) string {
			tok := f.valid(t)
			return withSig(t, tok, sigBytes(t, tok)[:32])
		}},
		tokAttack{name: "signature of other claims", tok: func(t testing.TB, f *tokFixture) string {
			other := f.valid(t, member("sub", "mallory"))
			return withSig(t, f.valid(t), sigBytes(t, other))
		}},
		tokAttack{name: "signature by an untrusted key under our kid", tok: func(t testing.TB, f *tokFixture) string {
			return signJWS(t, attacker, f.header(f.key), f.claims())
		}},
		tokAttack{name: "claims changed after signing", tok: func(t testing.TB, f *tokFixture) string {
			h, _, s := splitJWS(t, f.valid(t))
			return h + "." + jwsSeg(f.claims(member("sub", "admin"))) + "." + s
		}},
	)

	// Non-canonical base64: the same bytes to a lenient decoder.
	add(
		tokAttack{name: "signature with trailing bits set", tok: func(t testing.TB, f *tokFixture) string {
			h, p, s := splitJWS(t, f.valid(t))
			return h + "." + p + "." + setTrailingBits(t, s)
		}},
		tokAttack{name: "payload with trailing bits set, signed", tok: func(t testing.TB, f *tokFixture) string {
			c := f.claims()
			oddLength(c)
			return signInput(t, f.key, jwsSeg(f.header(f.key))+"."+setTrailingBits(t, jwsSeg(c)))
		}},
		tokAttack{name: "header with trailing bits set, signed", tok: func(t testing.TB, f *tokFixture) string {
			h := f.header(f.key)
			oddLength(h)
			return signInput(t, f.key, setTrailingBits(t, jwsSeg(h))+"."+jwsSeg(f.claims()))
		}},
	)

	// kid: in-memory lookup only, required when several keys.
	for _, kid := range []any{
		"../../etc/passwd", "/dev/null", "file:///etc/passwd", "' OR '1'='1' --", "x'; DROP TABLE keys; --",
		"$(id)", "`id`", "k; rm -rf / #", "unknown", "http://" + "127.0.0.1/", "", 42, nil, []any{"a"}, map[string]any{"kid": "x"},
	} {
		add(tokAttack{name: fmt.Sprintf("kid %#v", kid), tok: func(t testing.TB, f *tokFixture) string {
			return signJWS(t, f.key, f.header(f.key, member("kid", kid)), f.claims())
		}})
	}
	add(
		tokAttack{name: "kid of another key", tok: func(t testing.TB, f *tokFixture) string {
			return signJWS(t, f.key, f.header(f.key, member("kid", attacker.kid)), f.claims())
		}},
		tokAttack{name: "no kid, several keys, signed by the signer", mod: withPrevious(previous), tok: func(t testing.TB, f *tokFixture) string {
			return signJWS(t, f.key, f.header(f.key, noMember("kid")), f.claims())
		}},
		tokAttack{name: "no kid, several keys, signed by the previous key", mod: withPrevious(previous), tok: func(t testing.TB, f *tokFixture) string {
			return signJWS(t, previous, f.header(previous, noMember("kid")), f.claims())
		}},
		tokAttack{name: "previous key's kid, signer's signature", mod: withPrevious(previous), tok: func(t testing.TB, f *tokFixture) string {
			return signJWS(t, f.key, f.header(f.key, member("kid", previous.kid)), f.claims())
		}},
	)

	// Key-bearing and critical headers: refused, never fetched. Signed
	// by the trusted key, so that the header alone is the reason.
	for _, h := range []struct {
		name string
		v    func(testing.TB, *tokFixture) any
	}{
		{"jku", func(testing.TB, *tokFixture) any { return fetch.URL + "/jwks.json" }},
		{"x5u", func(testing.TB, *tokFixture) any { return fetch.URL + "/cert.pem" }},
		{"jwk", func(_ testing.TB, f *tokFixture) any { return f.key.jwk }},
		{"x5c", func(t testing.TB, f *tokFixture) any {
			return []string{base64.StdEncoding.EncodeToString(selfSignedDER(t, f.key))}
		}},
		{"crit", func(testing.TB, *tokFixture) any { return []string{"exp"} }},
		{"crit empty", func(testing.TB, *tokFixture) any { return []string{} }},
		{"crit b64", func(testing.TB, *tokFixture) any { return []string{"b64"} }},
	} {
		name, _, _ := strings.Cut(h.name, " ")
		add(tokAttack{name: "header " + h.name + ", trusted signature", tok: func(t testing.TB, f *tokFixture) string {
			hdr := f.header(f.key, member(name, h.v(t, f)))
			if name == "crit" && h.name == "crit b64" {
				hdr["b64"] = false
			}
			return signJWS(t, f.key, hdr, f.claims())
		}})
	}
	// The classic attacks: a key of the attacker's named or embedded in the
	// header, the token signed with it.
	add(
		tokAttack{name: "jku to the attacker's JWKS, attacker's signature", tok: func(t testing.TB, f *tokFixture) string {
			return signJWS(t, attacker, f.header(attacker, member("jku", fetch.URL+"/jwks.json")), f.claims())
		}},
		tokAttack{name: "jku with our kid, attacker's signature", tok: func(t testing.TB, f *tokFixture) string {
			return signJWS(t, attacker, f.header(f.key, member("jku", fetch.URL+"/.well-known/jwks.json")), f.claims())
		}},
		tokAttack{name: "x5u to the attacker, attacker's signature", tok: func(t testing.TB, f *tokFixture) string {
			return signJWS(t, attacker, f.header(attacker, member("x5u", fetch.URL+"/x.pem")), f.claims())
		}},
		tokAttack{name: "embedded jwk of the attacker's key", tok: func(t testing.TB, f *tokFixture) string {
			return signJWS(t, attacker, f.header(attacker, member("jwk", attacker.jwk)), f.claims())
		}},
		tokAttack{name: "embedded jwk, no kid", tok: func(t testing.TB, f *tokFixture) string {
			return signJWS(t, attacker, f.header(attacker, noMember("kid"), member("jwk", attacker.jwk)), f.claims())
		}},
		tokAttack{name: "x5c of the attacker's certificate", tok: func(t testing.TB, f *tokFixture) string {
			x5c := []string{base64.StdEncoding.EncodeToString(selfSignedDER(t, attacker))}
			return signJWS(t, attacker, f.header(attacker, noMember("kid"), member("x5c", x5c)), f.claims())
		}},
	)

	// Issuer binding and audience.
	for _, iss := range []any{"https://evil.test", "https://idp.example", "HTTPS://ISSUER.TEST", testIssuer + "/", testIssuer + " ", "", []string{testIssuer}, 1} {
		add(tokAttack{name: fmt.Sprintf("iss %#v", iss), tok: func(t testing.TB, f *tokFixture) string {
			return f.valid(t, member("iss", iss))
		}})
	}
	add(tokAttack{name: "iss missing", tok: func(t testing.TB, f *tokFixture) string { return f.valid(t, noMember("iss")) }})
	for _, aud := range []any{"other-api", "TEST-API", testAudience + " ", "", []string{}, []string{"other-api"}, []string{"x", "y"}, 1, map[string]any{"aud": testAudience}} {
		add(tokAttack{name: fmt.Sprintf("aud %#v", aud), tok: func(t testing.TB, f *tokFixture) string {
			return f.valid(t, member("aud", aud))
		}})
	}
	add(
		tokAttack{name: "aud missing", tok: func(t testing.TB, f *tokFixture) string { return f.valid(t, noMember("aud")) }},
		tokAttack{name: "aud null", tok: func(t testing.TB, f *tokFixture) string { return f.valid(t, member("aud", nil)) }},
	)

	// Times: exp required; nbf and iat within the leeway (30s here).
	add(
		tokAttack{name: "exp missing", tok: func(t testing.TB, f *tokFixture) string { return f.valid(t, noMember("exp")) }},
		tokAttack{name: "exp null", tok: func(t testing.TB, f *tokFixture) string { return f.valid(t, member("exp", nil)) }},
		tokAttack{name: "exp not a number", tok: func(t testing.TB, f *tokFixture) string { return f.valid(t, member("exp", "tomorrow")) }},
		tokAttack{name: "exp 0", fail: failExpired, tok: func(t testing.TB, f *tokFixture) string { return f.valid(t, member("exp", 0)) }},
		tokAttack{name: "exp negative", fail: failExpired, tok: func(t testing.TB, f *tokFixture) string { return f.valid(t, member("exp", -1)) }},
		tokAttack{name: "exp 31s ago, leeway 30s", fail: failExpired, tok: func(t testing.TB, f *tokFixture) string {
			return f.valid(t, member("exp", f.clock.Now().Unix()-31), member("iat", f.clock.Now().Unix()-600), member("nbf", f.clock.Now().Unix()-600))
		}},
		tokAttack{name: "exp 30s ago, leeway 30s (bound excluded)", fail: failExpired, tok: func(t testing.TB, f *tokFixture) string {
			return f.valid(t, member("exp", f.clock.Now().Unix()-30))
		}},
		tokAttack{name: "exp a day ago", fail: failExpired, tok: func(t testing.TB, f *tokFixture) string {
			return f.valid(t, member("exp", f.clock.Now().Add(-24*time.Hour).Unix()))
		}},
		tokAttack{name: "expired and forged: invalid first", tok: func(t testing.TB, f *tokFixture) string {
			return signJWS(t, attacker, f.header(f.key), f.claims(member("exp", 1)))
		}},
		tokAttack{name: "nbf 31s ahead, leeway 30s", tok: func(t testing.TB, f *tokFixture) string {
			return f.valid(t, member("nbf", f.clock.Now().Unix()+31))
		}},
		tokAttack{name: "nbf an hour ahead", tok: func(t testing.TB, f *tokFixture) string {
			return f.valid(t, member("nbf", f.clock.Now().Add(time.Hour).Unix()))
		}},
		tokAttack{name: "iat 31s ahead, leeway 30s", tok: func(t testing.TB, f *tokFixture) string {
			return f.valid(t, member("iat", f.clock.Now().Unix()+31))
		}},
		tokAttack{name: "iat a day ahead", tok: func(t testing.TB, f *tokFixture) string {
			return f.valid(t, member("iat", f.clock.Now().Add(24*time.Hour).Unix()))
		}},
		tokAttack{name: "nbf 61s ahead, leeway 60s", mod: func(c *Config) { c.Leeway = MaxLeeway }, tok: func(t testing.TB, f *tokFixture) string {
			return f.valid(t, member("nbf", f.clock.Now().Unix()+61))
		}},
	)

	// typ other than JWT (or at+jwt).
	for _, typ := range []any{"JWS", "JOSE", "JOSE+JSON", "JWE", "", "jwt+xml", 1, nil, []string{"JWT"}} {
		add(tokAttack{name: fmt.Sprintf("typ %#v", typ), tok: func(t testing.TB, f *tokFixture) string {
			return signJWS(t, f.key, f.header(f.key, member("typ", typ)), f.claims())
		}})
	}

	// Payload and header not objects, deeply nested, not JSON: signed
	// with the trusted key, so that the structure alone is the reason.
	for _, p := range []struct{ name, json string }{
		{"array", `["iss","` + testIssuer + `"]`}, {"string", `"` + testIssuer + `"`}, {"number", `1`},
		{"null", `null`}, {"true", `true`}, {"not JSON", `iss=` + testIssuer}, {"empty", ``},
		{"truncated", `{"iss":"` + testIssuer + `"`}, {"trailing data", `{"iss":"x"} {}`},
		{"invalid UTF-8 key", "{\"\xff\":1}"},
	} {
		add(tokAttack{name: "payload " + p.name, tok: func(t testing.TB, f *tokFixture) string {
			return signInput(t, f.key, jwsSeg(f.header(f.key))+"."+b64([]byte(p.json)))
		}})
	}
	for _, h := range []struct{ name, json string }{
		{"array", `["ES256"]`}, {"string", `"ES256"`}, {"null", `null`}, {"empty", ``}, {"not JSON", `alg=ES256`},
	} {
		add(tokAttack{name: "header " + h.name, tok: func(t testing.TB, f *tokFixture) string {
			return signInput(t, f.key, b64([]byte(h.json))+"."+jwsSeg(f.claims()))
		}})
	}
	add(
		tokAttack{name: "payload nested arrays as deep as fits 8 KiB", tok: func(t testing.TB, f *tokFixture) string {
			return deepest(t, f, func(n int) string {
				return signInput(t, f.key, jwsSeg(f.header(f.key))+"."+b64([]byte(strings.Repeat("[", n)+strings.Repeat("]", n))))
			})
		}},
		tokAttack{name: "payload nested objects as deep as fits 8 KiB", tok: func(t testing.TB, f *tokFixture) string {
			return deepest(t, f, func(n int) string {
				return signInput(t, f.key, jwsSeg(f.header(f.key))+"."+b64([]byte(strings.Repeat(`{"a":`, n)+"1"+strings.Repeat("}", n))))
			})
		}},
		tokAttack{name: "header nested as deep as fits 8 KiB, forged signature", tok: func(t testing.TB, f *tokFixture) string {
			return deepest(t, f, func(n int) string {
				h := `{"alg":"ES256","kid":"` + f.key.kid + `","x":` + strings.Repeat("[", n) + strings.Repeat("]", n) + "}"
				return signInput(t, attacker, b64([]byte(h))+"."+jwsSeg(f.claims()))
			})
		}},
		tokAttack{name: "claim nested as deep as fits 8 KiB, forged signature", tok: func(t testing.TB, f *tokFixture) string {
			return deepest(t, f, func(n int) string {
				return signJWS(t, attacker, f.header(f.key), nestedClaims(f, n))
			})
		}},
	)

	// Revocation.
	add(
		tokAttack{name: "revoked jti", fail: failRevoked, setup: func(f *tokFixture) {
			f.b.Deny(Revocation{JTI: "jti-alice", Until: f.clock.Now().Add(time.Hour)})
		}, tok: func(t testing.TB, f *tokFixture) string { return f.valid(t) }},
		tokAttack{name: "revoked sid", fail: failRevoked, setup: func(f *tokFixture) {
			f.b.Deny(Revocation{SID: "sid-alice", Until: f.clock.Now().Add(time.Hour)})
		}, tok: func(t testing.TB, f *tokFixture) string { return f.valid(t) }},
		tokAttack{name: "revoked sid, token without jti", fail: failRevoked, setup: func(f *tokFixture) {
			f.b.Deny(Revocation{SID: "sid-alice", Until: f.clock.Now().Add(time.Hour)})
		}, tok: func(t testing.TB, f *tokFixture) string { return f.valid(t, noMember("jti")) }},
	)

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newTokFixture(t, c.mod)
			if c.setup != nil {
				c.setup(f)
			}
			checkRefused(t, f, c.tok(t, f), c.fail, c.early)
		})
	}
	if n := fetch.hits.Load(); n != 0 {
		t.Errorf("outbound requests to the jku/x5u server: got %d, want 0", n)
	}
}

// nestedClaims are valid claims with an extra claim nested n arrays deep.
func nestedClaims(f *tokFixture, n int) json.RawMessage {
	c, _ := json.Marshal(f.claims())
	return json.RawMessage(`{"x":` + strings.Repeat("[", n) + strings.Repeat("]", n) + "," + string(c[1:]))
}

// deepest returns make(n) for the largest n whose token fits the 8 KiB cap.
func deepest(t testing.TB, f *tokFixture, build func(n int) string) string {
	t.Helper()
	lo, hi := 1, DefaultMaxTokenSize
	for lo < hi { // largest n with len(build(n)) <= cap
		mid := (lo + hi + 1) / 2
		if len(build(mid)) <= DefaultMaxTokenSize {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	tok := build(lo)
	if lo < 500 || len(tok) > DefaultMaxTokenSize {
		t.Fatalf("nesting %d, token %d bytes", lo, len(tok))
	}
	return tok
}

// tokAccept is a token that must be accepted.
type tokAccept struct {
	name string
	mod  func(*Config)
	tok  func(testing.TB, *tokFixture) string
}

// checkAccepted sends tok the three ways and checks it authenticates
// alice.
func checkAccepted(t *testing.T, f *tokFixture, tok string) {
	t.Helper()
	e, err := f.b.verifier.verify(tok)
	if err != nil {
		t.Fatalf("verify: got %v, want nil", err)
	}
	if e.claims.Subject != "alice" || e.claims.Issuer != testIssuer {
		t.Errorf("claims: got sub %q iss %q, want alice, %s", e.claims.Subject, e.claims.Issuer, testIssuer)
	}
	for _, asCookie := range []bool{false, true} {
		want := SourceJWTBearer
		if asCookie {
			want = SourceJWTCookie
		}
		w := f.send(tok, asCookie)
		if w.Code != http.StatusOK {
			t.Errorf("cookie=%v: status got %d, want 200; body %s", asCookie, w.Code, w.Body)
			continue
		}
		var id identityBody
		if err := json.Unmarshal(w.Body.Bytes(), &id); err != nil || id.Subject != "alice" || id.Source != want.String() {
			t.Errorf("cookie=%v: identity got %+v (%v), want alice from %v", asCookie, id, err, want)
		}
	}
	wantReasons(t, f.b, "/dual", nil)
	wantRequests(t, f.b, "/dual", map[Mode]map[Source]uint64{Dual: {SourceJWTBearer: 1, SourceJWTCookie: 1}})
}

func TestTokenAccepted(t *testing.T) {
	previousES := newTestKey(t)
	previousRSA := mustKey(t, testRSAKey(t))
	ed := mustKey(t, ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32)))
	hmacKey := mustKey(t, bytes.Repeat([]byte{0xA5}, 32))
	rsaSigner := mustKey(t, testRSAKey(t))
	sign := func(key *Key) func(*Config) { return func(c *Config) { c.SigningKey = key } }
	minted := func(t testing.TB, f *tokFixture) string {
		return mintTestToken(t, f.b, "alice", nil)
	}
	cases := []tokAccept{
		{name: "ES256 minted (default)", tok: minted},
		{name: "EdDSA minted", mod: sign(ed), tok: minted},
		{name: "RS256 2048 minted", mod: sign(rsaSigner), tok: minted},
		{name: "HS256 32-byte secret minted", mod: sign(hmacKey), tok: minted},
		{name: "hand-made ES256 (control of the attack table)", tok: func(t testing.TB, f *tokFixture) string { return f.valid(t) }},
		{name: "previous ES256 key", mod: withPrevious(previousES), tok: func(t testing.TB, f *tokFixture) string {
			return signJWS(t, previousES, f.header(previousES), f.claims())
		}},
		{name: "previous RS256 key, ES256 signer", mod: withPrevious(previousRSA), tok: func(t testing.TB, f *tokFixture) string {
			return signJWS(t, previousRSA, f.header(previousRSA), f.claims())
		}},
		{name: "signer among several keys, with kid", mod: withPrevious(previousES, previousRSA, hmacKey), tok: func(t testing.TB, f *tokFixture) string {
			return f.valid(t)
		}},
		{name: "previous HS256 key, with kid", mod: withPrevious(hmacKey), tok: func(t testing.TB, f *tokFixture) string {
			return signJWS(t, hmacKey, f.header(hmacKey), f.claims())
		}},
		{name: "single key, no kid", tok: func(t testing.TB, f *tokFixture) string {
			return signJWS(t, f.key, f.header(f.key, noMember("kid")), f.claims())
		}},
		{name: "no typ", tok: func(t testing.TB, f *tokFixture) string {
			return signJWS(t, f.key, f.header(f.key, noMember("typ")), f.claims())
		}},
		{name: "typ at+jwt", tok: func(t testing.TB, f *tokFixture) string {
			return signJWS(t, f.key, f.header(f.key, member("typ", "at+jwt")), f.claims())
		}},
		// x5t and x5t#S256 are thumbprint hints (Entra ID sends x5t):
		// ignored, never used to find a key.
		{name: "x5t and x5t#S256 hints", tok: func(t testing.TB, f *tokFixture) string {
			return signJWS(t, f.key, f.header(f.key, member("x5t", b64(make([]byte, 20))), member("x5t#S256", b64(make([]byte, 32)))), f.claims())
		}},
		{name: "aud array holding ours", tok: func(t testing.TB, f *tokFixture) string {
			return f.valid(t, member("aud", []string{"other-api", testAudience}))
		}},
		{name: "no nbf, no iat, no jti", tok: func(t testing.TB, f *tokFixture) string {
			return f.valid(t, noMember("nbf"), noMember("iat"), noMember("jti"))
		}},
		{name: "exp 29s ago, leeway 30s", tok: func(t testing.TB, f *tokFixture) string {
			return f.valid(t, member("exp", f.clock.Now().Unix()-29))
		}},
		{name: "nbf 20s ahead, leeway 30s", tok: func(t testing.TB, f *tokFixture) string {
			return f.valid(t, member("nbf", f.clock.Now().Unix()+20))
		}},
		{name: "nbf 30s ahead, leeway 30s (bound included)", tok: func(t testing.TB, f *tokFixture) string {
			return f.valid(t, member("nbf", f.clock.Now().Unix()+30))
		}},
		{name: "iat 20s ahead, leeway 30s", tok: func(t testing.TB, f *tokFixture) string {
			return f.valid(t, member("iat", f.clock.Now().Unix()+20))
		}},
		{name: "nbf 59s ahead, leeway 60s", mod: func(c *Config) { c.Leeway = MaxLeeway }, tok: func(t testing.TB, f *tokFixture) string {
			return f.valid(t, member("nbf", f.clock.Now().Unix()+59), member("iat", f.clock.Now().Unix()+59))
		}},
		{name: "other jti revoked", tok: func(t testing.TB, f *tokFixture) string {
			f.b.Deny(Revocation{JTI: "jti-bob", Until: f.clock.Now().Add(time.Hour)})
			f.b.Deny(Revocation{SID: "sid-bob", Until: f.clock.Now().Add(time.Hour)})
			return f.valid(t)
		}},
		{name: "exactly at the size cap", tok: func(t testing.TB, f *tokFixture) string {
			// Raw base64 never has a length of 1 mod 4: vary the header too.
			for extra := range 4 {
				h := f.header(f.key)
				if extra > 0 {
					h["x"] = strings.Repeat("y", extra)
				}
				for n := 5800; n < 6200; n++ {
					if tok := signJWS(t, f.key, h, f.claims(member("pad", strings.Repeat("a", n)))); len(tok) == DefaultMaxTokenSize {
						return tok
					}
				}
			}
			t.Fatalf("no token of exactly %d bytes", DefaultMaxTokenSize)
			return ""
		}},
		// Documented: an unknown claim nested as deep as fits is decoded
		// (encoding/json's depth limit is 10000) and ignored.
		{name: "unknown claim nested as deep as fits, trusted signature", tok: func(t testing.TB, f *tokFixture) string {
			return deepest(t, f, func(n int) string { return signJWS(t, f.key, f.header(f.key), nestedClaims(f, n)) })
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newTokFixture(t, c.mod)
			checkAccepted(t, f, c.tok(t, f))
		})
	}
}

// TestTokenDuplicateMembers documents duplicate members: encoding/json
// keeps the last one, in the header and in the claims. Only a holder of a
// trusted key can sign such a token; what matters is that the verified
// value is the one checked, and never a 500.
func TestTokenDuplicateMembers(t *testing.T) {
	f := newTokFixture(t, nil)
	now := f.clock.Now().Unix()
	rest := fmt.Sprintf(`"sub":"alice","aud":%q,"iat":%d,"exp":%d`, testAudience, now, now+600)
	hdr := fmt.Sprintf(`"typ":"JWT","kid":%q`, f.key.kid)
	cases := []struct {
		name, header, claims string
		ok                   bool
	}{
		{"iss evil then ours", `{"alg":"ES256",` + hdr + `}`, `{"iss":"https://evil.test","iss":"` + testIssuer + `",` + rest + `}`, true},
		{"iss ours then evil", `{"alg":"ES256",` + hdr + `}`, `{"iss":"` + testIssuer + `","iss":"https://evil.test",` + rest + `}`, false},
		{"exp past then future", `{"alg":"ES256",` + hdr + `}`, fmt.Sprintf(`{"iss":%q,"exp":1,%s}`, testIssuer, rest), true},
		{"aud ours then other", `{"alg":"ES256",` + hdr + `}`, fmt.Sprintf(`{"iss":%q,%s,"aud":"other"}`, testIssuer, rest), false},
		{"alg none then ES256", `{"alg":"none","alg":"ES256",` + hdr + `}`, fmt.Sprintf(`{"iss":%q,%s}`, testIssuer, rest), true},
		{"alg ES256 then none", `{"alg":"ES256","alg":"none",` + hdr + `}`, fmt.Sprintf(`{"iss":%q,%s}`, testIssuer, rest), false},
		{"kid unknown then ours", `{"alg":"ES256","kid":"../../x",` + hdr + `}`, fmt.Sprintf(`{"iss":%q,%s}`, testIssuer, rest), true},
		{"kid ours then unknown", `{"alg":"ES256",` + hdr + `,"kid":"../../x"}`, fmt.Sprintf(`{"iss":%q,%s}`, testIssuer, rest), false},
		{"jku then no jku", `{"alg":"ES256","jku":"http://x",` + hdr + `,"jku":null}`, fmt.Sprintf(`{"iss":%q,%s}`, testIssuer, rest), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := signInput(t, f.key, b64([]byte(c.header))+"."+b64([]byte(c.claims)))
			e, err := f.b.verifier.verify(tok)
			if (err == nil) != c.ok {
				t.Fatalf("verify: got %v, want accepted %v", err, c.ok)
			}
			if err == nil && (e.claims.Issuer != testIssuer || !e.exp.After(f.clock.Now())) {
				t.Errorf("accepted claims: iss %q exp %v", e.claims.Issuer, e.exp)
			}
			for _, asCookie := range []bool{false, true} {
				w := f.send(tok, asCookie)
				if want := map[bool]int{true: 200, false: 401}[c.ok]; w.Code != want {
					t.Errorf("cookie=%v: status got %d, want %d", asCookie, w.Code, want)
				}
			}
		})
	}
}

// TestTokenIssuerBinding: keys are bound to their issuer, in both
// directions, when the verifier trusts two issuers.
func TestTokenIssuerBinding(t *testing.T) {
	clock := webtest.NewClock()
	own, idp := newTestKey(t), newTestKey(t)
	const idpName = "https://idp.example"
	ownIss := ownIssuer(Config{SigningKey: own, Issuer: testIssuer, Audience: testAudience, Leeway: DefaultLeeway, Now: clock.Now})
	idpIss := ownIssuer(Config{SigningKey: idp, Issuer: idpName, Audience: testAudience, Leeway: DefaultLeeway, Now: clock.Now})
	v := newVerifier([]*issuer{ownIss, idpIss}, DefaultMaxTokenSize, clock.Now, 0, newDenylist())
	f := &tokFixture{clock: clock}
	cases := []struct {
		name string
		key  *Key
		kid  string
		iss  string
		ok   bool
	}{
		{"own key, own issuer", own, own.kid, testIssuer, true},
		{"IdP key, IdP issuer", idp, idp.kid, idpName, true},
		{"own key claiming the IdP", own, own.kid, idpName, false},
		{"IdP key claiming us", idp, idp.kid, testIssuer, false},
		{"own key, IdP kid, IdP issuer", own, idp.kid, idpName, false},
		{"IdP key, own kid, own issuer", idp, own.kid, testIssuer, false},
		{"own key, no kid, IdP issuer", own, "", idpName, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := map[string]any{"alg": "ES256", "typ": "JWT"}
			if c.kid != "" {
				h["kid"] = c.kid
			}
			tok := signJWS(t, c.key, h, f.claims(member("iss", c.iss)))
			_, err := v.verify(tok)
			if (err == nil) != c.ok {
				t.Errorf("verify: got %v, want accepted %v", err, c.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidToken) {
				t.Errorf("verify: got %v, want ErrInvalidToken", err)
			}
		})
	}
}

// TestTokenRevokedAfterCache: a token verified (and cached) before its jti
// or sid is revoked is refused on the next request.
func TestTokenRevokedAfterCache(t *testing.T) {
	for _, by := range []string{"jti", "sid"} {
		t.Run(by, func(t *testing.T) {
			f := newTokFixture(t, nil)
			tok := f.valid(t)
			for _, asCookie := range []bool{false, true} {
				if w := f.send(tok, asCookie); w.Code != http.StatusOK {
					t.Fatalf("before revocation, cookie=%v: status got %d, want 200", asCookie, w.Code)
				}
			}
			if f.b.verifier.cache.get(tok, f.clock.Now()) == nil {
				t.Fatalf("token not cached after first use")
			}
			until := f.clock.Now().Add(time.Hour)
			if by == "jti" {
				f.b.Deny(Revocation{JTI: "jti-alice", Until: until})
			} else {
				f.b.Deny(Revocation{SID: "sid-alice", Until: until})
			}
			for _, asCookie := range []bool{false, true} {
				w := f.send(tok, asCookie)
				if w.Code != http.StatusUnauthorized {
					t.Errorf("after revocation, cookie=%v: status got %d, want 401", asCookie, w.Code)
				}
			}
			if _, err := f.b.verifier.verify(tok); !errors.Is(err, ErrTokenRevoked) {
				t.Errorf("verify: got %v, want ErrTokenRevoked", err)
			}
			wantReasons(t, f.b, "/dual", map[Reason]uint64{ReasonBearerRevoked: 1, ReasonCookieRevoked: 1})
		})
	}
}

func TestCheckShape(t *testing.T) {
	cases := []struct {
		tok string
		max int
		ok  bool
	}{
		{"a.b.c", 8, true},
		{"a.b.c", 5, true},
		{"a.b.c", 4, false},
		{"..", 8, true}, // shape only: decoding refuses it
		{"A-_z09.b.c", 64, true},
		{"a.b", 8, false},
		{"a.b.c.d", 8, false},
		{"", 8, false},
		{"a.b.c=", 8, false},
		{"a.b+.c", 8, false},
		{"a/.b.c", 8, false},
		{"a.b.c\x00", 8, false},
		{"a.b.c\u00e9", 16, false},
	}
	for _, c := range cases {
		if err := checkShape(c.tok, c.max); (err == nil) != c.ok {
			t.Errorf("checkShape(%q, %d): got %v, want ok %v", c.tok, c.max, err, c.ok)
		} else if err != nil && !errors.Is(err, ErrInvalidToken) {
			t.Errorf("checkShape(%q, %d): got %v, want ErrInvalidToken", c.tok, c.max, err)
		}
	}
}

// countingVerifier is a verifier of testIssuer whose key lookups are
// counted: a lookup is a signature check.
func countingVerifier(t testing.TB, clock *webtest.Clock, cacheSize int) (*verifier, *Key, *atomic.Int64) {
	t.Helper()
	key := newTestKey(t)
	lookups := new(atomic.Int64)
	iss := &issuer{
		name:      testIssuer,
		validator: newIssuerValidator(testIssuer, []string{testAudience}, DefaultLeeway, clock.Now),
		algs:      []string{"ES256"},
		key: func(kid, alg string) (any, error) {
			lookups.Add(1)
			if kid != key.kid || alg != key.alg {
				return nil, errors.New("unknown key")
			}
			return key.verify, nil
		},
	}
	return newVerifier([]*issuer{iss}, DefaultMaxTokenSize, clock.Now, cacheSize, newDenylist()), key, lookups
}

// cacheLen counts the entries of c.
func cacheLen(c *tokenCache) int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.RLock()
		n += len(s.m)
		s.RUnlock()
	}
	return n
}

func TestTokenCacheSkipsVerification(t *testing.T) {
	clock := webtest.NewClock()
	v, key, lookups := countingVerifier(t, clock, 100)
	f := &tokFixture{clock: clock, key: key}
	tok := f.valid(t)
	first, err := v.verify(tok)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	for range 10 {
		e, err := v.verify(tok)
		if err != nil || e != first {
			t.Fatalf("repeat verify: got %p, %v, want the cached entry %p", e, err, first)
		}
	}
	if got := lookups.Load(); got != 1 {
		t.Errorf("signature checks: got %d, want 1", got)
	}
	// Another token is verified on its own.
	if _, err := v.verify(f.valid(t, member("sub", "bob"))); err != nil {
		t.Fatalf("verify bob: %v", err)
	}
	if got := lookups.Load(); got != 2 {
		t.Errorf("signature checks: got %d, want 2", got)
	}
	// A refused token is not cached.
	bad := withSig(t, tok, make([]byte, 64))
	for range 3 {
		if _, err := v.verify(bad); err == nil {
			t.Fatalf("forged token accepted")
		}
	}
	if got := lookups.Load(); got != 5 {
		t.Errorf("signature checks: got %d, want 5", got)
	}
}

func TestTokenCacheNeverPastExp(t *testing.T) {
	clock := webtest.NewClock()
	v, key, lookups := countingVerifier(t, clock, 100)
	f := &tokFixture{clock: clock, key: key}
	exp := clock.Now().Add(time.Minute)
	tok := f.valid(t, member("exp", exp.Unix()))
	if _, err := v.verify(tok); err != nil {
		t.Fatalf("verify: %v", err)
	}
	clock.Advance(59 * time.Second)
	if _, err := v.verify(tok); err != nil || lookups.Load() != 1 {
		t.Fatalf("before exp: got %v, %d checks, want nil, 1", err, lookups.Load())
	}
	if e := v.cache.get(tok, exp.Add(-time.Nanosecond)); e == nil {
		t.Errorf("cache.get a nanosecond before exp: got nil, want the entry")
	}
	if e := v.cache.get(tok, exp); e != nil {
		t.Errorf("cache.get at exp: got an entry, want nil")
	}
	// Within the leeway after exp: verified again each time, never served
	// from the cache.
	clock.Advance(10 * time.Second)
	for i := range 3 {
		if _, err := v.verify(tok); err != nil {
			t.Fatalf("within leeway: %v", err)
		}
		if got, want := lookups.Load(), int64(2+i); got != want {
			t.Errorf("signature checks: got %d, want %d", got, want)
		}
	}
	clock.Advance(30 * time.Second)
	if _, err := v.verify(tok); !errors.Is(err, ErrTokenExpired) {
		t.Errorf("past exp and leeway: got %v, want ErrTokenExpired", err)
	}
}

func TestTokenCacheBounded(t *testing.T) {
	now := time.Now()
	for _, size := range []int{1, 2, 4, 15, 16, 17, 31, 100} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			c := newTokenCache(size)
			for i := range 20 * size {
				tok := fmt.Sprintf("tok-%d", i)
				c.put(tok, &cacheEntry{exp: now.Add(time.Hour)}, now)
				if got := cacheLen(c); got > size {
					t.Fatalf("after %d puts: %d entries, want at most %d", i+1, got, size)
				}
				if c.get(tok, now) == nil {
					t.Fatalf("entry just put is missing")
				}
			}
		})
	}
	t.Run("disabled", func(t *testing.T) {
		c := newTokenCache(-1)
		c.put("tok", &cacheEntry{exp: now.Add(time.Hour)}, now)
		if c.get("tok", now) != nil || cacheLen(c) != 0 {
			t.Errorf("disabled cache holds an entry")
		}
		c.purge()
	})
	t.Run("through the bridge", func(t *testing.T) {
		f := newTokFixture(t, func(c *Config) { c.CacheSize = 4 })
		for i := range 40 {
			if _, err := f.b.verifier.verify(f.valid(t, member("sub", fmt.Sprint("user", i)))); err != nil {
				t.Fatalf("verify: %v", err)
			}
		}
		if got := cacheLen(f.b.verifier.cache); got > 4 {
			t.Errorf("entries: got %d, want at most 4", got)
		}
	})
	t.Run("bridge cache disabled", func(t *testing.T) {
		clock := webtest.NewClock()
		v, key, lookups := countingVerifier(t, clock, -1)
		tok := (&tokFixture{clock: clock, key: key}).valid(t)
		for range 3 {
			if _, err := v.verify(tok); err != nil {
				t.Fatalf("verify: %v", err)
			}
		}
		if got := lookups.Load(); got != 3 {
			t.Errorf("signature checks: got %d, want 3", got)
		}
	})
}

func TestTokenCacheEvictsExpiredFirst(t *testing.T) {
	now := time.Now()
	c := newTokenCache(2 * cacheShards) // two entries per shard
	// Three tokens of one shard.
	var toks []string
	for i := 0; len(toks) < 3; i++ {
		if tok := fmt.Sprint("t", i); c.shard(c.hash(tok)) == 0 {
			toks = append(toks, tok)
		}
	}
	c.put(toks[0], &cacheEntry{exp: now.Add(time.Second)}, now)
	c.put(toks[1], &cacheEntry{exp: now.Add(time.Hour)}, now)
	later := now.Add(2 * time.Second)
	c.put(toks[2], &cacheEntry{exp: later.Add(time.Hour)}, later)
	if c.get(toks[1], later) == nil || c.get(toks[2], later) == nil {
		t.Errorf("live entries evicted while an expired one was there")
	}
	c.purge()
	if cacheLen(c) != 0 {
		t.Errorf("purge left %d entries", cacheLen(c))
	}
}

// TestTokenCacheConcurrent runs verifications, revocations and purges in
// parallel (meant for -race).
func TestTokenCacheConcurrent(t *testing.T) {
	f := newTokFixture(t, func(c *Config) { c.CacheSize = 8 })
	var toks []string
	for i := range 16 {
		toks = append(toks, f.valid(t, member("jti", fmt.Sprint("jti-", i))))
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				tok := toks[(g+i)%len(toks)]
				_, err := f.b.verifier.verify(tok)
				if err != nil && !errors.Is(err, ErrTokenRevoked) {
					t.Errorf("verify: %v", err)
					return
				}
				switch i % 50 {
				case 7:
					f.b.Deny(Revocation{JTI: fmt.Sprint("jti-", g), Until: f.clock.Now().Add(time.Hour)})
				case 13:
					f.b.verifier.cache.purge()
				}
			}
		})
	}
	wg.Wait()
	for g := range 8 {
		if _, err := f.b.verifier.verify(toks[g]); !errors.Is(err, ErrTokenRevoked) {
			t.Errorf("token %d: got %v, want ErrTokenRevoked", g, err)
		}
	}
}

// jwsBytes, eight bytes at a time, agrees with a byte-by-byte check for
// every byte value at every position of tokens of 0 to 19 bytes.
func TestJWSBytes(t *testing.T) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
	for n := range 20 {
		base := []byte(strings.Repeat("a", n))
		if !jwsBytes(string(base)) {
			t.Fatalf("%d bytes of 'a' refused", n)
		}
		for i := range n {
			for c := range 256 {
				s := append([]byte(nil), base...)
				s[i] = byte(c)
				want := strings.IndexByte(alphabet, byte(c)) >= 0
				if got := jwsBytes(string(s)); got != want {
					t.Fatalf("jwsBytes with %q at %d of %d: got %v, want %v", byte(c), i, n, got, want)
				}
			}
		}
	}
}
