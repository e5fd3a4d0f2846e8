// Benchmarks of the hot path, inside the package: counting, the route
// lookup, token verification (first sight and cache hit), credential
// parsing, conversion, and the whole middleware on a mux router. The
// comparison with the peers (golang-jwt, auth0, jwtauth, boj/redistore)
// lives in the examples/bench module; scripts/bench.sh runs both and
// docs/benchmarks.md has the figures.
package bridge

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"
)

var benchAlgs = []string{"ES256", "EdDSA", "RS256", "HS256"}

var (
	benchKeysOnce sync.Once
	benchKeys     map[string]*Key
)

// benchKey returns a signing key for alg, made once per process: -count
// runs each benchmark several times and an RSA key takes a while.
func benchKey(b *testing.B, alg string) *Key {
	b.Helper()
	benchKeysOnce.Do(func() {
		benchKeys = map[string]*Key{}
		ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		_, ed, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		rs, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		for alg, raw := range map[string]any{"ES256": ec, "EdDSA": ed, "RS256": rs, "HS256": secret} {
			k, err := NewKey(raw)
			if err != nil {
				panic(err)
			}
			benchKeys[alg] = k
		}
	})
	return benchKeys[alg]
}

// benchWriter is a ResponseWriter that keeps headers and drops the body.
type benchWriter struct{ h http.Header }

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *benchWriter) WriteHeader(int)             {}

var benchServed int

func benchHandler(http.ResponseWriter, *http.Request) { benchServed++ }

// BenchmarkCounting is the per-request count: one atomic add in a slice
// indexed by the route's number. It must not allocate.
func BenchmarkCounting(b *testing.B) {
	c := new(counters)
	b.Run("op=request", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.request(7, Dual, SourceJWTBearer)
		}
	})
	b.Run("op=reject", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.reject(7, ReasonBearerInvalid)
		}
	})
	if c.requests[(7*int(numModes)+int(Dual))*int(numSources)+int(SourceJWTBearer)].Load() == 0 {
		b.Fatal("nothing counted")
	}
}

// BenchmarkRouteLookup finds the route number of a request matched by mux:
// the route's path template, then a lock-free map lookup.
func BenchmarkRouteLookup(b *testing.B) {
	router := mux.NewRouter()
	router.HandleFunc("/api/orders/{id}", benchHandler)
	benchRoutes(router) // after ours: the root's matching is mux's
	benchRouteLookup(b, router)
}

// BenchmarkRouteLookupMounted finds the route number of a request matched
// by mux to a router mounted as a route's handler: the mounted router's
// routes matched one by one, as mux will, then the map lookup. The one
// allocation is mux's own, for the matched route's variables.
func BenchmarkRouteLookupMounted(b *testing.B) {
	api := mux.NewRouter()
	api.Use(func(next http.Handler) http.Handler { return next })
	benchRoutes(api) // before ours: the bridge matches them
	api.HandleFunc("/api/orders/{id:[0-9]+}", benchHandler)
	root := mux.NewRouter()
	root.PathPrefix("/api/").Handler(api)
	benchRouteLookup(b, root)
}

// benchRoutes adds 50 routes to router: a router of realistic size.
func benchRoutes(router *mux.Router) {
	for i := range 50 {
		router.HandleFunc("/api/r"+string(rune('a'+i%26))+"/{id}/x"+string(rune('a'+i/26)), benchHandler)
	}
}

// benchRouteLookup measures the lookup of GET /api/orders/17, which
// router (walked as New does) serves with the route /api/orders/{id}, as a
// middleware of router sees the request.
func benchRouteLookup(b *testing.B, router *mux.Router) {
	var matched *http.Request
	router.Use(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { matched = r; next.ServeHTTP(w, r) })
	})
	t := newRouteTable(Routes{"/api/orders/{id}": Dual}, Legacy)
	t.remember(walkRouter(router))
	router.ServeHTTP(&benchWriter{h: http.Header{}}, httptest.NewRequest(http.MethodGet, "/api/orders/17", nil))
	if matched == nil {
		b.Fatal("route not matched")
	}
	want := t.lookup(matched)
	if t.names[want] != "/api/orders/{id}" {
		b.Fatalf("route %q, want /api/orders/{id}", t.names[want])
	}
	b.ReportAllocs()
	for b.Loop() {
		if t.lookup(matched) != want {
			b.Fatal("lookup changed")
		}
	}
}

// BenchmarkVerify verifies a token of each algorithm: first sight (cache
// disabled, so every call parses, checks the signature and the claims, and
// builds the cache entry) and cache hit (the verified entry of a token
// seen before).
func BenchmarkVerify(b *testing.B) {
	for _, alg := range benchAlgs {
		for _, tc := range []struct {
			name      string
			cacheSize int
		}{{"first-sight", -1}, {"cache-hit", 0}} {
			b.Run("alg="+alg+"/case="+tc.name, func(b *testing.B) {
				br := newTestBridge(b, func(c *Config) {
					c.SigningKey = benchKey(b, alg)
					c.CacheSize = tc.cacheSize
				})
				tok := mintTestToken(b, br, "42", func(c *Claims) { c.Name, c.Roles = "user42", []string{"user", "admin"} })
				if _, err := br.verifier.verify(tok); err != nil {
					b.Fatal(err)
				}
				fillCache(br, tok, DefaultCacheSize/2)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := br.verifier.verify(tok); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
	// A cache hit from every core at once: the cache's shard locks and the
	// revocation list's lock are shared by all requests.
	b.Run("alg=ES256/case=cache-hit-parallel", func(b *testing.B) {
		br := newTestBridge(b, func(c *Config) { c.SigningKey = benchKey(b, "ES256") })
		tok := mintTestToken(b, br, "42", nil)
		if _, err := br.verifier.verify(tok); err != nil {
			b.Fatal(err)
		}
		fillCache(br, tok, DefaultCacheSize/2)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := br.verifier.verify(tok); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkCachePut stores a newly verified token in the cache: in a cache
// with room (purged every DefaultCacheSize/2 puts), and in a full one
// (DefaultCacheSize live entries), where each put must first make room in
// its shard.
func BenchmarkCachePut(b *testing.B) {
	for _, full := range []bool{false, true} {
		name := "case=empty"
		if full {
			name = "case=full"
		}
		b.Run(name, func(b *testing.B) {
			c := newTokenCache(DefaultCacheSize)
			now := time.Now()
			e := &cacheEntry{claims: &Claims{}, exp: now.Add(time.Hour)}
			if full {
				for i := range DefaultCacheSize * 2 {
					c.put(fmt.Sprintf("filler-%08d", i), e, now)
				}
			}
			keys := make([]string, 1<<16)
			for i := range keys {
				keys[i] = fmt.Sprintf("token-%08d", i)
			}
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				if !full && i%(DefaultCacheSize/2) == 0 {
					c.purge() // amortised over 5000 puts; the cache never fills
				}
				c.put(keys[i%len(keys)], e, now)
				i++
			}
		})
	}
}

// fillCache puts n entries of made-up tokens as long as tok in br's token
// cache (when enabled), so that a cache hit looks up a map of realistic
// size rather than one of a single entry.
func fillCache(br *Bridge, tok string, n int) {
	c := br.verifier.cache
	if c.perShard == 0 {
		return
	}
	now := time.Now()
	e := c.get(tok, now)
	for i := range n {
		suffix := fmt.Sprintf("%08d", i)
		c.put(tok[:len(tok)-len(suffix)]+suffix, e, now)
	}
}

// BenchmarkCredentials parses the credentials out of a request: the JWT
// cookie alone, the JWT cookie last of six (a browser's usual load), and
// the bearer token.
func BenchmarkCredentials(b *testing.B) {
	tok := "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl"
	one := httptest.NewRequest(http.MethodGet, "/", nil)
	one.Header.Set("Cookie", DefaultCookieName+"="+tok)
	six := httptest.NewRequest(http.MethodGet, "/", nil)
	six.Header.Set("Cookie", "_ga=GA1.2.1234567890.1234567890; theme=dark; lang=en-GB; "+
		"session=MTcwMDAwMDAwMHxEdi1CQkFFQ180SUFBUkFCRUFBQV80M188; csrf=abcdef0123456789; "+DefaultCookieName+"="+tok)
	bearerReq := httptest.NewRequest(http.MethodGet, "/", nil)
	bearerReq.Header.Set("Authorization", "Bearer "+tok)
	for _, tc := range []struct {
		name string
		r    *http.Request
	}{{"cookie-one", one}, {"cookie-six", six}} {
		b.Run("op="+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if cookieValue(tc.r, DefaultCookieName) != tok {
					b.Fatal("cookie not found")
				}
			}
		})
	}
	b.Run("op=bearer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if got, ok := bearerToken(bearerReq); !ok || got != tok {
				b.Fatal("bearer not found")
			}
		}
	})
}

// BenchmarkConvert is the conversion of a session into a JWT cookie: the
// claims mapping, a signed token (mintFor) and the Set-Cookie header.
func BenchmarkConvert(b *testing.B) {
	values := map[any]any{"user_id": "42", "username": "user42", "roles": []string{"user", "admin"}}
	for _, alg := range benchAlgs {
		b.Run("alg="+alg, func(b *testing.B) {
			br := newTestBridge(b, func(c *Config) {
				c.SigningKey = benchKey(b, alg)
				c.Sessions = StoreSource(newMemStore(), testSessionName)
			})
			sid := br.sids.sid("raw-session-id")
			w := &benchWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				now := time.Now()
				tok, c, err := br.mintFor(context.Background(), values, 0, sid, "", now)
				if err != nil {
					b.Fatal(err)
				}
				if !br.setTokenCookie(w, tok, c.ExpiresAt.Time, now) {
					b.Fatal("cookie not set")
				}
			}
		})
	}
}

// BenchmarkMiddleware is a whole request on a mux router (which rebuilds
// the chain per request): the bare handler, and the bridge's middleware on
// a jwt route with a token already verified, as a bearer token and as the
// JWT cookie. The difference is the middleware's cost. no-router is the
// middleware alone, its chain built once (as net/http's ServeMux or chi
// do): the allocations that are the bridge's own, without the closure
// that mux's per-request rebuild costs every middleware. route-wrapped is
// the middleware on the mux route's handler, wrapped once
// (router.Handle(path, b.Middleware(h))) instead of router.Use.
func BenchmarkMiddleware(b *testing.B) {
	b.Run("case=repeat-bearer-no-router", func(b *testing.B) {
		br := newTestBridge(b, func(c *Config) { c.DefaultMode = JWT })
		h := br.Middleware(http.HandlerFunc(benchHandler))
		tok := mintTestToken(b, br, "42", func(c *Claims) { c.Name, c.Roles = "user42", []string{"user", "admin"} })
		r := httptest.NewRequest(http.MethodGet, "https://app.test/api/me", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		w := &benchWriter{h: http.Header{}}
		before := benchServed
		h.ServeHTTP(w, r)
		if benchServed != before+1 {
			b.Fatalf("request not served: %v", w.h)
		}
		b.ReportAllocs()
		for b.Loop() {
			h.ServeHTTP(w, r)
		}
	})
	// repeat-cookie-and-session: a browser that converted sends both its
	// JWT cookie and its legacy session cookie; the token is the one the
	// bridge minted from that session (bound to it: no session read).
	b.Run("case=repeat-cookie-and-session", func(b *testing.B) {
		const path = "/api/me"
		store := newMemStore()
		router := mux.NewRouter()
		router.Handle(path, http.HandlerFunc(benchHandler)).Methods(http.MethodGet)
		br := newTestBridge(b, func(c *Config) {
			c.Routes, c.Router = Routes{path: Dual}, router
			c.Sessions = StoreSource(store, testSessionName)
		})
		router.Use(br.Middleware)
		ck, _ := saveSession(b, store, testUser("42"))
		r := httptest.NewRequest(http.MethodGet, "https://app.test"+path, nil)
		r.AddCookie(ck)
		w := httptest.NewRecorder()
		router.ServeHTTP(w, r)
		var tok string
		for _, c := range w.Result().Cookies() {
			if c.Name == br.cfg.CookieName {
				tok = c.Value
			}
		}
		if tok == "" {
			b.Fatal("not converted")
		}
		r.Header.Set("Cookie", br.cfg.CookieName+"="+tok+"; "+ck.Name+"="+ck.Value)
		loads := store.loads.Load()
		bw := &benchWriter{h: http.Header{}}
		before := benchServed
		router.ServeHTTP(bw, r)
		if benchServed != before+1 {
			b.Fatalf("request not served: %v", bw.h)
		}
		b.ReportAllocs()
		for b.Loop() {
			router.ServeHTTP(bw, r)
		}
		if n := store.loads.Load() - loads; n != 0 {
			b.Fatalf("%d session reads on the repeat path, want 0", n)
		}
	})
	const path = "/api/me"
	for _, tc := range []string{"bare-handler", "repeat-bearer", "repeat-cookie", "repeat-bearer-route-wrapped"} {
		b.Run("case="+tc, func(b *testing.B) {
			router := mux.NewRouter()
			var wrapped http.Handler = http.HandlerFunc(benchHandler)
			route := router.Handle(path, wrapped).Methods(http.MethodGet)
			br := newTestBridge(b, func(c *Config) { c.Routes, c.Router = Routes{path: JWT}, router })
			switch tc {
			case "bare-handler":
			case "repeat-bearer-route-wrapped":
				route.Handler(br.Middleware(wrapped)) // the chain built once
			default:
				router.Use(br.Middleware)
			}
			tok := mintTestToken(b, br, "42", func(c *Claims) { c.Name, c.Roles = "user42", []string{"user", "admin"} })
			r := httptest.NewRequest(http.MethodGet, "https://app.test"+path, nil)
			if tc == "repeat-cookie" {
				r.Header.Set("Cookie", br.cfg.CookieName+"="+tok)
			} else {
				r.Header.Set("Authorization", "Bearer "+tok)
			}
			w := &benchWriter{h: http.Header{}}
			before := benchServed
			router.ServeHTTP(w, r)
			if benchServed != before+1 {
				b.Fatalf("request not served: %v", w.h)
			}
			b.ReportAllocs()
			for b.Loop() {
				router.ServeHTTP(w, r)
			}
		})
	}
}
