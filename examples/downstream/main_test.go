package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/mux"
	"github.com/gorilla/sessions"

	"github.com/sessionbridge/sessionbridge/bridge"
)

const (
	issuer   = "https://monolith.example"
	audience = "app"
	hashKey  = "downstream-example-test-hash-key-32+"
	sidKey   = "downstream-example-test-sid-key-32+"
)

// whoamiAnswer is the downstream's /api/whoami body.
type whoamiAnswer struct {
	Sub       string    `json:"sub"`
	Name      string    `json:"name"`
	Roles     []string  `json:"roles"`
	ExpiresAt time.Time `json:"expires_at"`
}

// reportAnswer is the monolith's /api/report body: how the monolith saw
// the caller, and what the downstream answered it.
type reportAnswer struct {
	AuthSource       string       `json:"auth_source"`
	DownstreamStatus int          `json:"downstream_status"`
	Downstream       whoamiAnswer `json:"downstream"`
}

// newMonolith returns a bridge-backed monolith: a legacy login on a cookie
// store, the JWKS, and two routes that call the downstream service through
// b.Transport with the request's context, /api/report in dual mode and
// /legacy/report in legacy mode.
func newMonolith(t *testing.T, key *bridge.Key, downstreamURL string) http.Handler {
	t.Helper()
	store := sessions.NewCookieStore([]byte(hashKey))
	b, err := bridge.New(bridge.Config{
		Sessions:           bridge.StoreSource(store, "session"),
		SIDKey:             []byte(sidKey),
		SigningKey:         key,
		Issuer:             issuer,
		Audience:           audience,
		Routes:             bridge.Routes{"/api/report": bridge.Dual},
		InsecureDevCookies: true, // plain http in the test
	})
	if err != nil {
		t.Fatal(err)
	}
	// One client for the app, whose transport carries the caller's JWT to
	// the downstream's host, and to no other.
	du, err := url.Parse(downstreamURL)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: b.Transport(nil, du.Host), Timeout: 10 * time.Second}
	report := func(w http.ResponseWriter, r *http.Request) {
		var out reportAnswer
		out.AuthSource = bridge.SourceAnonymous.String()
		if id, ok := bridge.IdentityFrom(r.Context()); ok {
			out.AuthSource = id.Source().String()
		}
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, downstreamURL+"/api/whoami", nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, "downstream: "+err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		out.DownstreamStatus = resp.StatusCode
		if resp.StatusCode == http.StatusOK {
			_ = json.NewDecoder(resp.Body).Decode(&out.Downstream)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	}

	r := mux.NewRouter()
	r.Handle("/.well-known/jwks.json", b.JWKSHandler())
	r.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		s, _ := store.New(r, "session")
		s.Values["user_id"] = "1"
		s.Values["username"] = "alice"
		s.Values["roles"] = []string{"user"}
		if err := s.Save(r, w); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}).Methods(http.MethodPost)
	r.HandleFunc("/api/report", report)
	r.HandleFunc("/legacy/report", report)
	r.Use(b.Middleware)
	return r
}

// setup starts the monolith and the downstream service, which knows only
// the monolith's JWKS URL, issuer and audience. It returns the base URLs
// and the monolith's private key (for tokens with chosen claims).
func setup(t *testing.T) (monolithURL, downstreamURL string, priv *ecdsa.PrivateKey, key *bridge.Key) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err = bridge.NewKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	// The downstream's listener first, so the monolith knows its URL.
	ds := httptest.NewUnstartedServer(nil)
	downstreamURL = "http://" + ds.Listener.Addr().String()
	mono := httptest.NewServer(newMonolith(t, key, downstreamURL))
	t.Cleanup(mono.Close)

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // stops the JWKS refresh
	v, err := newVerifier(ctx, config{JWKSURL: mono.URL + "/.well-known/jwks.json", Issuer: issuer, Audience: audience})
	if err != nil {
		t.Fatal(err)
	}
	ds.Config.Handler = newServer(v)
	ds.Start()
	t.Cleanup(ds.Close)
	return mono.URL, downstreamURL, priv, key
}

func getJSON(t *testing.T, c *http.Client, u, bearer string, out any) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

// TestPropagation: the monolith calls the downstream on behalf of a session
// user (legacy route: a short-lived token is minted for the call), of the
// same user being converted (dual route), then by the JWT cookie; the
// downstream verifies each token through the JWKS alone.
func TestPropagation(t *testing.T) {
	monoURL, _, _, _ := setup(t)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}

	resp, err := c.Post(monoURL+"/login", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	tests := []struct {
		path       string
		wantSource string
		maxTTL     time.Duration // of the token the downstream saw
	}{
		{"/legacy/report", "session", bridge.DownstreamTokenTTL},
		{"/api/report", "session", bridge.DefaultTokenTTL}, // converted here
		{"/api/report", "jwt_cookie", bridge.DefaultTokenTTL},
	}
	for _, tt := range tests {
		var got reportAnswer
		start := time.Now()
		if code := getJSON(t, c, monoURL+tt.path, "", &got); code != http.StatusOK {
			t.Fatalf("GET %s: got %d, want 200", tt.path, code)
		}
		if got.AuthSource != tt.wantSource || got.DownstreamStatus != http.StatusOK || got.Downstream.Sub != "1" || got.Downstream.Name != "alice" {
			t.Fatalf("GET %s: got %+v, want source %s and the downstream's 200 for sub 1", tt.path, got, tt.wantSource)
		}
		if ttl := got.Downstream.ExpiresAt.Sub(start); ttl > tt.maxTTL+time.Second || ttl <= 0 {
			t.Errorf("GET %s: downstream token lives %v, want at most %v", tt.path, ttl, tt.maxTTL)
		}
	}
	u, _ := url.Parse(monoURL)
	var hasToken bool
	for _, ck := range jar.Cookies(u) {
		hasToken = hasToken || ck.Name == "id_token"
	}
	if !hasToken {
		t.Error("no id_token cookie after the dual route")
	}

	// Anonymous on the legacy route: nothing to propagate, the downstream
	// refuses.
	var got reportAnswer
	if code := getJSON(t, http.DefaultClient, monoURL+"/legacy/report", "", &got); code != http.StatusOK || got.DownstreamStatus != http.StatusUnauthorized {
		t.Errorf("anonymous call: got %d %+v, want the downstream's 401", code, got)
	}
}

// mintBySession mints a token through the bridge's public API: a legacy
// session converted on a dual route, read from the Set-Cookie.
func mintBySession(t *testing.T, cfg bridge.Config) string {
	t.Helper()
	store := sessions.NewCookieStore([]byte(hashKey))
	cfg.Sessions = bridge.StoreSource(store, "session")
	cfg.SIDKey = []byte(sidKey)
	cfg.Routes = bridge.Routes{"/mint": bridge.Dual}
	b, err := bridge.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := mux.NewRouter()
	r.HandleFunc("/mint", func(http.ResponseWriter, *http.Request) {})
	r.Use(b.Middleware)

	login := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/login", nil)
	s, _ := store.New(req, "session")
	s.Values["user_id"] = "1"
	if err := s.Save(req, login); err != nil {
		t.Fatal(err)
	}
	req = httptest.NewRequest(http.MethodGet, "/mint", nil)
	for _, ck := range login.Result().Cookies() {
		req.AddCookie(ck)
	}
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	for _, ck := range w.Result().Cookies() {
		if ck.Name == bridge.DefaultCookieName {
			return ck.Value
		}
	}
	t.Fatalf("no %s cookie minted (status %d)", bridge.DefaultCookieName, w.Code)
	return ""
}

// sign signs claims with alg and key, with the header's kid set.
func sign(t *testing.T, m jwt.SigningMethod, kid string, c jwt.Claims, k any) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tamper changes the token's sub without re-signing it.
func tamper(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(payload), `"sub":"1"`, `"sub":"2"`, 1)
	if changed == string(payload) {
		t.Fatalf("no sub 1 in %s", payload)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(changed))
	return strings.Join(parts, ".")
}

// TestVerification calls the downstream directly with the monolith's
// tokens and with tokens it must refuse.
func TestVerification(t *testing.T) {
	_, dsURL, priv, key := setup(t)
	attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	attackerKey, err := bridge.NewKey(attacker)
	if err != nil {
		t.Fatal(err)
	}
	base := bridge.Config{SigningKey: key, Issuer: issuer, Audience: audience}
	with := func(f func(*bridge.Config)) bridge.Config { c := base; f(&c); return c }
	now := time.Now()
	claimsWith := func(f func(*jwt.RegisteredClaims)) jwt.Claims {
		c := jwt.RegisteredClaims{
			Subject: "1", Issuer: issuer, Audience: jwt.ClaimStrings{audience},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute)),
		}
		f(&c)
		return c
	}
	good := mintBySession(t, base)

	tests := []struct {
		name  string
		token string
		want  int
	}{
		{"minted by the monolith", good, http.StatusOK},
		{"signed with the monolith's key", sign(t, jwt.SigningMethodES256, key.KID(), claimsWith(func(*jwt.RegisteredClaims) {}), priv), http.StatusOK},
		{"no token", "", http.StatusUnauthorized},
		{"tampered", tamper(t, good), http.StatusUnauthorized},
		{"forged: another key", mintBySession(t, with(func(c *bridge.Config) { c.SigningKey = attackerKey })), http.StatusUnauthorized},
		{"forged: another key under the monolith's kid", sign(t, jwt.SigningMethodES256, key.KID(), claimsWith(func(*jwt.RegisteredClaims) {}), attacker), http.StatusUnauthorized},
		{"expired", mintBySession(t, with(func(c *bridge.Config) { c.Now = func() time.Time { return time.Now().Add(-time.Hour) } })), http.StatusUnauthorized},
		{"other audience", mintBySession(t, with(func(c *bridge.Config) { c.Audience = "billing" })), http.StatusUnauthorized},
		{"other issuer", mintBySession(t, with(func(c *bridge.Config) { c.Issuer = "https://evil.example" })), http.StatusUnauthorized},
		{"no exp", sign(t, jwt.SigningMethodES256, key.KID(), claimsWith(func(c *jwt.RegisteredClaims) { c.ExpiresAt = nil }), priv), http.StatusUnauthorized},
		{"no aud", sign(t, jwt.SigningMethodES256, key.KID(), claimsWith(func(c *jwt.RegisteredClaims) { c.Audience = nil }), priv), http.StatusUnauthorized},
		{"alg none", sign(t, jwt.SigningMethodNone, key.KID(), claimsWith(func(*jwt.RegisteredClaims) {}), jwt.UnsafeAllowNoneSignatureType), http.StatusUnauthorized},
		{"alg HS256", sign(t, jwt.SigningMethodHS256, key.KID(), claimsWith(func(*jwt.RegisteredClaims) {}), []byte("a-shared-secret-the-downstream-never-accepts")), http.StatusUnauthorized},
		{"oversized", good + strings.Repeat("A", maxTokenSize), http.StatusUnauthorized},
	}
	c := &http.Client{Timeout: 10 * time.Second}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got whoamiAnswer
			code := getJSON(t, c, dsURL+"/api/whoami", tt.token, &got)
			if code != tt.want {
				t.Fatalf("got %d, want %d", code, tt.want)
			}
			if code == http.StatusOK && got.Sub != "1" {
				t.Errorf("sub: got %q, want %q", got.Sub, "1")
			}
		})
	}
}

// TestAlgorithms: a monolith signing with EdDSA or RS256 instead of the
// default ES256 is verified the same way.
func TestAlgorithms(t *testing.T) {
	_, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaPriv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, priv := range []any{edPriv, rsaPriv} {
		key, err := bridge.NewKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(key.Algorithm(), func(t *testing.T) {
			b, err := bridge.New(bridge.Config{SigningKey: key, Issuer: issuer, Audience: audience})
			if err != nil {
				t.Fatal(err)
			}
			jwks := httptest.NewServer(b.JWKSHandler())
			defer jwks.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			v, err := newVerifier(ctx, config{JWKSURL: jwks.URL, Issuer: issuer, Audience: audience})
			if err != nil {
				t.Fatal(err)
			}
			tok := mintBySession(t, bridge.Config{SigningKey: key, Issuer: issuer, Audience: audience})
			c, err := v.verify(ctx, tok)
			if err != nil || c.Subject != "1" {
				t.Fatalf("got %v, %v; want sub 1", c, err)
			}
		})
	}
}

// TestConfig: each of the three settings is required, and an unreachable
// JWKS fails at start.
func TestConfig(t *testing.T) {
	ctx := context.Background()
	for _, cfg := range []config{
		{Issuer: issuer, Audience: audience},
		{JWKSURL: "http://127.0.0.1:1/jwks.json", Audience: audience},
		{JWKSURL: "http://127.0.0.1:1/jwks.json", Issuer: issuer},
		{JWKSURL: "http://127.0.0.1:1/jwks.json", Issuer: issuer, Audience: audience},
	} {
		if _, err := newVerifier(ctx, cfg); err == nil {
			t.Errorf("newVerifier(%+v): got no error, want one", cfg)
		}
	}
}
