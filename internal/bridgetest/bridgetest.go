// Package bridgetest holds the helpers of the tests that drive package
// bridge from outside, through its exported API: the request path's
// external tests (package bridge_test), bridge/fleet, bridge/bridgeprom,
// bridge/redisstore's sources and the commands. The bridge's own internal
// tests keep theirs in bridge/helpers_test.go.
//
//   - NewBridge(t, mod): a Bridge with a fresh ES256 key (Env.Key can mint
//     with it), issuer Issuer, audience Audience, its logs in a buffer;
//   - NewEnv(t, mod): a real redis-server, a redisstore.Store in
//     boj/redistore format, a Bridge reading sessions through it
//     (StoreSource, cookie "session", Now = e.Clock.Now), the mux router of
//     NewRouter with r.Use(b.Middleware) and an httptest TLS server in
//     front of it; e.Session, e.Token and e.JWTCookie make credentials,
//     and the logs are checked for every credential recorded with e.Secret
//     when the test ends;
//   - NewJarClient(t, ts), Do(t, c, method, url, hdr, cookies...): a
//     browser-like client and one request with its body read
//     (Response.Identity decodes an IdentityHandler body);
//   - SaveSession, SaveRbcervillaSession, RbcervillaStore: legacy
//     sessions in Redis;
//   - Key.Mint, TokenClaims: tokens signed with a test key, and decoded
//     without verification;
//   - RouteCounts, WantRequests, WantReasons, TotalRequests: exact counter
//     assertions on Bridge.Snapshot;
//   - RedisCalls, ResetRedisStats: the commands a redis-server executed;
//   - CheckNoSecrets, CookiesDesc: credentials stay out of logs and test
//     output.
//
// The HTTP and test plumbing among these (NewJarClient, Do's Response,
// Bearer, Clock, NewLogger, CheckNoSecrets, CookiesDesc, RedisCalls,
// ResetRedisStats, SIDKey) is package webtest's, which the bridge's
// internal tests use too; the names here forward to it.
package bridgetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/mux"
	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
	"github.com/sessionbridge/sessionbridge/internal/syncbuf"
	"github.com/sessionbridge/sessionbridge/internal/webtest"
)

// The test bridge's identity and the legacy cookie's name.
const (
	Issuer      = "https://issuer.test"
	Audience    = "test-api"
	SessionName = "session"
)

// Secrets of the legacy cookie: the current securecookie key pair, a
// previous hash key still accepted (rotation), and one nobody accepts;
// SIDKey (webtest.SIDKey, shared with the bridge's internal tests) keys
// the sid hash.
var (
	HashKey        = []byte("0123456789abcdef0123456789abcdef")
	BlockKey       = []byte("fedcba9876543210fedcba9876543210")
	OldHashKey     = []byte("old-hash-key-old-hash-key-old-ha")
	UnknownHashKey = []byte("unknown-hash-key-unknown-hash-ke")
	SIDKey         = webtest.SIDKey
)

// KeyPairs are the key pairs the legacy app signs with, newest first.
func KeyPairs() [][]byte { return [][]byte{HashKey, BlockKey, OldHashKey, nil} }

// The HTTP and test plumbing of package webtest, under the names this
// package's callers use.
var (
	NewLogger       = webtest.NewLogger
	NewClock        = webtest.NewClock
	NewJarClient    = webtest.NewJarClient
	Bearer          = webtest.Bearer
	CheckNoSecrets  = webtest.CheckNoSecrets
	CookiesDesc     = webtest.CookiesDesc
	RedisCalls      = webtest.RedisCalls
	ResetRedisStats = webtest.ResetRedisStats
)

// Clock is a settable clock for Config.Now.
type Clock = webtest.Clock

// Response is a response with its body read (see webtest.Response), which
// can also decode an IdentityHandler body.
type Response struct{ *webtest.Response }

// Do sends a request with the headers hdr (and cookies, if any) and reads
// the whole response (see webtest.Do).
func Do(t testing.TB, c *http.Client, method, url string, hdr http.Header, cookies ...*http.Cookie) *Response {
	t.Helper()
	return &Response{webtest.Do(t, c, method, url, hdr, cookies...)}
}

// Identity decodes an IdentityHandler body.
func (r *Response) Identity(t testing.TB) IdentityBody {
	t.Helper()
	var b IdentityBody
	r.JSON(t, &b)
	return b
}

// Routes are the modes of NewRouter's routes.
var Routes = bridge.Routes{
	"/legacy":     bridge.Legacy,
	"/dual":       bridge.Dual,
	"/dual/{id}":  bridge.Dual,
	"/jwt":        bridge.JWT,
	"/legacy/app": bridge.Legacy,
}

// Key is a bridge key with its private part, so that tests can sign
// tokens the way the bridge does.
type Key struct {
	*bridge.Key
	priv *ecdsa.PrivateKey
}

// NewKey returns a new ES256 key.
func NewKey(t testing.TB) *Key {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	k, err := bridge.NewKey(priv)
	if err != nil {
		t.Fatalf("bridge.NewKey: %v", err)
	}
	return &Key{Key: k, priv: priv}
}

var jtiSeq atomic.Int64

// Claims are the claims of a token for sub issued now by cfg's clock,
// living cfg's TokenTTL, with a unique jti.
func Claims(cfg bridge.Config, sub string) *bridge.Claims {
	now := cfg.Now()
	return &bridge.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    cfg.Issuer,
			Subject:   sub,
			Audience:  jwt.ClaimStrings{cfg.Audience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(cfg.TokenTTL)),
			ID:        fmt.Sprintf("jti-%d", jtiSeq.Add(1)),
		},
	}
}

// Mint signs Claims(b.Config(), sub), changed by mod if not nil, with k
// (b's signing key makes a genuine token, another key a forged one).
func (k *Key) Mint(t testing.TB, b *bridge.Bridge, sub string, mod func(*bridge.Claims)) string {
	t.Helper()
	c := Claims(b.Config(), sub)
	if mod != nil {
		mod(c)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	tok.Header["kid"] = k.KID()
	s, err := tok.SignedString(k.priv)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

// TokenClaims decodes a token's payload without verifying it.
func TokenClaims(t testing.TB, tok string) *bridge.Claims {
	t.Helper()
	c := new(bridge.Claims)
	webtest.TokenPayload(t, tok, c)
	return c
}

// NewBridge returns a Bridge signing with a new key, Issuer, Audience,
// SIDKey and a logger into the returned buffer. mod, if not nil, changes
// the configuration before New.
func NewBridge(t testing.TB, mod func(*bridge.Config)) (*bridge.Bridge, *Key, *syncbuf.Buffer) {
	t.Helper()
	logger, logs := NewLogger()
	key := NewKey(t)
	cfg := bridge.Config{
		SigningKey: key.Key,
		Issuer:     Issuer,
		Audience:   Audience,
		SIDKey:     SIDKey,
		Logger:     logger,
	}
	if mod != nil {
		mod(&cfg)
	}
	b, err := bridge.New(cfg)
	if err != nil {
		t.Fatalf("bridge.New: %v", err)
	}
	if cfg.SigningKey != key.Key {
		key = nil // the caller signs with its own key
	}
	return b, key, logs
}

// NewStore returns a redisstore.Store (boj/redistore format, gob) on c
// with KeyPairs; mod may change its configuration.
func NewStore(t testing.TB, c redis.UniversalClient, mod func(*redisstore.Config)) *redisstore.Store {
	t.Helper()
	cfg := redisstore.Config{Client: c, KeyPairs: KeyPairs()}
	if mod != nil {
		mod(&cfg)
	}
	s, err := redisstore.New(cfg)
	if err != nil {
		t.Fatalf("redisstore.New: %v", err)
	}
	return s
}

// User are the session values of a logged-in user.
func User(id string) map[any]any {
	return map[any]any{"user_id": id, "username": "user" + id, "roles": []string{"user"}}
}

// SaveSession saves values as a new session named SessionName with store
// and returns its cookie and raw session ID.
func SaveSession(t testing.TB, store sessions.Store, values map[any]any) (*http.Cookie, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	w := httptest.NewRecorder()
	s, err := store.New(r, SessionName)
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	for k, v := range values {
		s.Values[k] = v
	}
	if err := s.Save(r, w); err != nil {
		t.Fatalf("save session: %v", err)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == SessionName {
			return c, s.ID
		}
	}
	t.Fatalf("save session: no %q cookie set", SessionName)
	return nil, ""
}

// IdentityBody is what IdentityHandler answers.
type IdentityBody struct {
	Subject string   `json:"subject"`
	Name    string   `json:"name"`
	Roles   []string `json:"roles"`
	Source  string   `json:"source"`
	Has     bool     `json:"has"`
}

// IdentityHandler answers the request's identity as JSON.
func IdentityHandler(w http.ResponseWriter, r *http.Request) {
	id, ok := bridge.IdentityFrom(r.Context())
	body := IdentityBody{Has: ok}
	if ok {
		body = IdentityBody{Subject: id.Subject(), Name: id.Name(), Roles: id.Roles(), Source: id.Source().String(), Has: true}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

// NewRouter returns a mux router with every route of Routes (GET and
// POST) answering IdentityHandler; "/legacy/app" also reads the session
// with store.Get, as a legacy handler does (store may be nil).
func NewRouter(store sessions.Store) *mux.Router {
	r := mux.NewRouter()
	for tmpl := range Routes {
		if tmpl == "/legacy/app" {
			continue
		}
		r.HandleFunc(tmpl, IdentityHandler).Methods(http.MethodGet, http.MethodPost)
	}
	r.HandleFunc("/legacy/app", func(w http.ResponseWriter, r *http.Request) {
		if store != nil {
			s, err := store.Get(r, SessionName)
			if err != nil {
				http.Error(w, "session: "+err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("X-Session-User", fmt.Sprint(s.Values["user_id"]))
		}
		IdentityHandler(w, r)
	}).Methods(http.MethodGet, http.MethodPost)
	return r
}

// Env is a Bridge on a real redis-server behind an httptest TLS server:
// the router of NewRouter with r.Use(b.Middleware).
type Env struct {
	Srv   *redistest.Server
	RDB   *redis.Client
	Store *redisstore.Store
	Clock *Clock
	B     *bridge.Bridge
	Key   *Key // B's signing key
	Logs  *syncbuf.Buffer
	TS    *httptest.Server

	mu      sync.Mutex
	secrets []string // credentials the logs must not contain
}

// Secret records credentials (tokens, cookie values, raw session IDs)
// that the bridge's logs must never contain; NewEnv checks when the test
// ends.
func (e *Env) Secret(s ...string) {
	e.mu.Lock()
	e.secrets = append(e.secrets, s...)
	e.mu.Unlock()
}

// NewEnv starts the environment; when the test ends, it checks that the
// logs contain none of the credentials recorded with e.Secret. The Bridge
// reads sessions with StoreSource(e.Store, SessionName), has Routes
// Routes and Now e.Clock.Now; mod may change the configuration (e's Srv,
// RDB, Store and Clock are set when it runs).
func NewEnv(t testing.TB, mod func(e *Env, c *bridge.Config)) *Env {
	t.Helper()
	return NewEnvOn(t, redistest.New(t), mod)
}

// NewEnvOn is NewEnv on an existing server, which subtests can share to
// start fewer redis-servers (the keys they write are random; a test that
// resets or reads the server's stats, flushes, pauses or kills it needs a
// server of its own, or subtests that do not run in parallel).
func NewEnvOn(t testing.TB, srv *redistest.Server, mod func(e *Env, c *bridge.Config)) *Env {
	t.Helper()
	e := &Env{Srv: srv, Clock: NewClock()}
	e.RDB = redis.NewClient(srv.Options())
	t.Cleanup(func() { _ = e.RDB.Close() })
	e.Store = NewStore(t, e.RDB, nil)
	router := NewRouter(e.Store)
	e.B, e.Key, e.Logs = NewBridge(t, func(c *bridge.Config) {
		c.Sessions = bridge.StoreSource(e.Store, SessionName)
		c.Routes = Routes
		c.Router = router
		c.Now = e.Clock.Now
		if mod != nil {
			mod(e, c)
		}
	})
	router.Use(e.B.Middleware)
	e.TS = httptest.NewTLSServer(router)
	t.Cleanup(e.TS.Close)
	t.Cleanup(func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		CheckNoSecrets(t, e.Logs.String(), e.secrets...)
	})
	return e
}

// URL returns the test server's URL for path.
func (e *Env) URL(path string) string { return e.TS.URL + path }

// Session saves values as a new legacy session with e.Store and returns
// its cookie and raw ID, both recorded as secrets.
func (e *Env) Session(t testing.TB, values map[any]any) (*http.Cookie, string) {
	t.Helper()
	c, id := SaveSession(t, e.Store, values)
	e.Secret(c.Value, id)
	return c, id
}

// Token mints a token for sub with e.B's key (see Key.Mint), recorded as
// a secret.
func (e *Env) Token(t testing.TB, sub string, mod func(*bridge.Claims)) string {
	t.Helper()
	tok := e.Key.Mint(t, e.B, sub, mod)
	e.Secret(tok)
	return tok
}

// JWTCookie returns the JWT cookie holding tok.
func (e *Env) JWTCookie(tok string) *http.Cookie {
	return &http.Cookie{Name: e.B.Config().CookieName, Value: tok}
}

// RouteCounts returns the counters of route (failing if it is unknown).
func RouteCounts(t testing.TB, b *bridge.Bridge, route string) bridge.RouteCounts {
	t.Helper()
	for _, rc := range b.Snapshot() {
		if rc.Route == route {
			return rc
		}
	}
	t.Fatalf("route %q not in the snapshot", route)
	return bridge.RouteCounts{}
}

// WantRequests checks the request counters of route: exactly want per
// (mode, source), zero elsewhere.
func WantRequests(t testing.TB, b *bridge.Bridge, route string, want map[bridge.Mode]map[bridge.Source]uint64) {
	t.Helper()
	for m, counts := range RouteCounts(t, b, route).ByMode() {
		for s, got := range counts.All() {
			if got != want[m][s] {
				t.Errorf("route %s requests[%v][%v]: got %v, want %v", route, m, s, got, want[m][s])
			}
		}
	}
}

// WantReasons checks the rejection counters of route: exactly want per
// reason, zero elsewhere.
func WantReasons(t testing.TB, b *bridge.Bridge, route string, want map[bridge.Reason]uint64) {
	t.Helper()
	rc := RouteCounts(t, b, route)
	for r, got := range rc.Rejections.All() {
		if got != want[r] {
			t.Errorf("route %s rejections[%v]: got %v, want %v", route, r, got, want[r])
		}
	}
	for r, n := range want {
		if got := rc.Rejections.Of(r); got != n && n != 0 {
			t.Errorf("route %s rejections[%v]: got %v, want %v", route, r, got, n)
		}
	}
}

// TotalRequests sums every request counter of every route.
func TotalRequests(b *bridge.Bridge) uint64 {
	var n uint64
	for _, rc := range b.Snapshot() {
		n += rc.Requests().Total()
	}
	return n
}
