// Tests of Logout and of the denylist on one instance, without a Fleet:
// the session deleted, both cookies cleared, the tokens refused here at
// once, 503 when the store cannot be reached. What reaches the other
// instances through Redis is tested in bridge/fleet (revoke_test.go).
package bridge_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
	"github.com/sessionbridge/sessionbridge/internal/bridgetest"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
	"github.com/sessionbridge/sessionbridge/internal/syncbuf"
)

// lApp is one instance of the app on its own redis-server: the legacy
// store (300ms per call), the router of bridgetest.NewRouter with POST
// /logout (503 when the store is unavailable), the bridge's middleware,
// behind an httptest TLS server. It has no Fleet: revocations stay on
// this instance.
type lApp struct {
	srv    *redistest.Server
	rdb    *redis.Client
	store  *redisstore.Store
	b      *bridge.Bridge
	key    *bridgetest.Key // b's signing key
	logs   *syncbuf.Buffer
	ts     *httptest.Server
	c      *http.Client
	mu     sync.Mutex
	errors []error // what Logout returned
}

func lNewApp(t *testing.T) *lApp {
	t.Helper()
	a := &lApp{srv: redistest.New(t)}
	a.rdb = a.srv.Client()
	a.store = bridgetest.NewStore(t, a.rdb, func(c *redisstore.Config) { c.Timeout = 300 * time.Millisecond })
	router := bridgetest.NewRouter(a.store)
	router.HandleFunc("/logout", func(w http.ResponseWriter, r *http.Request) {
		err := a.b.Logout(w, r)
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
	a.b, a.key, a.logs = bridgetest.NewBridge(t, func(c *bridge.Config) {
		c.Sessions = bridge.StoreSource(a.store, bridgetest.SessionName)
		c.Routes = bridgetest.Routes
		c.Router = router
	})
	router.Use(a.b.Middleware)
	a.ts = httptest.NewTLSServer(router)
	t.Cleanup(a.ts.Close)
	a.c = bridgetest.NewJarClient(t, a.ts)
	return a
}

func (a *lApp) lastError() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.errors) == 0 {
		return nil
	}
	return a.errors[len(a.errors)-1]
}

// status returns the status of GET path with tok as bearer (cookie
// false) or as the JWT cookie (cookie true), without the jar.
func (a *lApp) status(t *testing.T, path, tok string, cookie bool) int {
	t.Helper()
	c := &http.Client{Transport: a.c.Transport, Timeout: 5 * time.Second}
	if cookie {
		return bridgetest.Do(t, c, "GET", a.ts.URL+path, nil, &http.Cookie{Name: bridge.DefaultCookieName, Value: tok}).StatusCode
	}
	return bridgetest.Do(t, c, "GET", a.ts.URL+path, bridgetest.Bearer(tok)).StatusCode
}

// convert sends the session cookie to a dual route and returns the JWT
// the bridge converted it into.
func (a *lApp) convert(t *testing.T, sess *http.Cookie) string {
	t.Helper()
	r := bridgetest.Do(t, &http.Client{Transport: a.c.Transport}, "GET", a.ts.URL+"/dual", nil, sess)
	ck := r.Cookie(bridge.DefaultCookieName)
	if r.StatusCode != 200 || ck == nil || ck.Value == "" {
		t.Fatalf("conversion: %d, Set-Cookie %s", r.StatusCode, bridgetest.CookiesDesc(r.Cookies()...))
	}
	return ck.Value
}

// logout posts to /logout with the bearer api and the session and JWT
// cookies, without the jar.
func (a *lApp) logout(t *testing.T, api string, sess *http.Cookie, tok string) *bridgetest.Response {
	t.Helper()
	return bridgetest.Do(t, &http.Client{Transport: a.c.Transport}, "POST", a.ts.URL+"/logout", bridgetest.Bearer(api),
		sess, &http.Cookie{Name: bridge.DefaultCookieName, Value: tok})
}

// lCheckLogoutCookies checks that a logout response clears both cookies
// with Path=/ and sets Clear-Site-Data.
func lCheckLogoutCookies(t *testing.T, r *bridgetest.Response) {
	t.Helper()
	for _, name := range []string{bridgetest.SessionName, bridge.DefaultCookieName} {
		ck := r.Cookie(name)
		if ck == nil {
			t.Errorf("cookie %q not cleared (Set-Cookie %s)", name, bridgetest.CookiesDesc(r.Cookies()...))
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

// lJWTRoute is the route lVerify checks tokens on: give it mode jwt in
// the Bridge's Config.Routes (lWithJWTRoute).
const lJWTRoute = "/jwt"

// lWithJWTRoute puts lJWTRoute in jwt mode.
func lWithJWTRoute(c *bridge.Config) { c.Routes = bridge.Routes{lJWTRoute: bridge.JWT} }

// lVerify is b's decision on tok as a bearer token on a jwt route: nil
// when it authenticates, else the *bridge.Rejection, which wraps why
// (bridge.ErrTokenRevoked, ...).
func lVerify(t testing.TB, b *bridge.Bridge, tok string) error {
	t.Helper()
	if m := b.Mode(lJWTRoute); m != bridge.JWT {
		t.Fatalf("lVerify: route %s is %v, want jwt (lWithJWTRoute)", lJWTRoute, m)
	}
	r := httptest.NewRequest(http.MethodGet, "https://app.test"+lJWTRoute, nil)
	r.Pattern = lJWTRoute
	r.Header.Set("Authorization", "Bearer "+tok)
	_, err := b.Check(httptest.NewRecorder(), r)
	return err
}

// lWaitFor polls cond every 10ms until it holds, failing after d.
func lWaitFor(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
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

// TestLogout: a logout deletes the legacy session from Redis, clears
// both cookies, and refuses the session's tokens (bearer and cookie,
// presented or not) on this instance at once; nobody else is logged out.
// The same logout across instances is fleet's TestLogoutAcrossInstances.
func TestLogout(t *testing.T) {
	a := lNewApp(t)
	sess, sessID := bridgetest.SaveSession(t, a.store, bridgetest.User("1"))
	sid := bridge.SIDOf(a.b, sessID)

	converted := a.convert(t, sess) // the JWT cookie minted from the session
	if c := bridgetest.TokenClaims(t, converted); c.SID != sid || c.ID == "" {
		t.Fatalf("converted token: sid %q jti %q, want sid %q and a jti", c.SID, c.ID, sid)
	}
	// A token of the same session never shown at logout (another tab's,
	// a downstream call's): refused through its sid.
	sibling := a.key.Mint(t, a.b, "1", func(c *bridge.Claims) { c.SID = sid })
	// An API token without sid, presented as bearer at logout: refused
	// through its jti.
	api := a.key.Mint(t, a.b, "1", nil)
	// Another user's token: untouched.
	bob := a.key.Mint(t, a.b, "2", func(c *bridge.Claims) { c.SID = bridge.SIDOf(a.b, "bob-session") })

	type cred struct {
		name   string
		tok    string
		cookie bool
	}
	revokedCreds := []cred{
		{"converted token as bearer", converted, false},
		{"converted token as cookie", converted, true},
		{"sibling token as bearer", sibling, false},
		{"sibling token as cookie", sibling, true},
		{"bearer presented at logout", api, false},
	}
	for _, c := range append(revokedCreds, cred{"other user", bob, false}) {
		if got := a.status(t, "/jwt", c.tok, c.cookie); got != 200 {
			t.Fatalf("before logout, %s: got %d, want 200", c.name, got)
		}
	}

	r := a.logout(t, api, sess, converted)
	if r.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: got %d %s (error %v), want 204", r.StatusCode, r.Body, a.lastError())
	}
	lCheckLogoutCookies(t, r)

	// The legacy session is gone from Redis.
	if n, err := a.rdb.Exists(context.Background(), a.store.Key(sessID)).Result(); err != nil || n != 0 {
		t.Errorf("session key: exists %d (%v), want 0", n, err)
	}
	// Refused here at once.
	for _, c := range revokedCreds {
		if got := a.status(t, "/jwt", c.tok, c.cookie); got != http.StatusUnauthorized {
			t.Errorf("right after logout, %s: got %d, want 401", c.name, got)
		}
	}
	// The denylist holds the session's sid and the presented tokens' jtis.
	if _, ok := bridge.Denied(a.b, "", sid); !ok {
		t.Errorf("sid %q not denied", sid)
	}
	for _, tok := range []string{converted, api} {
		if jti := bridgetest.TokenClaims(t, tok).ID; !lDenied(a.b, jti) {
			t.Errorf("jti %q not denied", jti)
		}
	}
	// The session cookie no longer authenticates.
	r = bridgetest.Do(t, &http.Client{Transport: a.c.Transport}, "GET", a.ts.URL+"/dual", nil, sess)
	if ck := r.Cookie(bridge.DefaultCookieName); r.StatusCode != http.StatusUnauthorized || ck != nil && ck.MaxAge >= 0 {
		t.Errorf("the logged-out session cookie: got %d, Set-Cookie %s, want 401 and no JWT cookie", r.StatusCode, bridgetest.CookiesDesc(r.Cookies()...))
	}
	// Nobody else is logged out.
	if got := a.status(t, "/jwt", bob, false); got != 200 {
		t.Errorf("another user's token: got %d, want 200", got)
	}
	bridgetest.CheckNoSecrets(t, a.logs.String(), sessID, sess.Value, converted, sibling, api)
}

func lDenied(b *bridge.Bridge, jti string) bool {
	_, ok := bridge.Denied(b, jti, "")
	return ok
}

// TestLogoutStoreDown: with Redis gone (killed, or hung), logout still
// clears both cookies and denies the tokens on this instance, its error
// wraps ErrStoreUnavailable (a 503) and it answers within its bound; once
// Redis is back, a retried logout succeeds and the session is gone. What
// the retried logout does for the other instances is fleet's
// TestLogoutRedisDown.
func TestLogoutStoreDown(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(*redistest.Server)
	}{
		{"killed", (*redistest.Server).Kill},
		{"hung", (*redistest.Server).Pause},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := lNewApp(t)
			sess, sessID := bridgetest.SaveSession(t, a.store, bridgetest.User("1"))
			tok := a.convert(t, sess)
			api := a.key.Mint(t, a.b, "1", nil)
			for _, x := range []string{tok, api} {
				if got := a.status(t, "/jwt", x, false); got != 200 {
					t.Fatalf("before logout: got %d, want 200", got)
				}
			}

			tc.fault(a.srv)
			start := time.Now()
			r := a.logout(t, api, sess, tok)
			took := time.Since(start)
			if r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
				t.Errorf("logout with Redis %s: got %d, Retry-After %q, want 503 with Retry-After", tc.name, r.StatusCode, r.Header.Get("Retry-After"))
			}
			if err := a.lastError(); !errors.Is(err, bridge.ErrStoreUnavailable) {
				t.Errorf("Logout error %v does not wrap ErrStoreUnavailable", err)
			}
			lCheckLogoutCookies(t, r)
			// Bounded: the session load (300ms), with room for a slow
			// machine.
			if took > 2*time.Second {
				t.Errorf("logout took %v with Redis %s, want within 2s", took, tc.name)
			}
			// This instance denies the tokens at once, without Redis.
			for _, x := range []string{tok, api} {
				if got := a.status(t, "/jwt", x, false); got != http.StatusUnauthorized {
					t.Errorf("after the failed logout: got %d, want 401", got)
				}
			}

			if tc.name == "hung" {
				a.srv.Resume()
			} else {
				a.srv.Restart() // empty: the session is gone with it
			}
			// The client retries; now it succeeds.
			lWaitFor(t, 5*time.Second, "logout retried with Redis back", func() bool {
				return a.logout(t, api, sess, tok).StatusCode == http.StatusNoContent
			})
			for _, x := range []string{tok, api} {
				if got := a.status(t, "/jwt", x, false); got != http.StatusUnauthorized {
					t.Errorf("after the retried logout: got %d, want 401", got)
				}
			}
			if n, _ := a.rdb.Exists(context.Background(), a.store.Key(sessID)).Result(); n != 0 {
				t.Error("session key still in Redis after the retried logout")
			}
		})
	}
}

// TestLogoutDirect: Logout's own contract, on a recorder: both cookies
// cleared, the error, with no session store and no Fleet at all.
func TestLogoutDirect(t *testing.T) {
	t.Run("no fleet, no sessions", func(t *testing.T) {
		b, key, _ := bridgetest.NewBridge(t, lWithJWTRoute)
		tok := key.Mint(t, b, "alice", func(c *bridge.Claims) { c.SID = "sid-alice" })
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("POST", "https://app.test/logout", nil)
		r.AddCookie(&http.Cookie{Name: bridge.DefaultCookieName, Value: tok})
		if err := b.Logout(rec, r); err != nil {
			t.Fatalf("Logout: %v", err)
		}
		cs := rec.Result().Cookies()
		if len(cs) != 1 || cs[0].Name != bridge.DefaultCookieName || cs[0].MaxAge >= 0 || cs[0].Path != "/" {
			t.Errorf("cookies %s, want only %s cleared with Path=/", bridgetest.CookiesDesc(cs...), bridge.DefaultCookieName)
		}
		if got := rec.Header().Get("Clear-Site-Data"); got != `"cookies"` {
			t.Errorf("Clear-Site-Data: got %q, want %q", got, `"cookies"`)
		}
		if err := lVerify(t, b, tok); !errors.Is(err, bridge.ErrTokenRevoked) {
			t.Errorf("after logout: got %v, want ErrTokenRevoked", err)
		}
		if _, ok := bridge.Denied(b, "", "sid-alice"); !ok {
			t.Error("sid not revoked")
		}
	})
	t.Run("invalid credentials revoke nothing", func(t *testing.T) {
		b, key, _ := bridgetest.NewBridge(t, lWithJWTRoute)
		forged := bridgetest.NewKey(t).Mint(t, b, "victim", func(c *bridge.Claims) { c.ID = "victim-jti"; c.SID = "victim-sid" })
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("POST", "https://app.test/logout", nil)
		r.Header.Set("Authorization", "Bearer "+forged)
		r.AddCookie(&http.Cookie{Name: bridge.DefaultCookieName, Value: "garbage"})
		if err := b.Logout(rec, r); err != nil {
			t.Fatalf("Logout: %v", err)
		}
		_, jti := bridge.Denied(b, "victim-jti", "")
		_, sid := bridge.Denied(b, "", "victim-sid")
		if jti || sid {
			t.Errorf("a forged token revoked someone else's jti (%v) or sid (%v)", jti, sid)
		}
		victim := key.Mint(t, b, "victim", func(c *bridge.Claims) { c.ID = "victim-jti"; c.SID = "victim-sid" })
		if err := lVerify(t, b, victim); err != nil {
			t.Errorf("the victim's real token: got %v, want nil", err)
		}
	})
}

// TestRevocationTokenExpiry: a revoked token stays refused until its exp,
// whatever the clock does in between, and the revocation outlives the
// token by the leeway.
func TestRevocationTokenExpiry(t *testing.T) {
	clock := bridgetest.NewClock()
	b, key, _ := bridgetest.NewBridge(t, func(c *bridge.Config) {
		lWithJWTRoute(c)
		c.Now = clock.Now
	})
	tok := key.Mint(t, b, "alice", func(c *bridge.Claims) {
		c.ExpiresAt = jwt.NewNumericDate(clock.Now().Add(5 * time.Minute))
	})
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "https://app.test/logout", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	if err := b.Logout(rec, r); err != nil {
		t.Fatal(err)
	}
	jti := bridgetest.TokenClaims(t, tok).ID
	until, _ := bridge.Denied(b, jti, "")
	if want := clock.Now().Add(5*time.Minute + b.Config().Leeway); !until.Equal(want) {
		t.Errorf("jti denied until %v, want exp + leeway %v", until, want)
	}
	for _, step := range []time.Duration{time.Minute, 3 * time.Minute, 50 * time.Second} {
		clock.Advance(step)
		if err := lVerify(t, b, tok); !errors.Is(err, bridge.ErrTokenRevoked) {
			t.Fatalf("%v after logout: got %v, want ErrTokenRevoked", clock.Now().Sub(until), err)
		}
	}
}

// TestRevocationExpiryWithoutFleet: without a Fleet (no resync), the
// denylist is bounded too: denying forgets what has expired. The expiry
// of revocations in Redis and in every replica is fleet's
// TestRevocationExpiry.
func TestRevocationExpiryWithoutFleet(t *testing.T) {
	clock := bridgetest.NewClock()
	solo, _, _ := bridgetest.NewBridge(t, func(c *bridge.Config) { c.Now = clock.Now })
	for i := range 100 {
		solo.Deny(bridge.Revocation{JTI: "old-" + strconv.Itoa(i), Until: clock.Now().Add(time.Second)})
	}
	clock.Advance(time.Minute)
	solo.Deny(bridge.Revocation{JTI: "fresh", Until: clock.Now().Add(time.Minute)})
	if n := bridge.DeniedJTIs(solo); n != 1 {
		t.Errorf("denylist without a fleet holds %d entries after expiry, want 1", n)
	}
}
