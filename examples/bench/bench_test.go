package bench

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	jwtmiddleware "github.com/auth0/go-jwt-middleware/v2"
	"github.com/auth0/go-jwt-middleware/v2/validator"
	"github.com/go-chi/jwtauth/v5"
	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/mux"
	jwxjwt "github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/sessionbridge/sessionbridge/bridge"
)

// The same token, claims and validation for every implementation: iss and
// aud must match, exp is required, iat is checked, 30s of leeway.
const (
	issuer     = "https://issuer.bench.test"
	audience   = "bench-api"
	leeway     = 30 * time.Second
	apiPath    = "/api/me"
	cookieName = "id_token" // jwtauth reads a cookie named "jwt", fixed
)

var algs = []string{"ES256", "EdDSA", "RS256", "HS256"}

// keyFixture is one algorithm's key pair and a token signed with it.
type keyFixture struct {
	alg    string
	key    *bridge.Key // signing key for the bridge
	sign   any         // private key or HMAC secret
	verify any         // public key or HMAC secret, for the peers
	method jwt.SigningMethod
	token  string
}

var (
	keysOnce sync.Once
	keys     map[string]*keyFixture
)

// fixture returns the key and token of alg, made once per process (an
// RSA key takes a while; -count runs each benchmark several times).
func fixture(tb testing.TB, alg string) *keyFixture {
	tb.Helper()
	keysOnce.Do(func() {
		keys = map[string]*keyFixture{}
		for _, a := range algs {
			f, err := newKeyFixture(a)
			if err != nil {
				panic(err)
			}
			keys[a] = f
		}
	})
	return keys[alg]
}

func newKeyFixture(alg string) (*keyFixture, error) {
	f := &keyFixture{alg: alg}
	switch alg {
	case "ES256":
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		f.sign, f.verify, f.method = k, &k.PublicKey, jwt.SigningMethodES256
	case "EdDSA":
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		f.sign, f.verify, f.method = priv, pub, jwt.SigningMethodEdDSA
	case "RS256":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		f.sign, f.verify, f.method = k, &k.PublicKey, jwt.SigningMethodRS256
	case "HS256":
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		f.sign, f.verify, f.method = secret, secret, jwt.SigningMethodHS256
	default:
		return nil, fmt.Errorf("unknown alg %s", alg)
	}
	var err error
	if f.key, err = bridge.NewKey(f.sign); err != nil {
		return nil, err
	}
	now := time.Now()
	t := jwt.NewWithClaims(f.method, &bridge.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    issuer,
			Subject:   "42",
			Audience:  jwt.ClaimStrings{audience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(24 * time.Hour)),
			ID:        "jti-bench-1",
		},
		Name:  "user42",
		Roles: []string{"user", "admin"},
	})
	t.Header["kid"] = f.key.KID()
	if f.token, err = t.SignedString(f.sign); err != nil {
		return nil, err
	}
	return f, nil
}

// nopWriter is a ResponseWriter that keeps the status and headers and
// drops the body: the cost of the test's writer is not the middleware's.
type nopWriter struct {
	h    http.Header
	code int
}

func newWriter() *nopWriter                      { return &nopWriter{h: http.Header{}} }
func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) WriteHeader(code int)        { w.code = code }
func (w *nopWriter) reset()                      { clear(w.h); w.code = 0 }

// status is the answered status (200 when the handler set none).
func (w *nopWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// startCPU and reportCPU add cpu-ns/op, the process's CPU time (user and
// system, GC included) per operation, to the benchmark's wall-clock ns/op.
// On a machine shared with other work, wall time counts the time the
// benchmark waits for a core; CPU time does not, and stays comparable
// across runs. Call startCPU just before the b.Loop loop, reportCPU just
// after (b.N is then the iterations that ran).
func startCPU() time.Duration { return cpuTime() }

func reportCPU(b *testing.B, start time.Duration) {
	if b.N > 0 {
		b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
	}
}

// served counts the calls of the bare handler: a request that reaches it
// was authenticated (the routes refuse anonymous requests).
var served int

func bareHandler(http.ResponseWriter, *http.Request) { served++ }

// newRouter returns a mux router with the bare handler on path and the
// middlewares applied with r.Use: mux rebuilds the chain per request.
func newRouter(path string, mws ...mux.MiddlewareFunc) *mux.Router {
	r := mux.NewRouter()
	r.HandleFunc(path, bareHandler).Methods(http.MethodGet)
	r.Use(mws...)
	return r
}

// request returns a GET of path carrying tok as a bearer token, or in the
// cookie named cookie when transport is "cookie".
func request(path, transport, cookie, tok string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "https://app.bench.test"+path, nil)
	switch transport {
	case "bearer":
		r.Header.Set("Authorization", "Bearer "+tok)
	case "cookie":
		r.Header.Set("Cookie", cookie+"="+tok)
	}
	return r
}

// serve benchmarks h answering r, after checking once that the request
// reaches the bare handler with 200 (when mustServe).
func serve(b *testing.B, h http.Handler, r *http.Request, mustServe bool) {
	b.Helper()
	w := newWriter()
	before := served
	h.ServeHTTP(w, r)
	if mustServe && (served != before+1 || w.status() != http.StatusOK) {
		b.Fatalf("request not served: status %d, headers %v", w.status(), w.h)
	}
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
	reportCPU(b, cpu)
}

// sidKey keys the bridge's session hashes (Config.SIDKey).
var sidKey = []byte("bench-sid-key-bench-sid-key-32b!")

// newBridge returns a Bridge with f's key, and no fleet (the counts stay
// in-process); mod may set Sessions (SIDKey is set) or CacheSize
// (bridge.NoCache: every request is a first sight).
func newBridge(b *testing.B, f *keyFixture, router *mux.Router, routes bridge.Routes, mod func(*bridge.Config)) *bridge.Bridge {
	b.Helper()
	cfg := bridge.Config{
		SigningKey: f.key,
		Issuer:     issuer,
		Audience:   audience,
		Leeway:     leeway,
		Routes:     routes,
		Router:     router,
		CookieName: cookieName,
		SIDKey:     sidKey,
	}
	if mod != nil {
		mod(&cfg)
	}
	br, err := bridge.New(cfg)
	if err != nil {
		b.Fatalf("bridge.New: %v", err)
	}
	return br
}

// sessionbridgeRouter is the mux router with the bridge's middleware on a
// jwt-mode route.
func sessionbridgeRouter(b *testing.B, f *keyFixture, cacheSize int) *mux.Router {
	r := newRouter(apiPath)
	br := newBridge(b, f, r, bridge.Routes{apiPath: bridge.JWT}, func(c *bridge.Config) { c.CacheSize = cacheSize })
	r.Use(br.Middleware)
	return r
}

// golangJWTParser is a reused golang-jwt parser with the bridge's
// validation: the pinned algorithm, strict base64, iss, aud, exp required,
// iat, 30s leeway.
func golangJWTParser(f *keyFixture) *jwt.Parser {
	return jwt.NewParser(
		jwt.WithValidMethods([]string{f.alg}),
		jwt.WithStrictDecoding(),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
	)
}

// auth0Claims are the custom claims the others also decode.
type auth0Claims struct {
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
}

func (*auth0Claims) Validate(context.Context) error { return nil }

func auth0Router(b *testing.B, f *keyFixture, transport string) *mux.Router {
	v, err := validator.New(
		func(context.Context) (any, error) { return f.verify, nil },
		validator.SignatureAlgorithm(f.alg),
		issuer, []string{audience},
		validator.WithAllowedClockSkew(leeway),
		validator.WithCustomClaims(func() validator.CustomClaims { return &auth0Claims{} }),
	)
	if err != nil {
		b.Fatalf("auth0 validator: %v", err)
	}
	extract := jwtmiddleware.AuthHeaderTokenExtractor
	if transport == "cookie" {
		extract = jwtmiddleware.CookieTokenExtractor(cookieName)
	}
	m := jwtmiddleware.New(v.ValidateToken, jwtmiddleware.WithTokenExtractor(extract))
	return newRouter(apiPath, m.CheckJWT)
}

func jwtauthRouter(f *keyFixture, transport string) *mux.Router {
	var ja *jwtauth.JWTAuth
	opts := []jwxjwt.ValidateOption{
		jwxjwt.WithIssuer(issuer),
		jwxjwt.WithAudience(audience),
		jwxjwt.WithRequiredClaim("exp"),
		jwxjwt.WithAcceptableSkew(leeway),
	}
	if f.alg == "HS256" {
		ja = jwtauth.New(f.alg, f.sign, nil, opts...)
	} else {
		ja = jwtauth.New(f.alg, nil, f.verify, opts...)
	}
	find := jwtauth.TokenFromHeader
	if transport == "cookie" {
		find = jwtauth.TokenFromCookie
	}
	return newRouter(apiPath, jwtauth.Verify(ja, find), jwtauth.Authenticator(ja))
}

// BenchmarkJWT compares the middlewares on the same mux router, for each
// algorithm and transport (Authorization: Bearer, or a cookie):
//
//   - bare-handler: the router and the handler, no middleware (the
//     baseline of "over a bare handler");
//   - sessionbridge-repeat: the bridge's middleware, token already verified
//     (the cache hit of every request after the first);
//   - sessionbridge-first: the same with the cache disabled, so every
//     request verifies the token (first sight);
//   - auth0: auth0/go-jwt-middleware/v2 CheckJWT with its validator;
//   - jwtauth: go-chi/jwtauth/v5 Verify and Authenticator;
//
// and, under transport=none, golang-jwt: a bare ParseWithClaims of the
// token string with the same validation (no router, no extraction).
func BenchmarkJWT(b *testing.B) {
	for _, alg := range algs {
		f := fixture(b, alg)
		for _, transport := range []string{"bearer", "cookie"} {
			prefix := "alg=" + alg + "/transport=" + transport + "/impl="
			b.Run(prefix+"bare-handler", func(b *testing.B) {
				serve(b, newRouter(apiPath), request(apiPath, transport, cookieName, f.token), true)
			})
			b.Run(prefix+"sessionbridge-repeat", func(b *testing.B) {
				serve(b, sessionbridgeRouter(b, f, 0), request(apiPath, transport, cookieName, f.token), true)
			})
			b.Run(prefix+"sessionbridge-first", func(b *testing.B) {
				serve(b, sessionbridgeRouter(b, f, bridge.NoCache), request(apiPath, transport, cookieName, f.token), true)
			})
			b.Run(prefix+"auth0", func(b *testing.B) {
				serve(b, auth0Router(b, f, transport), request(apiPath, transport, cookieName, f.token), true)
			})
			b.Run(prefix+"jwtauth", func(b *testing.B) {
				serve(b, jwtauthRouter(f, transport), request(apiPath, transport, "jwt", f.token), true)
			})
		}
		b.Run("alg="+alg+"/transport=none/impl=golang-jwt", func(b *testing.B) {
			p := golangJWTParser(f)
			keyFunc := func(*jwt.Token) (any, error) { return f.verify, nil }
			if _, err := p.ParseWithClaims(f.token, new(bridge.Claims), keyFunc); err != nil {
				b.Fatalf("golang-jwt: %v", err)
			}
			b.ReportAllocs()
			cpu := startCPU()
			for b.Loop() {
				c := new(bridge.Claims)
				if _, err := p.ParseWithClaims(f.token, c, keyFunc); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu)
		})
	}
}

// signingInput and signature split a compact JWS.
func signingInput(tok string) (input string, sig []byte) {
	i := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil {
		panic(err)
	}
	return tok[:i], sig
}

var sinkBool bool

// BenchmarkFloor measures what no JWT verifier can go below, over the same
// signing input as the tokens above: the signature check alone (hash
// included), a Go map lookup keyed by the token (what a cache hit costs at
// the least), and a middleware on mux that only puts a value in the
// request's context (what handing the handler an identity costs at the
// least).
func BenchmarkFloor(b *testing.B) {
	b.Run("op=hmac-sha256", func(b *testing.B) {
		f := fixture(b, "HS256")
		input, sig := signingInput(f.token)
		m := hmac.New(sha256.New, f.sign.([]byte))
		var sum [sha256.Size]byte
		b.ReportAllocs()
		cpu := startCPU()
		for b.Loop() {
			m.Reset()
			m.Write([]byte(input))
			sinkBool = hmac.Equal(m.Sum(sum[:0]), sig)
		}
		reportCPU(b, cpu)
		if !sinkBool {
			b.Fatal("hmac mismatch")
		}
	})
	b.Run("op=ecdsa-p256-verify", func(b *testing.B) {
		f := fixture(b, "ES256")
		input, raw := signingInput(f.token)
		der, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(raw[:32]), new(big.Int).SetBytes(raw[32:])})
		if err != nil {
			b.Fatal(err)
		}
		pub := f.verify.(*ecdsa.PublicKey)
		b.ReportAllocs()
		cpu := startCPU()
		for b.Loop() {
			h := sha256.Sum256([]byte(input))
			sinkBool = ecdsa.VerifyASN1(pub, h[:], der)
		}
		reportCPU(b, cpu)
		if !sinkBool {
			b.Fatal("ecdsa mismatch")
		}
	})
	b.Run("op=ed25519-verify", func(b *testing.B) {
		f := fixture(b, "EdDSA")
		input, sig := signingInput(f.token)
		pub := f.verify.(ed25519.PublicKey)
		b.ReportAllocs()
		cpu := startCPU()
		for b.Loop() {
			sinkBool = ed25519.Verify(pub, []byte(input), sig)
		}
		reportCPU(b, cpu)
		if !sinkBool {
			b.Fatal("ed25519 mismatch")
		}
	})
	b.Run("op=rsa2048-verify", func(b *testing.B) {
		f := fixture(b, "RS256")
		input, sig := signingInput(f.token)
		pub := f.verify.(*rsa.PublicKey)
		var err error
		b.ReportAllocs()
		cpu := startCPU()
		for b.Loop() {
			h := sha256.Sum256([]byte(input))
			err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig)
		}
		reportCPU(b, cpu)
		if err != nil {
			b.Fatal(err)
		}
	})
	// The plumbing every middleware that hands its handler a value pays on
	// a mux router: mux's per-request closure, context.WithValue and
	// r.WithContext. mux-bare is the same router without it.
	b.Run("op=mux-bare", func(b *testing.B) {
		serve(b, newRouter(apiPath), request(apiPath, "bearer", cookieName, "x"), true)
	})
	b.Run("op=mux-context-value", func(b *testing.B) {
		// One pointer in the context, as the bridge stores one per request.
		type key struct{}
		type identity struct{ subject string }
		id := &identity{subject: "42"}
		mw := func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), key{}, id)))
			})
		}
		serve(b, newRouter(apiPath, mw), request(apiPath, "bearer", cookieName, "x"), true)
	})
	b.Run("op=map-lookup", func(b *testing.B) {
		// 10000 entries (the bridge's default cache size) keyed by
		// token-sized strings; the looked-up key is the ES256 token.
		f := fixture(b, "ES256")
		type entry struct{ sub string }
		m := make(map[string]*entry, 10001)
		buf := make([]byte, len(f.token))
		for i := 0; i < 10000; i++ {
			_, _ = rand.Read(buf)
			m[base64.RawURLEncoding.EncodeToString(buf)[:len(f.token)]] = &entry{}
		}
		m[f.token] = &entry{sub: "42"}
		key := strings.Clone(f.token)
		var e *entry
		b.ReportAllocs()
		cpu := startCPU()
		for b.Loop() {
			e = m[key]
		}
		reportCPU(b, cpu)
		if e == nil || e.sub != "42" {
			b.Fatal("map lookup missed")
		}
	})
}
