// Tests of trusted external issuers (issuers.go): an httptest IdP serves
// its JWKS and can be switched to fail, stall, rotate its keys, serve
// garbage, a huge body or an empty set; the bridge loads its keys in Run.
package bridge

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionbridge/sessionbridge/internal/webtest"
)

const (
	idpIssuer   = "https://idp.example"
	idpAudience = "idp-api"
)

// idpKeyPool holds keys generated once for every IdP test (RSA-2048
// generation is slow under -race).
var idpKeyPool struct {
	once sync.Once
	rsa  [4]*rsa.PrivateKey
	ec   [3]*ecdsa.PrivateKey
}

func idpPool(t testing.TB) {
	t.Helper()
	idpKeyPool.once.Do(func() {
		var wg sync.WaitGroup
		for i := range idpKeyPool.rsa {
			wg.Go(func() {
				k, err := rsa.GenerateKey(rand.Reader, 2048)
				if err != nil {
					panic(err)
				}
				idpKeyPool.rsa[i] = k
			})
		}
		for i := range idpKeyPool.ec {
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				panic(err)
			}
			idpKeyPool.ec[i] = k
		}
		wg.Wait()
	})
}

// idpKey is one signing key of the fake IdP.
type idpKey struct {
	kid    string
	method jwt.SigningMethod
	priv   crypto.Signer
	// jwkAlg is the alg published in the JWK; "" publishes none (the
	// bridge pins by key type).
	jwkAlg string
	use    jwkset.USE
}

// idpRSAKey returns the i-th pooled RSA key as an RS256 IdP key.
func idpRSAKey(t testing.TB, i int, kid string) *idpKey {
	idpPool(t)
	return &idpKey{kid: kid, method: jwt.SigningMethodRS256, priv: idpKeyPool.rsa[i], jwkAlg: "RS256", use: jwkset.UseSig}
}

// idpECKey returns the i-th pooled P-256 key as an ES256 IdP key.
func idpECKey(t testing.TB, i int, kid string) *idpKey {
	idpPool(t)
	return &idpKey{kid: kid, method: jwt.SigningMethodES256, priv: idpKeyPool.ec[i], jwkAlg: "ES256", use: jwkset.UseSig}
}

// jwk returns the public JWK of the key, marshalled by jwkset.
func (k *idpKey) jwk(t testing.TB) jwkset.JWKMarshal {
	t.Helper()
	j, err := jwkset.NewJWKFromKey(k.priv.Public(), jwkset.JWKOptions{
		Metadata: jwkset.JWKMetadataOptions{KID: k.kid, ALG: jwkset.ALG(k.jwkAlg), USE: k.use},
	})
	if err != nil {
		t.Fatalf("jwkset.NewJWKFromKey: %v", err)
	}
	return j.Marshal()
}

// idpJWKS renders keys as a JWK Set.
func idpJWKS(t testing.TB, keys ...*idpKey) []byte {
	t.Helper()
	set := jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{}}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.jwk(t))
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatalf("marshal JWKS: %v", err)
	}
	return b
}

// idpMode is what the fake IdP answers.
type idpMode int32

const (
	idpServe   idpMode = iota // the current key set
	idpFail                   // 500
	idpStall                  // never answers (until the client gives up)
	idpGarbage                // the bytes in garbage
	idpHuge                   // a valid JWKS of hugeKeys, padded past the cap
	idpEmpty                  // {"keys":[]}
)

// fakeIdP is an httptest IdP serving a JWKS, counting every request.
type fakeIdP struct {
	t       testing.TB
	srv     *httptest.Server
	mode    atomic.Int32
	release chan struct{}

	mu      sync.Mutex
	body    []byte // the JWKS served in idpServe
	garbage []byte // served in idpGarbage
	huge    []byte // served in idpHuge
	hits    []time.Time
}

func newFakeIdP(t testing.TB, keys ...*idpKey) *fakeIdP {
	t.Helper()
	idp := &fakeIdP{t: t, release: make(chan struct{}), garbage: []byte("<html>not json</html>")}
	idp.publish(keys...)
	idp.srv = httptest.NewServer(http.HandlerFunc(idp.serve))
	t.Cleanup(idp.srv.Close)
	t.Cleanup(func() { close(idp.release) }) // runs first: stalled handlers return
	return idp
}

func (idp *fakeIdP) url() string { return idp.srv.URL + "/.well-known/jwks.json" }

// publish replaces the key set the IdP serves (a rotation when the kids
// change).
func (idp *fakeIdP) publish(keys ...*idpKey) {
	body := idpJWKS(idp.t, keys...)
	idp.mu.Lock()
	idp.body = body
	idp.mu.Unlock()
}

func (idp *fakeIdP) set(m idpMode) { idp.mode.Store(int32(m)) }

// setHuge makes idpHuge serve a valid JWKS of keys whose first member is
// padding of size bytes, so that only a capped reader refuses it.
func (idp *fakeIdP) setHuge(size int, keys ...*idpKey) {
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(idpJWKS(idp.t, keys...), &set); err != nil {
		idp.t.Fatalf("unmarshal JWKS: %v", err)
	}
	keysJSON, _ := json.Marshal(set.Keys)
	body := `{"padding":"` + strings.Repeat("x", size) + `","keys":` + string(keysJSON) + `}`
	idp.mu.Lock()
	idp.huge = []byte(body)
	idp.mu.Unlock()
}

func (idp *fakeIdP) setGarbage(b string) {
	idp.mu.Lock()
	idp.garbage = []byte(b)
	idp.mu.Unlock()
}

// requests returns how many requests the IdP got.
func (idp *fakeIdP) requests() int {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	return len(idp.hits)
}

// hitTimes returns when the requests arrived.
func (idp *fakeIdP) hitTimes() []time.Time {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	return slices.Clone(idp.hits)
}

func (idp *fakeIdP) serve(w http.ResponseWriter, r *http.Request) {
	idp.mu.Lock()
	idp.hits = append(idp.hits, time.Now())
	body, garbage, huge := idp.body, idp.garbage, idp.huge
	idp.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch idpMode(idp.mode.Load()) {
	case idpFail:
		http.Error(w, "internal error", http.StatusInternalServerError)
	case idpStall:
		select {
		case <-r.Context().Done():
		case <-idp.release:
		}
	case idpGarbage:
		_, _ = w.Write(garbage)
	case idpHuge:
		_, _ = w.Write(huge)
	case idpEmpty:
		_, _ = w.Write([]byte(`{"keys":[]}`))
	default:
		_, _ = w.Write(body)
	}
}

// idpClaims are the claims of a token of the IdP for sub, valid for 10
// minutes, with a unique jti.
func idpClaims(sub string) *Claims {
	now := time.Now()
	return &Claims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer:    idpIssuer,
		Subject:   sub,
		Audience:  jwt.ClaimStrings{idpAudience},
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(10 * time.Minute)),
		ID:        fmt.Sprintf("idp-jti-%d", jtiSeq.Add(1)),
	}}
}

// idpToken signs a token with k (header kid = k.kid, alg = k.method);
// mod may change the claims and the header.
func idpToken(t testing.TB, k *idpKey, mod func(c *Claims, h map[string]any)) string {
	t.Helper()
	return idpSign(t, k.method, k.priv, k.kid, mod)
}

// idpSign signs idpClaims("idp-user") with method and key, kid in the
// header unless empty.
func idpSign(t testing.TB, method jwt.SigningMethod, key any, kid string, mod func(c *Claims, h map[string]any)) string {
	t.Helper()
	c := idpClaims("idp-user")
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	if mod != nil {
		mod(c, tok.Header)
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign IdP token: %v", err)
	}
	return s
}

// idpTrusted is the TrustedIssuer of idp with short test intervals; mod
// may change it.
func idpTrusted(idp *fakeIdP, mod func(*TrustedIssuer)) TrustedIssuer {
	ti := TrustedIssuer{
		Issuer:             idpIssuer,
		Audiences:          []string{idpAudience},
		JWKSURL:            idp.url(),
		Algorithms:         []string{"RS256", "ES256"},
		RefreshInterval:    100 * time.Millisecond,
		UnknownKIDInterval: 200 * time.Millisecond,
		Timeout:            300 * time.Millisecond,
		MaxBodySize:        16 << 10,
	}
	if mod != nil {
		mod(&ti)
	}
	return ti
}

// newIdPBridge returns a Bridge trusting idp (see idpTrusted), not yet
// running.
func newIdPBridge(t testing.TB, idp *fakeIdP, mod func(*TrustedIssuer)) *Bridge {
	t.Helper()
	ti := idpTrusted(idp, mod)
	return newTestBridge(t, func(c *Config) { c.TrustedIssuers = []TrustedIssuer{ti} })
}

// goRun runs b.Run in the background until the test ends.
func goRun(t testing.TB, b *Bridge) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = b.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// verifyErr verifies tok with b's verifier.
func verifyErr(b *Bridge, tok string) error {
	_, err := b.verifier.verify(tok)
	return err
}

// idpEventually polls cond every 10ms until it holds or d passes.
func idpEventually(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// waitIdPAccepted waits until a fresh token of k verifies.
func waitIdPAccepted(t testing.TB, b *Bridge, k *idpKey, d time.Duration) {
	t.Helper()
	var last error
	idpEventually(t, d, "IdP token accepted", func() bool {
		last = verifyErr(b, idpToken(t, k, nil))
		return last == nil
	})
}

// waitHits waits until the IdP has had at least n requests.
func waitHits(t testing.TB, idp *fakeIdP, n int, d time.Duration) {
	t.Helper()
	idpEventually(t, d, fmt.Sprintf("%d JWKS requests", n), func() bool { return idp.requests() >= n })
}

func TestIdPTokenAccepted(t *testing.T) {
	rs := idpRSAKey(t, 0, "rsa-1")
	ec := idpECKey(t, 0, "ec-1")
	rsNoAlg := idpRSAKey(t, 1, "rsa-noalg")
	rsNoAlg.jwkAlg = ""
	ecNoAlg := idpECKey(t, 1, "ec-noalg")
	ecNoAlg.jwkAlg = ""
	idp := newFakeIdP(t, rs, ec, rsNoAlg, ecNoAlg)
	b := newIdPBridge(t, idp, func(ti *TrustedIssuer) {
		ti.Algorithms = []string{"RS256", "PS256", "ES256"}
		ti.RefreshInterval = time.Hour
	})
	goRun(t, b)
	waitIdPAccepted(t, b, rs, 3*time.Second)

	psNoAlg := *rsNoAlg
	psNoAlg.method = jwt.SigningMethodPS256
	cases := []struct {
		name string
		tok  string
	}{
		{"RS256, alg in the JWK", idpToken(t, rs, nil)},
		{"ES256, alg in the JWK", idpToken(t, ec, nil)},
		{"RS256, JWK without alg (pinned by key type)", idpToken(t, rsNoAlg, nil)},
		{"ES256, JWK without alg (pinned by key type)", idpToken(t, ecNoAlg, nil)},
		{"PS256 by an RSA JWK without alg, PS256 allowed", idpToken(t, &psNoAlg, nil)},
		{"one of several audiences", idpToken(t, rs, func(c *Claims, _ map[string]any) {
			c.Audience = jwt.ClaimStrings{"other", idpAudience}
		})},
		{"typ JWT", idpToken(t, rs, func(_ *Claims, h map[string]any) { h["typ"] = "JWT" })},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, err := b.verifier.verify(tc.tok)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if e.claims.Issuer != idpIssuer || e.claims.Subject != "idp-user" {
				t.Errorf("claims iss %q sub %q", e.claims.Issuer, e.claims.Subject)
			}
		})
	}

	// Through the middleware: a bearer IdP token on a jwt route.
	router := newTestRouter(nil)
	router.Use(b.Middleware)
	ts := httptest.NewServer(router)
	defer ts.Close()
	resp := webtest.Do(t, ts.Client(), http.MethodGet, ts.URL+"/jwt", webtest.Bearer(idpToken(t, ec, nil)))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /jwt with an IdP token: %d %s", resp.StatusCode, resp.Body)
	}
	// The IdP's identity is its own: its sub is no local user ID.
	if id := identityOf(t, resp); id.Subject != "" || id.Source != "jwt_bearer" || !id.Has {
		t.Errorf("identity %+v, want an unlinked IdP identity (empty local subject)", id)
	}
}

// TestIdPTokenRefused: keys are bound to their issuer, algorithms pinned,
// audience checked, and nothing named by a token is fetched.
func TestIdPTokenRefused(t *testing.T) {
	rs := idpRSAKey(t, 0, "rsa-1")
	ec := idpECKey(t, 0, "ec-1")
	encKey := idpRSAKey(t, 2, "rsa-enc")
	encKey.use = jwkset.UseEnc
	idp := newFakeIdP(t, rs, ec, encKey)
	b := newIdPBridge(t, idp, func(ti *TrustedIssuer) {
		ti.Algorithms = []string{"RS256", "PS256", "ES256"}
		ti.RefreshInterval = time.Hour
		ti.UnknownKIDInterval = time.Hour
	})
	goRun(t, b)
	waitIdPAccepted(t, b, rs, 3*time.Second)
	own := b.cfg.SigningKey

	// Another server that a token points at: it must never be asked.
	var attackerHits atomic.Int64
	attackerKey := idpRSAKey(t, 3, "attacker")
	attackerJWKS := idpJWKS(t, attackerKey)
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attackerHits.Add(1)
		_, _ = w.Write(attackerJWKS)
	}))
	defer attacker.Close()

	pub := &idpKeyPool.rsa[0].PublicKey
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	jwkJSON, _ := json.Marshal(rs.jwk(t))
	ecDER, _ := x509.MarshalPKIXPublicKey(&idpKeyPool.ec[0].PublicKey)

	header := func(name string, v any) func(*Claims, map[string]any) {
		return func(_ *Claims, h map[string]any) { h[name] = v }
	}
	claims := func(f func(*Claims)) func(*Claims, map[string]any) {
		return func(c *Claims, _ map[string]any) { f(c) }
	}
	type row struct {
		name string
		tok  func(t *testing.T) string
		// noFetch: the token must not even make the bridge refetch the
		// IdP's JWKS (refused before any key lookup).
		noFetch bool
	}
	cases := []row{
		{name: "wrong audience", tok: func(t *testing.T) string {
			return idpToken(t, rs, claims(func(c *Claims) { c.Audience = jwt.ClaimStrings{"someone-else"} }))
		}},
		{name: "missing audience", tok: func(t *testing.T) string {
			return idpToken(t, rs, claims(func(c *Claims) { c.Audience = nil }))
		}},
		{name: "the bridge's own audience", tok: func(t *testing.T) string {
			return idpToken(t, rs, claims(func(c *Claims) { c.Audience = jwt.ClaimStrings{testAudience} }))
		}},
		{name: "missing exp", tok: func(t *testing.T) string {
			return idpToken(t, rs, claims(func(c *Claims) { c.ExpiresAt = nil }))
		}},
		{name: "expired", tok: func(t *testing.T) string {
			return idpToken(t, rs, claims(func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-2 * time.Minute)) }))
		}},
		{name: "nbf ahead of the leeway", tok: func(t *testing.T) string {
			return idpToken(t, rs, claims(func(c *Claims) { c.NotBefore = jwt.NewNumericDate(time.Now().Add(5 * time.Minute)) }))
		}},
		{name: "untrusted issuer", tok: func(t *testing.T) string {
			return idpToken(t, rs, claims(func(c *Claims) { c.Issuer = "https://evil.example" }))
		}},
		{name: "missing issuer", tok: func(t *testing.T) string {
			return idpToken(t, rs, claims(func(c *Claims) { c.Issuer = "" }))
		}},
		{name: "IdP key claiming the bridge's issuer", tok: func(t *testing.T) string {
			return idpToken(t, rs, claims(func(c *Claims) { c.Issuer = testIssuer; c.Audience = jwt.ClaimStrings{testAudience} }))
		}},
		{name: "IdP key claiming the bridge's issuer, no kid", tok: func(t *testing.T) string {
			return idpSign(t, jwt.SigningMethodES256, idpKeyPool.ec[0], "", func(c *Claims, _ map[string]any) {
				c.Issuer, c.Audience = testIssuer, jwt.ClaimStrings{testAudience}
			})
		}},
		{name: "IdP key claiming the bridge's issuer with the bridge's kid", tok: func(t *testing.T) string {
			return idpSign(t, jwt.SigningMethodES256, idpKeyPool.ec[0], own.KID(), func(c *Claims, _ map[string]any) {
				c.Issuer, c.Audience = testIssuer, jwt.ClaimStrings{testAudience}
			})
		}},
		{name: "bridge key claiming the IdP issuer", tok: func(t *testing.T) string {
			return idpSign(t, own.method, own.sign, own.KID(), nil)
		}},
		{name: "bridge key claiming the IdP issuer with the IdP's kid", tok: func(t *testing.T) string {
			return idpSign(t, own.method, own.sign, ec.kid, nil)
		}},
		{name: "HS256 keyed with the IdP's public key (PEM)", noFetch: true, tok: func(t *testing.T) string {
			return idpSign(t, jwt.SigningMethodHS256, pemKey, rs.kid, nil)
		}},
		{name: "HS256 keyed with the IdP's public key (DER)", noFetch: true, tok: func(t *testing.T) string {
			return idpSign(t, jwt.SigningMethodHS256, der, rs.kid, nil)
		}},
		{name: "HS256 keyed with the IdP's public key (JWK)", noFetch: true, tok: func(t *testing.T) string {
			return idpSign(t, jwt.SigningMethodHS256, jwkJSON, rs.kid, nil)
		}},
		{name: "HS256 keyed with the IdP's EC public key (DER)", noFetch: true, tok: func(t *testing.T) string {
			return idpSign(t, jwt.SigningMethodHS256, ecDER, ec.kid, nil)
		}},
		{name: "PS256 by a key whose JWK pins RS256", tok: func(t *testing.T) string {
			return idpSign(t, jwt.SigningMethodPS256, idpKeyPool.rsa[0], rs.kid, nil)
		}},
		{name: "RS256 header on the EC key's kid", tok: func(t *testing.T) string {
			return idpSign(t, jwt.SigningMethodRS256, idpKeyPool.rsa[0], ec.kid, nil)
		}},
		{name: "RS384, not an allowed algorithm", noFetch: true, tok: func(t *testing.T) string {
			return idpSign(t, jwt.SigningMethodRS384, idpKeyPool.rsa[0], rs.kid, nil)
		}},
		{name: "alg none", noFetch: true, tok: func(t *testing.T) string {
			return idpSign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, rs.kid, nil)
		}},
		{name: "key published for encryption", tok: func(t *testing.T) string {
			return idpToken(t, encKey, nil)
		}},
		{name: "no kid", tok: func(t *testing.T) string {
			return idpSign(t, jwt.SigningMethodRS256, idpKeyPool.rsa[0], "", nil)
		}},
		{name: "signed by another RSA key under the IdP's kid", tok: func(t *testing.T) string {
			return idpSign(t, jwt.SigningMethodRS256, idpKeyPool.rsa[3], rs.kid, nil)
		}},
		{name: "jku to another server", noFetch: true, tok: func(t *testing.T) string {
			return idpToken(t, attackerKey, header("jku", attacker.URL+"/jwks.json"))
		}},
		{name: "jku to another server, signed by the IdP key", noFetch: true, tok: func(t *testing.T) string {
			return idpToken(t, rs, header("jku", attacker.URL+"/jwks.json"))
		}},
		{name: "x5u to another server", noFetch: true, tok: func(t *testing.T) string {
			return idpToken(t, attackerKey, header("x5u", attacker.URL+"/cert.pem"))
		}},
		{name: "x5u to another server, signed by the IdP key", noFetch: true, tok: func(t *testing.T) string {
			return idpToken(t, rs, header("x5u", attacker.URL+"/cert.pem"))
		}},
		{name: "embedded jwk", noFetch: true, tok: func(t *testing.T) string {
			return idpToken(t, attackerKey, header("jwk", attackerKey.jwk(t)))
		}},
		{name: "crit", noFetch: true, tok: func(t *testing.T) string {
			return idpToken(t, rs, header("crit", []string{"exp"}))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := idp.requests()
			tok := tc.tok(t)
			start := time.Now()
			err := verifyErr(b, tok)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrInvalidToken) && !errors.Is(err, ErrTokenExpired) {
				t.Errorf("error %v wraps neither ErrInvalidToken nor ErrTokenExpired", err)
			}
			if d := time.Since(start); d > unknownKIDWait+300*time.Millisecond+500*time.Millisecond {
				t.Errorf("refusal took %v", d)
			}
			if tc.noFetch {
				if got := idp.requests() - before; got != 0 {
					t.Errorf("the IdP got %d JWKS requests, want 0", got)
				}
			}
			// The refusal is not cached: a second try is refused too.
			if verifyErr(b, tok) == nil {
				t.Error("accepted on the second try")
			}
		})
	}
	if n := attackerHits.Load(); n != 0 {
		t.Errorf("the server named by jku/x5u got %d requests, want 0", n)
	}
	// The bridge's own tokens and the IdP's are still fine.
	if err := verifyErr(b, mintTestToken(t, b, "own", nil)); err != nil {
		t.Errorf("own token refused: %v", err)
	}
	if err := verifyErr(b, idpToken(t, ec, nil)); err != nil {
		t.Errorf("IdP token refused: %v", err)
	}
}

// TestIdPHS256OwnKeyCannotVerifyIdP: with an HS256 bridge (so HS256 is a
// valid method for the parser), an HS256 token naming the IdP issuer and
// keyed with the IdP's public key is still refused.
func TestIdPHS256OwnKeyCannotVerifyIdP(t *testing.T) {
	rs := idpRSAKey(t, 0, "rsa-1")
	idp := newFakeIdP(t, rs)
	secret := []byte("0123456789abcdef0123456789abcdef-hs256")
	hk, err := NewKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	ti := idpTrusted(idp, func(ti *TrustedIssuer) { ti.RefreshInterval = time.Hour })
	b := newTestBridge(t, func(c *Config) { c.SigningKey = hk; c.TrustedIssuers = []TrustedIssuer{ti} })
	goRun(t, b)
	waitIdPAccepted(t, b, rs, 3*time.Second)
	der, _ := x509.MarshalPKIXPublicKey(&idpKeyPool.rsa[0].PublicKey)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	for name, key := range map[string][]byte{"PEM": pemKey, "DER": der, "bridge secret": secret} {
		for _, kid := range []string{rs.kid, hk.KID(), ""} {
			tok := idpSign(t, jwt.SigningMethodHS256, key, kid, nil)
			if err := verifyErr(b, tok); err == nil {
				t.Errorf("HS256 token for the IdP keyed with %s, kid %q: accepted", name, kid)
			}
		}
	}
	if err := verifyErr(b, mintTestToken(t, b, "own", nil)); err != nil {
		t.Errorf("own HS256 token refused: %v", err)
	}
}

// TestIdPDownAtStart: the process starts while the IdP is down; IdP
// tokens are refused (quickly) and own tokens accepted meanwhile; once the
// IdP answers, its tokens are accepted.
func TestIdPDownAtStart(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode idpMode
		// unknownKID: recovery through the unknown-kid refetch only (no
		// background refresh).
		unknownKID bool
	}{
		{name: "500", mode: idpFail},
		{name: "stalled", mode: idpStall},
		{name: "garbage", mode: idpGarbage},
		{name: "empty set", mode: idpEmpty},
		{name: "huge body", mode: idpHuge},
		{name: "500, recovered by unknown-kid refetch", mode: idpFail, unknownKID: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rs := idpRSAKey(t, 0, "rsa-1")
			idp := newFakeIdP(t, rs)
			idp.setHuge(64<<10, rs)
			idp.set(tc.mode)
			b := newIdPBridge(t, idp, func(ti *TrustedIssuer) {
				if tc.unknownKID {
					ti.RefreshInterval = time.Hour
				}
			})
			start := time.Now()
			goRun(t, b)
			if d := time.Since(start); d > 250*time.Millisecond {
				t.Errorf("Run blocked the caller for %v", d)
			}
			own := mintTestToken(t, b, "own", nil)
			deadline := time.Now().Add(600 * time.Millisecond)
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := verifyErr(b, own); err != nil {
					t.Fatalf("own token refused while the IdP is down: %v", err)
				}
				if d := time.Since(t0); d > 250*time.Millisecond {
					t.Errorf("own token took %v while the IdP is down", d)
				}
				t0 = time.Now()
				if err := verifyErr(b, idpToken(t, rs, nil)); err == nil {
					t.Fatal("IdP token accepted while the IdP is down")
				}
				if d := time.Since(t0); d > unknownKIDWait+b.remote[0].cfg.Timeout+500*time.Millisecond {
					t.Errorf("IdP token refusal took %v", d)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if idp.requests() == 0 {
				t.Fatal("the bridge never asked the IdP")
			}
			idp.set(idpServe)
			waitIdPAccepted(t, b, rs, 3*time.Second)
			if !strings.Contains(logsOf(b).String(), "JWKS refresh failed") {
				t.Errorf("no log of the failed fetch:\n%s", logsOf(b))
			}
		})
	}
}

// TestIdPRefreshKeepsLastGoodKeys: a refresh that fails, stalls, returns
// garbage, an oversized body or no usable key keeps the keys loaded
// before; a later good refresh still replaces them.
func TestIdPRefreshKeepsLastGoodKeys(t *testing.T) {
	const maxBody = 16 << 10
	for _, tc := range []struct {
		name    string
		mode    idpMode
		garbage string
		log     string // in the refresh failure's log line
	}{
		{name: "500", mode: idpFail, log: "invalid HTTP status code"},
		{name: "stalled", mode: idpStall, log: "JWKS refresh failed"},
		{name: "not JSON", mode: idpGarbage, garbage: "<html>oops</html>", log: "decode"},
		{name: "truncated JSON", mode: idpGarbage, garbage: `{"keys":[{"kty":"RSA","kid":"x"`, log: "decode"},
		{name: "keys not an array", mode: idpGarbage, garbage: `{"keys":"none"}`, log: "decode"},
		{name: "invalid key", mode: idpGarbage, garbage: `{"keys":[{"kty":"RSA","kid":"bad","n":"!!!","e":"AQAB"}]}`, log: "JWK"},
		{name: "only unsupported keys", mode: idpGarbage, garbage: `{"keys":[{"kty":"OKP","crv":"X448","kid":"x448","x":"AAAA"}]}`, log: "no usable key"},
		{name: "JSON null", mode: idpGarbage, garbage: `null`, log: "no usable key"},
		{name: "empty set", mode: idpEmpty, log: "no usable key"},
		{name: "huge body", mode: idpHuge, log: "larger than the cap"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k1 := idpRSAKey(t, 0, "rsa-1")
			k2 := idpECKey(t, 1, "ec-2")
			idp := newFakeIdP(t, k1)
			// The oversized body holds a valid JWKS of another key: were
			// it read past the cap, k2 would replace k1.
			idp.setHuge(4*maxBody, k2)
			idp.setGarbage(tc.garbage)
			b := newIdPBridge(t, idp, func(ti *TrustedIssuer) {
				ti.MaxBodySize = maxBody
				ti.UnknownKIDInterval = time.Hour // only the background refresh
			})
			goRun(t, b)
			waitIdPAccepted(t, b, k1, 3*time.Second)

			idp.set(tc.mode)
			waitHits(t, idp, idp.requests()+3, 5*time.Second) // three failed refreshes
			if err := verifyErr(b, idpToken(t, k1, nil)); err != nil {
				t.Fatalf("last good key dropped after a %s refresh: %v", tc.name, err)
			}
			if err := verifyErr(b, idpToken(t, k2, nil)); err == nil {
				t.Fatal("a key from the refused refresh was accepted")
			}
			if !strings.Contains(logsOf(b).String(), tc.log) {
				t.Errorf("logs lack %q:\n%s", tc.log, logsOf(b))
			}

			// The IdP rotates: the next good refresh replaces the keys.
			idp.publish(k2)
			idp.set(idpServe)
			waitIdPAccepted(t, b, k2, 3*time.Second)
			idpEventually(t, 3*time.Second, "old key dropped", func() bool {
				return verifyErr(b, idpToken(t, k1, nil)) != nil
			})
		})
	}
}

// TestIdPKeyRotation: a token under a new kid makes the bridge refetch the
// JWKS at once (without waiting for the background refresh); the old key
// goes with the refetch.
func TestIdPKeyRotation(t *testing.T) {
	k1 := idpRSAKey(t, 0, "rsa-1")
	k2 := idpRSAKey(t, 1, "rsa-2")
	k3 := idpECKey(t, 0, "ec-3")
	idp := newFakeIdP(t, k1)
	b := newIdPBridge(t, idp, func(ti *TrustedIssuer) {
		ti.RefreshInterval = time.Hour
		ti.UnknownKIDInterval = 300 * time.Millisecond
	})
	goRun(t, b)
	waitIdPAccepted(t, b, k1, 3*time.Second)
	cached := idpToken(t, k1, nil)
	if err := verifyErr(b, cached); err != nil {
		t.Fatal(err)
	}

	for i, next := range []*idpKey{k2, k3} {
		before := idp.requests()
		idp.publish(next)
		start := time.Now()
		if err := verifyErr(b, idpToken(t, next, nil)); err != nil {
			t.Fatalf("rotation %d: token under the new kid refused: %v", i+1, err)
		}
		if d := time.Since(start); d > unknownKIDWait+300*time.Millisecond {
			t.Errorf("rotation %d: the refetch took %v", i+1, d)
		}
		if got := idp.requests() - before; got != 1 {
			t.Errorf("rotation %d: %d JWKS requests, want 1", i+1, got)
		}
		// The previous key is gone with the refetch: a fresh token of it,
		// and the token verified (and cached) before, are refused.
		if err := verifyErr(b, idpToken(t, k1, nil)); err == nil {
			t.Errorf("rotation %d: token of the retired key accepted", i+1)
		}
		if err := verifyErr(b, cached); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("rotation %d: a token of the retired key verified before, cached: %v, want ErrInvalidToken", i+1, err)
		}
		time.Sleep(350 * time.Millisecond) // next unknown-kid window
	}
}

// TestIdPUnknownKIDFlood: tokens under unknown kids trigger at most one
// JWKS refetch per UnknownKIDInterval, and no request waits longer than
// about a second plus the fetch timeout, even when the IdP stalls.
func TestIdPUnknownKIDFlood(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
		flood    time.Duration // how long the flood lasts
		mode     idpMode
	}{
		{name: "long window", interval: time.Hour, flood: 300 * time.Millisecond, mode: idpServe},
		{name: "long window, IdP stalls", interval: time.Hour, flood: 300 * time.Millisecond, mode: idpStall},
		{name: "long window, IdP fails", interval: time.Hour, flood: 300 * time.Millisecond, mode: idpFail},
		{name: "short window", interval: 250 * time.Millisecond, flood: 1200 * time.Millisecond, mode: idpServe},
		{name: "short window, IdP stalls", interval: 250 * time.Millisecond, flood: 1200 * time.Millisecond, mode: idpStall},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k1 := idpECKey(t, 0, "ec-1")
			idp := newFakeIdP(t, k1)
			const timeout = 300 * time.Millisecond
			b := newIdPBridge(t, idp, func(ti *TrustedIssuer) {
				ti.RefreshInterval = time.Hour
				ti.UnknownKIDInterval = tc.interval
				ti.Timeout = timeout
			})
			goRun(t, b)
			waitIdPAccepted(t, b, k1, 3*time.Second)
			idp.set(tc.mode)
			before := idp.requests()

			// The flood is paced (this machine may have two cores, and a
			// CPU starved by the test itself would bound nothing) and its
			// tokens are signed beforehand; a refused token is never
			// cached, so each request looks its kid up again.
			toks := make([]string, 64)
			for i := range toks {
				toks[i] = idpToken(t, k1, func(_ *Claims, h map[string]any) { h["kid"] = fmt.Sprintf("unknown-%d", i) })
			}
			var (
				wg       sync.WaitGroup
				mu       sync.Mutex
				worst    time.Duration
				accepted atomic.Int64
				sent     atomic.Int64
			)
			start := time.Now()
			stop := start.Add(tc.flood)
			for g := range 16 {
				wg.Go(func() {
					for i := g; time.Now().Before(stop); i++ {
						t0 := time.Now()
						if verifyErr(b, toks[i%len(toks)]) == nil {
							accepted.Add(1)
						}
						d := time.Since(t0)
						sent.Add(1)
						mu.Lock()
						worst = max(worst, d)
						mu.Unlock()
						time.Sleep(2 * time.Millisecond)
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			if n := accepted.Load(); n != 0 {
				t.Errorf("%d tokens under unknown kids accepted", n)
			}
			bound := unknownKIDWait + timeout
			if worst > bound+500*time.Millisecond {
				t.Errorf("a request waited %v, bound %v", worst, bound)
			}
			hits := idp.hitTimes()[before:]
			allowed := 1 + int(elapsed/tc.interval)
			if len(hits) > allowed {
				t.Errorf("%d refetches in %v for %d requests, at most %d allowed (one per %v)",
					len(hits), elapsed, sent.Load(), allowed, tc.interval)
			}
			if len(hits) == 0 {
				t.Error("no refetch at all for an unknown kid")
			}
			// The limiter grants the k-th refetch k windows after the
			// first at the earliest; a request may start late (a busy
			// CPU), never early: one window is allowed for the first
			// one's lateness. (Without the limiter, the flood would
			// refetch hundreds of times.)
			for k := 1; k < len(hits); k++ {
				if since := hits[k].Sub(hits[0]); since < time.Duration(k-1)*tc.interval {
					t.Errorf("refetch %d only %v after the first (window %v)", k, since, tc.interval)
				}
			}
			t.Logf("%d requests, %d refetches in %v, worst wait %v", sent.Load(), len(hits), elapsed, worst)
			// The known key still works, at once.
			t0 := time.Now()
			if err := verifyErr(b, idpToken(t, k1, nil)); err != nil {
				t.Errorf("known key refused after the flood: %v", err)
			}
			if d := time.Since(t0); d > 250*time.Millisecond {
				t.Errorf("known key took %v after the flood", d)
			}
		})
	}
}

// TestIdPPrivateKeyInJWKS: a JWKS that publishes private key material is
// not trusted for that key.
func TestIdPPrivateKeyInJWKS(t *testing.T) {
	good := idpECKey(t, 0, "ec-good")
	leaked := idpECKey(t, 1, "ec-leaked")
	idp := newFakeIdP(t, good)
	j, err := jwkset.NewJWKFromKey(idpKeyPool.ec[1], jwkset.JWKOptions{
		Marshal:  jwkset.JWKMarshalOptions{Private: true},
		Metadata: jwkset.JWKMetadataOptions{KID: leaked.kid, ALG: jwkset.AlgES256, USE: jwkset.UseSig},
	})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{good.jwk(t), j.Marshal()}})
	if !strings.Contains(string(body), `"d":`) {
		t.Fatalf("JWKS lacks the private member: %s", body)
	}
	idp.setGarbage(string(body))
	idp.set(idpGarbage)
	b := newIdPBridge(t, idp, nil)
	goRun(t, b)
	waitIdPAccepted(t, b, good, 3*time.Second)
	if err := verifyErr(b, idpToken(t, leaked, nil)); err == nil {
		t.Error("token signed by a key published with its private part: accepted")
	}
}

func TestTrustedIssuerConfig(t *testing.T) {
	base := func() TrustedIssuer {
		return TrustedIssuer{Issuer: idpIssuer, Audiences: []string{idpAudience}, JWKSURL: "https://idp.example/.well-known/jwks.json"}
	}
	for _, tc := range []struct {
		name string
		mod  func(*TrustedIssuer)
		want string // in the error; "" = valid
	}{
		{name: "valid https", mod: func(*TrustedIssuer) {}},
		{name: "http on 127.0.0.1", mod: func(ti *TrustedIssuer) { ti.JWKSURL = "http://127.0.0.1:8080/jwks" }},
		{name: "http on localhost", mod: func(ti *TrustedIssuer) { ti.JWKSURL = "http://localhost/jwks" }},
		{name: "http on [::1]", mod: func(ti *TrustedIssuer) { ti.JWKSURL = "http://[::1]:9/jwks" }},
		{name: "http to a remote host", mod: func(ti *TrustedIssuer) { ti.JWKSURL = "http://idp.example/jwks" }, want: "JWKSURL"},
		{name: "http to a host named like loopback", mod: func(ti *TrustedIssuer) { ti.JWKSURL = "http://127.0.0.1.evil.example/jwks" }, want: "JWKSURL"},
		{name: "file URL", mod: func(ti *TrustedIssuer) { ti.JWKSURL = "file:///etc/jwks.json" }, want: "JWKSURL"},
		{name: "no URL", mod: func(ti *TrustedIssuer) { ti.JWKSURL = "" }, want: "JWKSURL"},
		{name: "no issuer", mod: func(ti *TrustedIssuer) { ti.Issuer = "" }, want: "Issuer"},
		{name: "issuer with a space", mod: func(ti *TrustedIssuer) { ti.Issuer = "https://idp.example/a b" }, want: "without spaces"},
		{name: "no audience", mod: func(ti *TrustedIssuer) { ti.Audiences = nil }, want: "Audiences"},
		{name: "HS256", mod: func(ti *TrustedIssuer) { ti.Algorithms = []string{"HS256"} }, want: "HS256"},
		{name: "none", mod: func(ti *TrustedIssuer) { ti.Algorithms = []string{"RS256", "none"} }, want: "none"},
		{name: "the bridge's own issuer", mod: func(ti *TrustedIssuer) { ti.Issuer = testIssuer }, want: "named twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ti := base()
			tc.mod(&ti)
			cfg := Config{SigningKey: newTestKey(t), Issuer: testIssuer, Audience: testAudience, TrustedIssuers: []TrustedIssuer{ti}}
			b, err := New(cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tc.want != "" && err == nil:
				t.Fatal("New accepted the configuration")
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q does not name %q", err, tc.want)
			}
			if err != nil {
				return
			}
			got := b.remote[0].cfg
			if !slices.Equal(got.Algorithms, []string{"RS256", "ES256"}) || got.RefreshInterval != DefaultJWKSRefreshInterval ||
				got.UnknownKIDInterval != DefaultUnknownKIDInterval || got.Timeout != DefaultJWKSTimeout ||
				got.MaxBodySize != DefaultJWKSMaxBody || got.HTTPClient == nil {
				t.Errorf("defaults not filled: %+v", got)
			}
		})
	}
	// The bridge's own issuer has no space either (revocations are keyed
	// "issuer sub").
	if _, err := New(Config{SigningKey: newTestKey(t), Issuer: "app x", Audience: testAudience}); err == nil || !strings.Contains(err.Error(), "without spaces") {
		t.Errorf("Config.Issuer with a space: %v", err)
	}
	// Two trusted issuers with the same name.
	ti := base()
	_, err := New(Config{SigningKey: newTestKey(t), Issuer: testIssuer, Audience: testAudience, TrustedIssuers: []TrustedIssuer{ti, ti}})
	if err == nil || !strings.Contains(err.Error(), "named twice") {
		t.Errorf("duplicate issuer: %v", err)
	}
}

// TestIdPBodyCap: the cap is enforced while reading, also for a body that
// never ends.
func TestIdPBodyCap(t *testing.T) {
	for _, tc := range []struct {
		name    string
		size    int
		max     int64
		wantErr bool
	}{
		{"under the cap", 100, 1000, false},
		{"exactly the cap", 1000, 1000, false},
		{"one byte over", 1001, 1000, true},
		{"far over", 1 << 20, 1000, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = w.Write([]byte(strings.Repeat("x", tc.size)))
			}))
			defer srv.Close()
			c := &http.Client{Transport: cappedTransport{base: http.DefaultTransport, max: tc.max}}
			resp, err := c.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			buf := make([]byte, 0, tc.size)
			var readErr error
			for {
				p := make([]byte, 4096)
				n, err := resp.Body.Read(p)
				buf = append(buf, p[:n]...)
				if err != nil {
					if !errors.Is(err, io.EOF) {
						readErr = err
					}
					break
				}
			}
			if tc.wantErr != (readErr != nil) {
				t.Fatalf("read error %v, want error %v", readErr, tc.wantErr)
			}
			if int64(len(buf)) > tc.max {
				t.Errorf("read %d bytes past a cap of %d", len(buf), tc.max)
			}
			if !tc.wantErr && len(buf) != tc.size {
				t.Errorf("read %d bytes, want %d", len(buf), tc.size)
			}
		})
	}
	// An endless body: the fetch fails once the cap is reached, long
	// before the timeout.
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("x", 4096))
		_, _ = w.Write([]byte(`{"keys":[],"padding":"`))
		for {
			select {
			case <-stop:
				return
			case <-r.Context().Done():
				return
			default:
			}
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	defer close(stop)
	c := &http.Client{Timeout: 5 * time.Second, Transport: cappedTransport{base: http.DefaultTransport, max: 64 << 10}}
	start := time.Now()
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	err = json.NewDecoder(resp.Body).Decode(&v)
	resp.Body.Close()
	if err == nil || !strings.Contains(err.Error(), "cap") {
		t.Errorf("endless body: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("endless body read for %v", d)
	}
}
