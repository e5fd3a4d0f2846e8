package bridgetest

// Logout through an app's POST /logout, for the logout tests on one
// instance (bridge's logout_test.go, without a Fleet) and across
// instances (bridge/fleet's revoke_test.go, with one).

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
	"github.com/sessionbridge/sessionbridge/internal/syncbuf"
)

// LogoutApp is one instance of the app: the router of NewRouter with
// POST /logout (503 when the store is unavailable), the Bridge's
// middleware, behind an httptest TLS server.
type LogoutApp struct {
	B    *bridge.Bridge
	Key  *Key // B's signing key, nil if mod set another
	Logs *syncbuf.Buffer
	TS   *httptest.Server
	C    *http.Client // with a cookie jar

	mu     sync.Mutex
	errors []error // what Logout returned
}

// NewLogoutApp builds an instance reading sessions from store with
// Routes; mod (which may set a Fleet and a signing key) may change the
// configuration.
func NewLogoutApp(t testing.TB, store sessions.Store, mod func(*bridge.Config)) *LogoutApp {
	t.Helper()
	a := &LogoutApp{}
	router := NewRouter(store)
	router.HandleFunc("/logout", func(w http.ResponseWriter, r *http.Request) {
		err := a.B.Logout(w, r)
		a.mu.Lock()
		a.errors = append(a.errors, err)
		a.mu.Unlock()
		switch {
		case errors.Is(err, bridge.ErrStoreUnavailable):
			bridge.WriteError(w, r, &bridge.Rejection{Status: http.StatusServiceUnavailable, Reason: bridge.ReasonStoreUnavailable, Err: err})
		case err != nil:
			http.Error(w, "logout failed", http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}).Methods(http.MethodPost)
	a.B, a.Key, a.Logs = NewBridge(t, func(c *bridge.Config) {
		c.Sessions = bridge.StoreSource(store, SessionName)
		c.Routes = Routes
		c.Router = router
		if mod != nil {
			mod(c)
		}
	})
	router.Use(a.B.Middleware)
	a.TS = httptest.NewTLSServer(router)
	t.Cleanup(a.TS.Close)
	a.C = NewJarClient(t, a.TS)
	return a
}

// LastError is what the last Logout returned.
func (a *LogoutApp) LastError() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.errors) == 0 {
		return nil
	}
	return a.errors[len(a.errors)-1]
}

// Status returns the status of GET path with tok as bearer (cookie
// false) or as the JWT cookie (cookie true), without the jar.
func (a *LogoutApp) Status(t testing.TB, path, tok string, cookie bool) int {
	t.Helper()
	c := &http.Client{Transport: a.C.Transport, Timeout: 5 * time.Second}
	if cookie {
		return Do(t, c, "GET", a.TS.URL+path, nil, &http.Cookie{Name: bridge.DefaultCookieName, Value: tok}).StatusCode
	}
	return Do(t, c, "GET", a.TS.URL+path, Bearer(tok)).StatusCode
}

// Get sends GET path with cookies, without the jar.
func (a *LogoutApp) Get(t testing.TB, path string, cookies ...*http.Cookie) *Response {
	t.Helper()
	return Do(t, &http.Client{Transport: a.C.Transport}, "GET", a.TS.URL+path, nil, cookies...)
}

// Convert sends the session cookie to a dual route and returns the JWT
// the Bridge converted it into.
func (a *LogoutApp) Convert(t testing.TB, sess *http.Cookie) string {
	t.Helper()
	r := a.Get(t, "/dual", sess)
	ck := r.Cookie(bridge.DefaultCookieName)
	if r.StatusCode != 200 || ck == nil || ck.Value == "" {
		t.Fatalf("conversion: %d, Set-Cookie %s", r.StatusCode, CookiesDesc(r.Cookies()...))
	}
	return ck.Value
}

// Logout posts to /logout with the bearer api and the session and JWT
// cookies, without the jar.
func (a *LogoutApp) Logout(t testing.TB, api string, sess *http.Cookie, tok string) *Response {
	t.Helper()
	return Do(t, &http.Client{Transport: a.C.Transport}, "POST", a.TS.URL+"/logout", Bearer(api),
		sess, &http.Cookie{Name: bridge.DefaultCookieName, Value: tok})
}

// CheckLoggedOutSession checks that the logged-out session cookie no
// longer authenticates on a: 401, and no JWT cookie set.
func (a *LogoutApp) CheckLoggedOutSession(t testing.TB, what string, sess *http.Cookie) {
	t.Helper()
	r := a.Get(t, "/dual", sess)
	if ck := r.Cookie(bridge.DefaultCookieName); r.StatusCode != http.StatusUnauthorized || ck != nil && ck.MaxAge >= 0 {
		t.Errorf("%s, the logged-out session cookie: got %d, Set-Cookie %s, want 401 and no JWT cookie", what, r.StatusCode, CookiesDesc(r.Cookies()...))
	}
}

// CheckLogoutCookies checks that a logout response clears both cookies
// with Path=/ and sets Clear-Site-Data.
func CheckLogoutCookies(t testing.TB, r *Response) {
	t.Helper()
	for _, name := range []string{SessionName, bridge.DefaultCookieName} {
		ck := r.Cookie(name)
		if ck == nil {
			t.Errorf("cookie %q not cleared (Set-Cookie %s)", name, CookiesDesc(r.Cookies()...))
			continue
		}
		if ck.MaxAge >= 0 || ck.Value != "" || ck.Path != "/" || !ck.HttpOnly || !ck.Secure {
			t.Errorf("cookie %q: Max-Age %d, value %q, Path %q, HttpOnly %v, Secure %v", name, ck.MaxAge, ck.Value, ck.Path, ck.HttpOnly, ck.Secure)
		}
	}
	if got := r.Header.Get("Clear-Site-Data"); got != `"cookies"` {
		t.Errorf("Clear-Site-Data: got %q, want %q", got, `"cookies"`)
	}
	if got := r.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control: got %q, want no-store", got)
	}
}

// TokenCred is a token presented as bearer (Cookie false) or as the JWT
// cookie.
type TokenCred struct {
	Name   string
	Tok    string
	Cookie bool
}

// LogoutTokens are the tokens of a logout test: the session's converted
// token, a sibling of the same session never shown at logout, an API
// token presented as bearer at logout, and another user's token.
type LogoutTokens struct {
	Converted, Sibling, API, Other string
	// Revoked are the ways the logout must refuse: the converted and
	// sibling tokens as bearer and as cookie, and the API token as bearer.
	Revoked []TokenCred
	// Untouched is the other user's token as bearer.
	Untouched TokenCred
}

// NewLogoutTokens converts sess on a (sid is its session's sid, checked
// in the converted token) and mints the other tokens with key: the
// sibling with sid (refused through its sid), the API token without sid
// (refused through its jti), and another user's with otherSID.
func NewLogoutTokens(t testing.TB, a *LogoutApp, key *Key, sess *http.Cookie, sid, otherSID string) *LogoutTokens {
	t.Helper()
	lt := &LogoutTokens{Converted: a.Convert(t, sess)}
	if c := TokenClaims(t, lt.Converted); c.SID != sid || c.ID == "" {
		t.Fatalf("converted token: sid %q jti %q, want sid %q and a jti", c.SID, c.ID, sid)
	}
	lt.Sibling = key.Mint(t, a.B, "1", func(c *bridge.Claims) { c.SID = sid })
	lt.API = key.Mint(t, a.B, "1", nil)
	lt.Other = key.Mint(t, a.B, "2", func(c *bridge.Claims) { c.SID = otherSID })
	lt.Revoked = []TokenCred{
		{"converted token as bearer", lt.Converted, false},
		{"converted token as cookie", lt.Converted, true},
		{"sibling token as bearer", lt.Sibling, false},
		{"sibling token as cookie", lt.Sibling, true},
		{"bearer presented at logout", lt.API, false},
	}
	lt.Untouched = TokenCred{"other user", lt.Other, false}
	return lt
}

// CheckAccepted fails the test unless every token of lt is accepted on
// a's /jwt (before the logout).
func (lt *LogoutTokens) CheckAccepted(t testing.TB, a *LogoutApp) {
	t.Helper()
	for _, c := range append(lt.Revoked, lt.Untouched) {
		if got := a.Status(t, "/jwt", c.Tok, c.Cookie); got != 200 {
			t.Fatalf("before logout, %s: got %d, want 200", c.Name, got)
		}
	}
}

// LogOut logs sess out on a, with lt.API as bearer and lt.Converted as
// the JWT cookie, and checks what a does at once: 204, both cookies
// cleared, the session's key (sessKey) gone from rdb, every revoked token
// refused.
func (lt *LogoutTokens) LogOut(t testing.TB, a *LogoutApp, sess *http.Cookie, rdb redis.UniversalClient, sessKey string) {
	t.Helper()
	r := a.Logout(t, lt.API, sess, lt.Converted)
	if r.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: got %d %s (error %v), want 204", r.StatusCode, r.Body, a.LastError())
	}
	CheckLogoutCookies(t, r)
	if n, err := rdb.Exists(context.Background(), sessKey).Result(); err != nil || n != 0 {
		t.Errorf("session key: exists %d (%v), want 0", n, err)
	}
	for _, c := range lt.Revoked {
		if got := a.Status(t, "/jwt", c.Tok, c.Cookie); got != http.StatusUnauthorized {
			t.Errorf("right after logout, %s: got %d, want 401", c.Name, got)
		}
	}
}

// StoreFault is a way Redis goes down in the logout tests, and how it
// comes back.
type StoreFault struct {
	Name           string
	Fault, Recover func(*redistest.Server)
}

// StoreFaults are Redis killed, then restarted empty (the session is gone
// with it), and Redis hung, then resumed.
func StoreFaults() []StoreFault {
	return []StoreFault{
		{"killed", (*redistest.Server).Kill, (*redistest.Server).Restart},
		{"hung", (*redistest.Server).Pause, (*redistest.Server).Resume},
	}
}

// CheckLogoutStoreDown logs out on a while its store is down: 503 with
// Retry-After, an error wrapping ErrStoreUnavailable, both cookies
// cleared, within 2s (the session load and, with a Fleet, one revocation
// round trip, with room for a slow machine), and the tokens denied on a
// at once, without Redis.
func CheckLogoutStoreDown(t *testing.T, a *LogoutApp, fault, api string, sess *http.Cookie, tok string) {
	t.Helper()
	start := time.Now()
	r := a.Logout(t, api, sess, tok)
	took := time.Since(start)
	if r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
		t.Errorf("logout with Redis %s: got %d, Retry-After %q, want 503 with Retry-After", fault, r.StatusCode, r.Header.Get("Retry-After"))
	}
	if err := a.LastError(); !errors.Is(err, bridge.ErrStoreUnavailable) {
		t.Errorf("Logout error %v does not wrap ErrStoreUnavailable", err)
	}
	CheckLogoutCookies(t, r)
	if took > 2*time.Second {
		t.Errorf("logout took %v with Redis %s, want within 2s", took, fault)
	}
	for _, x := range []string{tok, api} {
		if got := a.Status(t, "/jwt", x, false); got != http.StatusUnauthorized {
			t.Errorf("after the failed logout: got %d, want 401", got)
		}
	}
}

// JWTRoute is the route Verify checks tokens on: give it mode jwt in the
// Bridge's Config.Routes (WithJWTRoute).
const JWTRoute = "/jwt"

// WithJWTRoute makes JWTRoute, in jwt mode, the configuration's only
// route.
func WithJWTRoute(c *bridge.Config) { c.Routes = bridge.Routes{JWTRoute: bridge.JWT} }

// Verify is b's decision on tok as a bearer token on JWTRoute: nil when
// it authenticates, else the *bridge.Rejection, which wraps why
// (bridge.ErrTokenRevoked, ...).
func Verify(t testing.TB, b *bridge.Bridge, tok string) error {
	t.Helper()
	if m := b.Mode(JWTRoute); m != bridge.JWT {
		t.Fatalf("Verify: route %s is %v, want jwt (WithJWTRoute)", JWTRoute, m)
	}
	r := httptest.NewRequest(http.MethodGet, "https://app.test"+JWTRoute, nil)
	r.Pattern = JWTRoute
	r.Header.Set("Authorization", "Bearer "+tok)
	_, err := b.Check(httptest.NewRecorder(), r)
	return err
}
