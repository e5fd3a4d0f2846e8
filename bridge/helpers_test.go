// Shared helpers for the internal tests of package bridge.
//
// These tests are internal (in the package itself, not bridge_test): they
// read the unexported configuration of a Bridge (b.cfg), reach into the
// verifier, the cache and the denylist, and mint tokens with a Bridge's
// signing key. They must not import bridge/redisstore, bridge/fleet or
// internal/bridgetest (those import bridge: an import cycle); the tests
// that need Redis, a fleet or Prometheus are external (*_ext_test.go,
// package bridge_test) or live in those packages. Every helper here is
// usable from any internal _test.go file of the package:
//
//   - newTestBridge(t, mod): a Bridge with a fresh ES256 key, issuer
//     testIssuer, audience testAudience, SIDKey webtest.SIDKey, its logs
//     captured (logsOf(b));
//   - memStore: an in-memory gorilla sessions.Store (values gob-encoded,
//     as a real store does, so no request shares them), for the tests that
//     need a legacy session but test nothing of Redis;
//   - newTestEnv(t, mod): a memStore, a Bridge reading sessions through it
//     (StoreSource, cookie "session", Now = e.clock.Now, a webtest.Clock),
//     the mux router of newTestRouter with r.Use(b.Middleware) and an
//     httptest TLS server in front of it; e.session, e.token and
//     e.jwtCookie make credentials, and the logs are checked for every
//     credential recorded with e.secret when the test ends;
//   - identityOf(t, r): the identityHandler body of a webtest.Response;
//   - testClaims, mintTestToken(t, b, sub, mod), mintTestTokenWith (another
//     key), tokenClaims (decode without verifying);
//   - routeCounts, wantRequests, wantReasons: exact counter assertions on
//     b.Snapshot().
//
// The HTTP and test plumbing (the jar client, Do and its Response, Bearer,
// the settable Clock, NewLogger, CheckNoSecrets, SIDKey) is package
// internal/webtest's, shared with internal/bridgetest.
package bridge

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/mux"
	"github.com/gorilla/sessions"

	"github.com/sessionbridge/sessionbridge/internal/syncbuf"
	"github.com/sessionbridge/sessionbridge/internal/webtest"
)

const (
	testIssuer      = "https://issuer.test"
	testAudience    = "test-api"
	testSessionName = "session"
)

// testRoutes are the modes of the test router's routes.
var testRoutes = Routes{
	"/legacy":     Legacy,
	"/dual":       Dual,
	"/dual/{id}":  Dual,
	"/jwt":        JWT,
	"/legacy/app": Legacy,
}

var bridgeLogs sync.Map // *Bridge → *syncbuf.Buffer

// logsOf returns the buffer that newTestBridge or newTestEnv pointed b's
// logger at (nil when the caller set its own Logger).
func logsOf(b *Bridge) *syncbuf.Buffer {
	v, _ := bridgeLogs.Load(b)
	l, _ := v.(*syncbuf.Buffer)
	return l
}

// newTestKey returns a new ES256 signing key.
func newTestKey(t testing.TB) *Key {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	return k
}

// newTestBridge returns a Bridge with a new signing key, testIssuer,
// testAudience, testSIDKey and a logger into a buffer (logsOf). mod, if
// not nil, changes the configuration before New.
func newTestBridge(t testing.TB, mod func(*Config)) *Bridge {
	t.Helper()
	logger, logs := webtest.NewLogger()
	cfg := Config{
		SigningKey: newTestKey(t),
		Issuer:     testIssuer,
		Audience:   testAudience,
		SIDKey:     webtest.SIDKey,
		Logger:     logger,
	}
	if mod != nil {
		mod(&cfg)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if cfg.Logger == logger {
		bridgeLogs.Store(b, logs)
		t.Cleanup(func() { bridgeLogs.Delete(b) })
	}
	return b
}

// memStore is an in-memory gorilla sessions.Store with server-side IDs:
// the cookie holds the ID, the values are kept gob-encoded (decoded anew
// for each request, as a Redis store does) and Delete removes a session by
// ID (what StoreSource's Delete looks for).
type memStore struct {
	mu       sync.Mutex
	sessions map[string][]byte
	loads    atomic.Int64 // sessions read (New with a cookie)
}

func newMemStore() *memStore { return &memStore{sessions: map[string][]byte{}} }

// Get returns the session of r, cached in the request's registry.
func (s *memStore) Get(r *http.Request, name string) (*sessions.Session, error) {
	return sessions.GetRegistry(r).Get(s, name)
}

// New returns the session named by r's cookie, or a new one.
func (s *memStore) New(r *http.Request, name string) (*sessions.Session, error) {
	sess := sessions.NewSession(s, name)
	sess.Options = &sessions.Options{Path: "/", HttpOnly: true, Secure: true}
	sess.IsNew = true
	c, err := r.Cookie(name)
	if err != nil {
		return sess, nil
	}
	s.loads.Add(1)
	s.mu.Lock()
	data, ok := s.sessions[c.Value]
	s.mu.Unlock()
	if !ok {
		return sess, nil
	}
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&sess.Values); err != nil {
		return sess, err
	}
	sess.ID, sess.IsNew = c.Value, false
	return sess, nil
}

// Save stores the session's values and sets its cookie (or deletes it
// when MaxAge < 0).
func (s *memStore) Save(_ *http.Request, w http.ResponseWriter, sess *sessions.Session) error {
	if sess.Options != nil && sess.Options.MaxAge < 0 {
		_ = s.Delete(context.Background(), sess.ID)
		http.SetCookie(w, sessions.NewCookie(sess.Name(), "", sess.Options))
		return nil
	}
	if sess.ID == "" {
		id := make([]byte, 24)
		_, _ = rand.Read(id)
		sess.ID = base64.RawURLEncoding.EncodeToString(id)
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(sess.Values); err != nil {
		return err
	}
	s.mu.Lock()
	s.sessions[sess.ID] = buf.Bytes()
	s.mu.Unlock()
	http.SetCookie(w, sessions.NewCookie(sess.Name(), sess.ID, sess.Options))
	return nil
}

// Delete removes the session id.
func (s *memStore) Delete(_ context.Context, id string) error {
	s.mu.Lock()
	delete(s.sessions, id)
	s.mu.Unlock()
	return nil
}

// testUser are the session values of a logged-in user.
func testUser(id string) map[any]any {
	return map[any]any{"user_id": id, "username": "user" + id, "roles": []string{"user"}}
}

// saveSession saves values as a new session named testSessionName with
// store and returns its cookie and raw session ID.
func saveSession(t testing.TB, store sessions.Store, values map[any]any) (*http.Cookie, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	w := httptest.NewRecorder()
	s, err := store.New(r, testSessionName)
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
		if c.Name == testSessionName {
			return c, s.ID
		}
	}
	t.Fatalf("save session: no %q cookie set", testSessionName)
	return nil, ""
}

// identityBody is what the test handlers answer with.
type identityBody struct {
	Subject string   `json:"subject"`
	Name    string   `json:"name"`
	Roles   []string `json:"roles"`
	Source  string   `json:"source"`
	Has     bool     `json:"has"`
}

// identityHandler answers the request's identity as JSON.
func identityHandler(w http.ResponseWriter, r *http.Request) {
	id, ok := IdentityFrom(r.Context())
	body := identityBody{Has: ok}
	if ok {
		body = identityBody{Subject: id.Subject(), Name: id.Name(), Roles: id.Roles(), Source: id.Source().String(), Has: true}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

// newTestRouter returns a mux router with every route of testRoutes (GET
// and POST) answering identityHandler; "/legacy/app" also reads the
// session with store.Get, as a legacy handler does (store may be nil).
func newTestRouter(store sessions.Store) *mux.Router {
	r := mux.NewRouter()
	for tmpl := range testRoutes {
		if tmpl == "/legacy/app" {
			continue
		}
		r.HandleFunc(tmpl, identityHandler).Methods(http.MethodGet, http.MethodPost)
	}
	r.HandleFunc("/legacy/app", func(w http.ResponseWriter, r *http.Request) {
		if store != nil {
			s, err := store.Get(r, testSessionName)
			if err != nil {
				http.Error(w, "session: "+err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("X-Session-User", fmt.Sprint(s.Values["user_id"]))
		}
		identityHandler(w, r)
	}).Methods(http.MethodGet, http.MethodPost)
	return r
}

// testEnv is a Bridge on an in-memory session store behind an httptest
// TLS server: the router of newTestRouter with r.Use(b.Middleware).
type testEnv struct {
	store *memStore
	clock *webtest.Clock
	b     *Bridge
	logs  *syncbuf.Buffer
	ts    *httptest.Server

	mu      sync.Mutex
	secrets []string // credentials the logs must not contain
}

// secret records credentials (tokens, cookie values, raw session IDs)
// that the bridge's logs must never contain; newTestEnv checks when the
// test ends.
func (e *testEnv) secret(s ...string) {
	e.mu.Lock()
	e.secrets = append(e.secrets, s...)
	e.mu.Unlock()
}

// newTestEnv starts the environment; when the test ends, it checks that
// the logs contain none of the credentials recorded with e.secret. The
// Bridge reads sessions with StoreSource(e.store, testSessionName), has
// Routes testRoutes and Now e.clock.Now; mod may change the configuration
// (e's store and clock are set when it runs).
func newTestEnv(t testing.TB, mod func(e *testEnv, c *Config)) *testEnv {
	t.Helper()
	e := &testEnv{store: newMemStore(), clock: webtest.NewClock()}
	router := newTestRouter(e.store)
	e.b = newTestBridge(t, func(c *Config) {
		c.Sessions = StoreSource(e.store, testSessionName)
		c.Routes = testRoutes
		c.Router = router
		c.Now = e.clock.Now
		if mod != nil {
			mod(e, c)
		}
	})
	e.logs = logsOf(e.b)
	router.Use(e.b.Middleware)
	e.ts = httptest.NewTLSServer(router)
	t.Cleanup(e.ts.Close)
	if e.logs != nil {
		t.Cleanup(func() {
			e.mu.Lock()
			defer e.mu.Unlock()
			webtest.CheckNoSecrets(t, e.logs.String(), e.secrets...)
		})
	}
	return e
}

// session saves values as a new legacy session with e.store and returns
// its cookie and raw ID, both recorded as secrets.
func (e *testEnv) session(t testing.TB, values map[any]any) (*http.Cookie, string) {
	t.Helper()
	c, id := saveSession(t, e.store, values)
	e.secret(c.Value, id)
	return c, id
}

// token mints a token for sub with e.b's key (see mintTestToken), recorded
// as a secret.
func (e *testEnv) token(t testing.TB, sub string, mod func(*Claims)) string {
	t.Helper()
	tok := mintTestToken(t, e.b, sub, mod)
	e.secret(tok)
	return tok
}

// jwtCookie returns the JWT cookie holding tok.
func (e *testEnv) jwtCookie(tok string) *http.Cookie {
	return &http.Cookie{Name: e.b.cfg.CookieName, Value: tok}
}

// convert sends the session cookie sess to /dual and returns the JWT
// cookie it is converted into, recorded as a secret.
func (e *testEnv) convert(t testing.TB, sess *http.Cookie) *http.Cookie {
	t.Helper()
	jwt := webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/dual", nil, sess).Cookie(e.b.cfg.CookieName)
	if jwt == nil {
		t.Fatal("session not converted on /dual")
	}
	e.secret(jwt.Value)
	return jwt
}

// testRoutesWith is testRoutes and extra, in a map of its own.
func testRoutesWith(extra Routes) Routes {
	rs := Routes{}
	maps.Copy(rs, testRoutes)
	maps.Copy(rs, extra)
	return rs
}

// identityOf decodes an identityHandler body.
func identityOf(t testing.TB, r *webtest.Response) identityBody {
	t.Helper()
	var b identityBody
	r.JSON(t, &b)
	return b
}

// testClaims are the claims of a token for sub issued now by b's clock,
// living b's TokenTTL, with a unique jti.
func testClaims(b *Bridge, sub string) *Claims {
	now := b.cfg.Now()
	return &Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    b.cfg.Issuer,
			Subject:   sub,
			Audience:  jwt.ClaimStrings{b.cfg.Audience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(b.cfg.TokenTTL)),
			ID:        fmt.Sprintf("jti-%d", jtiSeq.Add(1)),
		},
	}
}

var jtiSeq atomic.Int64

// mintTestToken mints a token with testClaims(b, sub), changed by mod if
// not nil, signed with b's signing key.
func mintTestToken(t testing.TB, b *Bridge, sub string, mod func(*Claims)) string {
	t.Helper()
	return mintTestTokenWith(t, b.cfg.SigningKey, b, sub, mod)
}

// mintTestTokenWith is mintTestToken signing with key (another key makes
// a forged token).
func mintTestTokenWith(t testing.TB, key *Key, b *Bridge, sub string, mod func(*Claims)) string {
	t.Helper()
	c := testClaims(b, sub)
	if mod != nil {
		mod(c)
	}
	tok, err := mint(key, c)
	if err != nil {
		t.Fatalf("mint: %v", err)
	}
	return tok
}

// tokenClaims decodes a token's payload without verifying it.
func tokenClaims(t testing.TB, tok string) *Claims {
	t.Helper()
	c := new(Claims)
	webtest.TokenPayload(t, tok, c)
	return c
}

// routeCounts returns the counters of route (failing if it is unknown).
func routeCounts(t testing.TB, b *Bridge, route string) RouteCounts {
	t.Helper()
	for _, rc := range b.Snapshot() {
		if rc.Route == route {
			return rc
		}
	}
	t.Fatalf("route %q not in the snapshot", route)
	return RouteCounts{}
}

// wantRequests checks the request counters of route: exactly want per
// (mode, source), zero elsewhere.
func wantRequests(t testing.TB, b *Bridge, route string, want map[Mode]map[Source]uint64) {
	t.Helper()
	rc := routeCounts(t, b, route)
	for m := Mode(0); m < numModes; m++ {
		for s := Source(0); s < numSources; s++ {
			if got := rc.byMode[m].Of(s); got != want[m][s] {
				t.Errorf("route %s requests[%v][%v]: got %v, want %v", route, m, s, got, want[m][s])
			}
		}
	}
}

// wantReasons checks the rejection counters of route: exactly want per
// reason, zero elsewhere.
func wantReasons(t testing.TB, b *Bridge, route string, want map[Reason]uint64) {
	t.Helper()
	rc := routeCounts(t, b, route)
	for r := Reason(0); r < numReasons; r++ {
		if got := rc.Rejections.Of(r); got != want[r] {
			t.Errorf("route %s rejections[%v]: got %v, want %v", route, r, got, want[r])
		}
	}
}
