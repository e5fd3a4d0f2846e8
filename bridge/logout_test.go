// Tests of Logout and revocation (logout.go, revoke.go) across instances
// sharing a real redis-server.
package bridge

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// loFleet is a redis-server, the legacy store on it, and a signing key
// that instances share.
type loFleet struct {
	srv   *redistest.Server
	rdb   *redis.Client
	store *redisstore.Store
	key   *Key
}

func newLoFleet(t *testing.T) *loFleet {
	t.Helper()
	f := &loFleet{srv: redistest.New(t), key: newTestKey(t)}
	f.rdb = f.srv.Client()
	f.store = newTestStore(t, f.rdb, func(c *redisstore.Config) { c.Timeout = 300 * time.Millisecond })
	return f
}

// loInstance is one instance of the app: the test router with POST
// /logout (503 when the store is unavailable), the bridge's middleware,
// behind an httptest TLS server.
type loInstance struct {
	b      *Bridge
	ts     *httptest.Server
	c      *http.Client
	mu     sync.Mutex
	errors []error // what Logout returned
}

func (f *loFleet) instance(t *testing.T, run bool) *loInstance {
	t.Helper()
	in := &loInstance{}
	router := newTestRouter(f.store)
	router.HandleFunc("/logout", func(w http.ResponseWriter, r *http.Request) {
		err := in.b.Logout(w, r)
		in.mu.Lock()
		in.errors = append(in.errors, err)
		in.mu.Unlock()
		switch {
		case errors.Is(err, ErrStoreUnavailable):
			WriteError(w, r, &Rejection{Status: http.StatusServiceUnavailable, Reason: ReasonStoreUnavailable, Err: err})
		case err != nil:
			http.Error(w, "logout failed", http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}).Methods(http.MethodPost)
	in.b = newTestBridge(t, func(c *Config) {
		c.SigningKey = f.key
		c.Sessions = StoreSource(f.store, testSessionName)
		c.Redis = f.srv.Client()
		c.Routes = testRoutes
		c.Router = router
		c.FlushTimeout = 300 * time.Millisecond
	})
	router.Use(in.b.Middleware)
	in.ts = httptest.NewTLSServer(router)
	t.Cleanup(in.ts.Close)
	in.c = newJarClient(t, in.ts)
	if run {
		goRun(t, in.b)
	}
	return in
}

func (in *loInstance) lastError() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(in.errors) == 0 {
		return nil
	}
	return in.errors[len(in.errors)-1]
}

// status returns the status of GET path with tok as bearer (cookie
// false) or as the JWT cookie (cookie true), without the jar.
func (in *loInstance) status(t *testing.T, path, tok string, cookie bool) int {
	t.Helper()
	c := &http.Client{Transport: in.c.Transport, Timeout: 5 * time.Second}
	if cookie {
		return do(t, c, "GET", in.ts.URL+path, nil, &http.Cookie{Name: DefaultCookieName, Value: tok}).StatusCode
	}
	return do(t, c, "GET", in.ts.URL+path, bearer(tok)).StatusCode
}

// convert sends the session cookie to a dual route and returns the JWT
// the bridge converted it into.
func (in *loInstance) convert(t *testing.T, sess *http.Cookie) string {
	t.Helper()
	r := do(t, &http.Client{Transport: in.c.Transport}, "GET", in.ts.URL+"/dual", nil, sess)
	ck := r.cookie(DefaultCookieName)
	if r.StatusCode != 200 || ck == nil || ck.Value == "" {
		t.Fatalf("conversion: %d, Set-Cookie %q", r.StatusCode, r.Header.Values("Set-Cookie"))
	}
	return ck.Value
}

// checkLogoutCookies checks that a logout response clears both cookies
// with Path=/ and sets Clear-Site-Data.
func checkLogoutCookies(t *testing.T, r *testResponse) {
	t.Helper()
	for _, name := range []string{testSessionName, DefaultCookieName} {
		ck := r.cookie(name)
		if ck == nil {
			t.Errorf("cookie %q not cleared (Set-Cookie %q)", name, r.Header.Values("Set-Cookie"))
			continue
		}
		if ck.MaxAge >= 0 || ck.Value != "" || ck.Path != "/" || !ck.HttpOnly || !ck.Secure {
			t.Errorf("cookie %q: Max-Age %d, value %q, Path %q, HttpOnly %v, Secure %v", name, ck.MaxAge, ck.Value, ck.Path, ck.HttpOnly, ck.Secure)
		}
	}
	if got := r.Header.Get("Clear-Site-Data"); got != `"cookies"` {
		t.Errorf("Clear-Site-Data %q", got)
	}
	if got := r.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q", got)
	}
}

// TestLogoutAcrossInstances: a logout on instance A refuses the session's
// tokens (bearer and cookie, presented or not) on A at once and on B,
// which verified and cached them before, within two seconds; an instance
// started later learns it at start.
func TestLogoutAcrossInstances(t *testing.T) {
	f := newLoFleet(t)
	a, b := f.instance(t, true), f.instance(t, true)
	sess, sessID := saveSession(t, f.store, testUser("1"))
	sid := a.b.sids.sid(sessID)

	converted := a.convert(t, sess) // the JWT cookie minted from the session
	if c := tokenClaims(t, converted); c.SID != sid || c.ID == "" {
		t.Fatalf("converted token: sid %q jti %q", c.SID, c.ID)
	}
	// A token of the same session never shown at logout (another tab's,
	// a downstream call's): refused through its sid.
	sibling := mintTestToken(t, a.b, "1", func(c *Claims) { c.SID = sid })
	// An API token without sid, presented as bearer at logout: refused
	// through its jti.
	api := mintTestToken(t, a.b, "1", nil)
	// Another user's token: untouched.
	bob := mintTestToken(t, a.b, "2", func(c *Claims) { c.SID = a.b.sids.sid("bob-session") })

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
	for _, in := range []*loInstance{a, b} {
		for _, c := range append(revokedCreds, cred{"other user", bob, false}) {
			if got := in.status(t, "/jwt", c.tok, c.cookie); got != 200 {
				t.Fatalf("before logout, %s: %d", c.name, got)
			}
		}
	}

	r := do(t, &http.Client{Transport: a.c.Transport}, "POST", a.ts.URL+"/logout", bearer(api),
		sess, &http.Cookie{Name: DefaultCookieName, Value: converted})
	if r.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %d %s (error %v)", r.StatusCode, r.Body, a.lastError())
	}
	checkLogoutCookies(t, r)

	// The legacy session is gone from Redis.
	if n, err := f.rdb.Exists(context.Background(), "session_"+sessID).Result(); err != nil || n != 0 {
		t.Errorf("session key: exists %d, %v", n, err)
	}
	// On A at once.
	for _, c := range revokedCreds {
		if got := a.status(t, "/jwt", c.tok, c.cookie); got != http.StatusUnauthorized {
			t.Errorf("on A right after logout, %s: %d, want 401", c.name, got)
		}
	}
	// On B within two seconds.
	start := time.Now()
	for _, c := range revokedCreds {
		idpEventually(t, 2*time.Second-time.Since(start), "on B, "+c.name+" refused", func() bool {
			return b.status(t, "/jwt", c.tok, c.cookie) == http.StatusUnauthorized
		})
	}
	t.Logf("B refused every token %v after the logout", time.Since(start))
	// The session cookie no longer authenticates anywhere.
	for name, in := range map[string]*loInstance{"A": a, "B": b} {
		r := do(t, &http.Client{Transport: in.c.Transport}, "GET", in.ts.URL+"/dual", nil, sess)
		if r.StatusCode != http.StatusUnauthorized || r.cookie(DefaultCookieName) != nil && r.cookie(DefaultCookieName).MaxAge >= 0 {
			t.Errorf("on %s, the logged-out session cookie: %d, Set-Cookie %q", name, r.StatusCode, r.Header.Values("Set-Cookie"))
		}
	}
	// An instance started after the logout learns it from the set.
	c := f.instance(t, true)
	for _, cr := range revokedCreds {
		idpEventually(t, 2*time.Second, "on C, "+cr.name+" refused", func() bool {
			return c.status(t, "/jwt", cr.tok, cr.cookie) == http.StatusUnauthorized
		})
	}
	// Nobody else is logged out.
	for name, in := range map[string]*loInstance{"A": a, "B": b, "C": c} {
		if got := in.status(t, "/jwt", bob, false); got != 200 {
			t.Errorf("on %s, another user's token: %d", name, got)
		}
	}
	// The set in Redis holds the revocations, never the raw session ID.
	members, err := f.rdb.ZRange(context.Background(), "{sessionbridge}:revoked", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"sid:" + sid, "jti:" + tokenClaims(t, converted).ID, "jti:" + tokenClaims(t, api).ID}
	for _, m := range want {
		if !containsString(members, m) {
			t.Errorf("revocation set %q lacks %q", members, m)
		}
	}
	for _, m := range members {
		if strings.Contains(m, sessID) {
			t.Errorf("revocation set holds the raw session ID: %q", m)
		}
	}
	for _, in := range []*loInstance{a, b, c} {
		checkNoSecrets(t, logsOf(in.b).String(), sessID, sess.Value, converted, sibling, api)
	}
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// TestLogoutRedisDown: with Redis gone, logout still clears both cookies
// and denies the tokens on this instance, and its error wraps
// ErrStoreUnavailable (a 503); once Redis is back, a retried logout
// reaches the other instances.
func TestLogoutRedisDown(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(*redistest.Server)
	}{
		{"killed", (*redistest.Server).Kill},
		{"hung", (*redistest.Server).Pause},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newLoFleet(t)
			a, b := f.instance(t, true), f.instance(t, true)
			sess, sessID := saveSession(t, f.store, testUser("1"))
			tok := a.convert(t, sess)
			api := mintTestToken(t, a.b, "1", nil)
			if got := b.status(t, "/jwt", tok, false); got != 200 {
				t.Fatalf("before logout on B: %d", got)
			}

			tc.fault(f.srv)
			start := time.Now()
			r := do(t, &http.Client{Transport: a.c.Transport}, "POST", a.ts.URL+"/logout", bearer(api),
				sess, &http.Cookie{Name: DefaultCookieName, Value: tok})
			took := time.Since(start)
			if r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
				t.Errorf("logout with Redis %s: %d, Retry-After %q", tc.name, r.StatusCode, r.Header.Get("Retry-After"))
			}
			if err := a.lastError(); !errors.Is(err, ErrStoreUnavailable) {
				t.Errorf("Logout error %v does not wrap ErrStoreUnavailable", err)
			}
			checkLogoutCookies(t, r)
			// Bounded: the session load (300ms) and one revocation round
			// trip (FlushTimeout 300ms), with room for a slow machine.
			if took > 2*time.Second {
				t.Errorf("logout took %v with Redis %s", took, tc.name)
			}
			// This instance denies the tokens at once, without Redis.
			for _, x := range []string{tok, api} {
				if got := a.status(t, "/jwt", x, false); got != http.StatusUnauthorized {
					t.Errorf("on A after the failed logout: %d", got)
				}
			}

			if tc.name == "hung" {
				f.srv.Resume()
			} else {
				f.srv.Restart() // empty: the session is gone with it
			}
			// The client retries; now every instance learns it.
			idpEventually(t, 5*time.Second, "logout retried with Redis back", func() bool {
				r := do(t, &http.Client{Transport: a.c.Transport}, "POST", a.ts.URL+"/logout", bearer(api),
					sess, &http.Cookie{Name: DefaultCookieName, Value: tok})
				return r.StatusCode == http.StatusNoContent
			})
			for _, x := range []string{tok, api} {
				idpEventually(t, 3*time.Second, "on B, refused after the retried logout", func() bool {
					return b.status(t, "/jwt", x, false) == http.StatusUnauthorized
				})
			}
			if n, _ := f.rdb.Exists(context.Background(), "session_"+sessID).Result(); n != 0 {
				t.Error("session key still in Redis after the retried logout")
			}
		})
	}
}

// TestLogoutDirect: Logout's own contract, on a recorder: both cookies
// cleared, the error, with no session store or no Redis at all.
func TestLogoutDirect(t *testing.T) {
	t.Run("no Redis, no sessions", func(t *testing.T) {
		b := newTestBridge(t, nil)
		tok := mintTestToken(t, b, "alice", func(c *Claims) { c.SID = "sid-alice" })
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("POST", "https://app.test/logout", nil)
		r.AddCookie(&http.Cookie{Name: DefaultCookieName, Value: tok})
		if err := b.Logout(rec, r); err != nil {
			t.Fatalf("Logout: %v", err)
		}
		cs := rec.Result().Cookies()
		if len(cs) != 1 || cs[0].Name != DefaultCookieName || cs[0].MaxAge >= 0 || cs[0].Path != "/" {
			t.Errorf("cookies %q", rec.Header().Values("Set-Cookie"))
		}
		if rec.Header().Get("Clear-Site-Data") != `"cookies"` {
			t.Error("no Clear-Site-Data")
		}
		if err := verifyErr(b, tok); !errors.Is(err, ErrTokenRevoked) {
			t.Errorf("after logout: %v, want ErrTokenRevoked", err)
		}
		if !b.revoked.has("", "sid-alice") {
			t.Error("sid not revoked")
		}
	})
	t.Run("invalid credentials revoke nothing", func(t *testing.T) {
		b := newTestBridge(t, nil)
		forged := mintTestTokenWith(t, newTestKey(t), b, "victim", func(c *Claims) { c.ID = "victim-jti"; c.SID = "victim-sid" })
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("POST", "https://app.test/logout", nil)
		r.Header.Set("Authorization", "Bearer "+forged)
		r.AddCookie(&http.Cookie{Name: DefaultCookieName, Value: "garbage"})
		if err := b.Logout(rec, r); err != nil {
			t.Fatalf("Logout: %v", err)
		}
		if b.revoked.has("victim-jti", "victim-sid") {
			t.Error("a forged token revoked someone else's jti or sid")
		}
		victim := mintTestToken(t, b, "victim", func(c *Claims) { c.ID = "victim-jti"; c.SID = "victim-sid" })
		if err := verifyErr(b, victim); err != nil {
			t.Errorf("the victim's real token: %v", err)
		}
	})
}

// TestRevocationExpiry: revocations are forgotten after their time, in
// Redis and in every replica, and a shorter revocation never shortens a
// longer one.
func TestRevocationExpiry(t *testing.T) {
	srv := redistest.New(t)
	rdb := srv.Client()
	clock := newTestClock()
	mk := func() *Bridge {
		return newTestBridge(t, func(c *Config) { c.Redis = srv.Client(); c.Now = clock.Now; c.FlushTimeout = time.Second })
	}
	a, b := mk(), mk()
	goRun(t, a)
	goRun(t, b)
	ctx := context.Background()
	now := clock.Now()
	if err := a.revoke(ctx,
		revocation{kind: "jti", id: "short", until: now.Add(time.Minute)},
		revocation{kind: "sid", id: "long", until: now.Add(24 * time.Hour)},
	); err != nil {
		t.Fatal(err)
	}
	// A later, shorter revocation of the same sid keeps the longer time.
	if err := a.revoke(ctx, revocation{kind: "sid", id: "long", until: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	idpEventually(t, 2*time.Second, "B learns both", func() bool {
		return b.revoked.has("short", "") && b.revoked.has("", "long")
	})
	score, err := rdb.ZScore(ctx, "{sessionbridge}:revoked", "sid:long").Result()
	if err != nil || int64(score) != now.Add(24*time.Hour).Unix() {
		t.Errorf("sid:long scored %v (%v), want its 24h time", score, err)
	}
	// The set lives as long as its latest entry (plus slack), not the
	// bridge's token lifetime.
	ttl, err := rdb.TTL(ctx, "{sessionbridge}:revoked").Result()
	if err != nil || ttl < 24*time.Hour-time.Minute {
		t.Errorf("revocation set TTL %v (%v), want at least 24h", ttl, err)
	}

	// Two minutes later the jti is forgotten everywhere; the sid is not.
	clock.Advance(2 * time.Minute)
	for name, x := range map[string]*Bridge{"A": a, "B": b} {
		idpEventually(t, 3*time.Second, name+" forgets the jti", func() bool {
			x.revoked.mu.RLock()
			defer x.revoked.mu.RUnlock()
			_, ok := x.revoked.jtis["short"]
			return !ok
		})
		if !x.revoked.has("", "long") {
			t.Errorf("%s forgot the sid before its time", name)
		}
	}
	// The next revocation trims the set in Redis.
	if err := a.revoke(ctx, revocation{kind: "jti", id: "later", until: clock.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	members, _ := rdb.ZRange(ctx, "{sessionbridge}:revoked", 0, -1).Result()
	if containsString(members, "jti:short") || !containsString(members, "sid:long") || !containsString(members, "jti:later") {
		t.Errorf("revocation set %q", members)
	}
	// A new instance never learns what has expired.
	c := mk()
	goRun(t, c)
	idpEventually(t, 2*time.Second, "C learns the live ones", func() bool {
		return c.revoked.has("later", "") && c.revoked.has("", "long")
	})
	if c.revoked.has("short", "") {
		t.Error("C learnt an expired revocation")
	}

	// Without Redis, the denylist is bounded too: revoking forgets what
	// has expired.
	solo := newTestBridge(t, func(c *Config) { c.Now = clock.Now })
	for i := range 100 {
		_ = solo.revoke(ctx, revocation{kind: "jti", id: "old-" + strconv.Itoa(i), until: clock.Now().Add(time.Second)})
	}
	clock.Advance(time.Minute)
	_ = solo.revoke(ctx, revocation{kind: "jti", id: "fresh", until: clock.Now().Add(time.Minute)})
	solo.revoked.mu.RLock()
	n := len(solo.revoked.jtis)
	solo.revoked.mu.RUnlock()
	if n != 1 {
		t.Errorf("denylist without Redis holds %d entries after expiry, want 1", n)
	}
}

// TestRevocationTokenExpiry: a revoked token stays refused until its exp,
// whatever the clock does in between, and the revocation outlives the
// token by the leeway.
func TestRevocationTokenExpiry(t *testing.T) {
	clock := newTestClock()
	b := newTestBridge(t, func(c *Config) { c.Now = clock.Now })
	tok := mintTestToken(t, b, "alice", func(c *Claims) {
		c.ExpiresAt = jwt.NewNumericDate(clock.Now().Add(5 * time.Minute))
	})
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "https://app.test/logout", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	if err := b.Logout(rec, r); err != nil {
		t.Fatal(err)
	}
	jti := tokenClaims(t, tok).ID
	b.revoked.mu.RLock()
	until := b.revoked.jtis[jti]
	b.revoked.mu.RUnlock()
	if want := clock.Now().Add(5*time.Minute + b.cfg.Leeway); !until.Equal(want) {
		t.Errorf("jti denied until %v, want exp + leeway %v", until, want)
	}
	for _, step := range []time.Duration{time.Minute, 3 * time.Minute, 50 * time.Second} {
		clock.Advance(step)
		if err := verifyErr(b, tok); !errors.Is(err, ErrTokenRevoked) {
			t.Fatalf("%v after logout: %v, want ErrTokenRevoked", clock.Now().Sub(until), err)
		}
	}
}
