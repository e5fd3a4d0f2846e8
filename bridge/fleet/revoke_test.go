// Tests of revocations across instances sharing a real redis-server
// (revoke.go): Logout on one instance (Bridge.Deny, then Fleet.Revoke)
// reaching the others through the set and the channel, and expiring. What
// Logout does on one instance without a Fleet is tested in bridge
// (logout_test.go).
package fleet

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
	"github.com/sessionbridge/sessionbridge/internal/bridgetest"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
	"github.com/sessionbridge/sessionbridge/internal/syncbuf"
)

// rvShared is a redis-server, the legacy store on it, and a signing key
// that instances share.
type rvShared struct {
	srv   *redistest.Server
	rdb   *redis.Client
	store *redisstore.Store
	key   *bridgetest.Key
}

func rvNewShared(t *testing.T) *rvShared {
	t.Helper()
	s := &rvShared{srv: redistest.New(t), key: bridgetest.NewKey(t)}
	s.rdb = s.srv.Client()
	s.store = bridgetest.NewStore(t, s.rdb, func(c *redisstore.Config) { c.Timeout = 300 * time.Millisecond })
	return s
}

// rvInstance is one instance of the app: the router of
// bridgetest.NewRouter with POST /logout (503 when the store is
// unavailable), the bridge's middleware, behind an httptest TLS server;
// its Fleet (FlushTimeout 300ms, a client of its own) runs until the test
// ends.
type rvInstance struct {
	b      *bridge.Bridge
	f      *Fleet
	logs   *syncbuf.Buffer
	ts     *httptest.Server
	c      *http.Client
	mu     sync.Mutex
	errors []error // what Logout returned
}

func (s *rvShared) instance(t *testing.T) *rvInstance {
	t.Helper()
	in := &rvInstance{}
	router := bridgetest.NewRouter(s.store)
	router.HandleFunc("/logout", func(w http.ResponseWriter, r *http.Request) {
		err := in.b.Logout(w, r)
		in.mu.Lock()
		in.errors = append(in.errors, err)
		in.mu.Unlock()
		switch {
		case errors.Is(err, bridge.ErrStoreUnavailable):
			bridge.WriteError(w, r, &bridge.Rejection{Status: http.StatusServiceUnavailable, Reason: bridge.ReasonStoreUnavailable, Err: err})
		case err != nil:
			http.Error(w, "logout failed", http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}).Methods(http.MethodPost)
	in.f = rvNewFleet(t, Config{Redis: s.srv.Client(), FlushTimeout: 300 * time.Millisecond})
	in.b, _, in.logs = bridgetest.NewBridge(t, func(c *bridge.Config) {
		c.SigningKey = s.key.Key
		c.Sessions = bridge.StoreSource(s.store, bridgetest.SessionName)
		c.Fleet = in.f
		c.Routes = bridgetest.Routes
		c.Router = router
	})
	router.Use(in.b.Middleware)
	in.ts = httptest.NewTLSServer(router)
	t.Cleanup(in.ts.Close)
	in.c = bridgetest.NewJarClient(t, in.ts)
	rvRun(t, in.f)
	return in
}

func (in *rvInstance) lastError() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(in.errors) == 0 {
		return nil
	}
	return in.errors[len(in.errors)-1]
}

// status returns the status of GET path with tok as bearer (cookie
// false) or as the JWT cookie (cookie true), without the jar.
func (in *rvInstance) status(t *testing.T, path, tok string, cookie bool) int {
	t.Helper()
	c := &http.Client{Transport: in.c.Transport, Timeout: 5 * time.Second}
	if cookie {
		return bridgetest.Do(t, c, "GET", in.ts.URL+path, nil, &http.Cookie{Name: bridge.DefaultCookieName, Value: tok}).StatusCode
	}
	return bridgetest.Do(t, c, "GET", in.ts.URL+path, bridgetest.Bearer(tok)).StatusCode
}

// convert sends the session cookie to a dual route and returns the JWT
// the bridge converted it into.
func (in *rvInstance) convert(t *testing.T, sess *http.Cookie) string {
	t.Helper()
	r := bridgetest.Do(t, &http.Client{Transport: in.c.Transport}, "GET", in.ts.URL+"/dual", nil, sess)
	ck := r.Cookie(bridge.DefaultCookieName)
	if r.StatusCode != 200 || ck == nil || ck.Value == "" {
		t.Fatalf("conversion: %d, Set-Cookie %s", r.StatusCode, bridgetest.CookiesDesc(r.Cookies()...))
	}
	return ck.Value
}

// logout posts to /logout with the bearer api and the session and JWT
// cookies, without the jar.
func (in *rvInstance) logout(t *testing.T, api string, sess *http.Cookie, tok string) *bridgetest.Response {
	t.Helper()
	return bridgetest.Do(t, &http.Client{Transport: in.c.Transport}, "POST", in.ts.URL+"/logout", bridgetest.Bearer(api),
		sess, &http.Cookie{Name: bridge.DefaultCookieName, Value: tok})
}

// rvNewFleet is New(cfg), failing the test on an error.
func rvNewFleet(t testing.TB, cfg Config) *Fleet {
	t.Helper()
	f, err := New(cfg)
	if err != nil {
		t.Fatalf("fleet.New: %v", err)
	}
	return f
}

// rvRun runs f until the test ends, then closes it.
func rvRun(t testing.TB, f *Fleet) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = f.Close()
	})
}

// rvEventually polls cond every 10ms until it holds, failing after d.
func rvEventually(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
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

// rvSID is the sid the bridges of these tests (SIDKey bridgetest.SIDKey)
// put in the tokens they mint from the session id: the first 18 bytes of
// its HMAC-SHA256, base64url.
func rvSID(id string) string {
	m := hmac.New(sha256.New, bridgetest.SIDKey)
	m.Write([]byte(id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

// rvCheckLogoutCookies checks that a logout response clears both cookies
// with Path=/ and sets Clear-Site-Data.
func rvCheckLogoutCookies(t *testing.T, r *bridgetest.Response) {
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

// TestLogoutAcrossInstances: a logout on instance A refuses the session's
// tokens (bearer and cookie, presented or not) on A at once and on B,
// which verified and cached them before, within two seconds; an instance
// started later learns it at start.
func TestLogoutAcrossInstances(t *testing.T) {
	s := rvNewShared(t)
	a, b := s.instance(t), s.instance(t)
	sess, sessID := bridgetest.SaveSession(t, s.store, bridgetest.User("1"))
	sid := rvSID(sessID)

	converted := a.convert(t, sess) // the JWT cookie minted from the session
	if c := bridgetest.TokenClaims(t, converted); c.SID != sid || c.ID == "" {
		t.Fatalf("converted token: sid %q jti %q, want sid %q and a jti", c.SID, c.ID, sid)
	}
	// A token of the same session never shown at logout (another tab's,
	// a downstream call's): refused through its sid.
	sibling := s.key.Mint(t, a.b, "1", func(c *bridge.Claims) { c.SID = sid })
	// An API token without sid, presented as bearer at logout: refused
	// through its jti.
	api := s.key.Mint(t, a.b, "1", nil)
	// Another user's token: untouched.
	bob := s.key.Mint(t, a.b, "2", func(c *bridge.Claims) { c.SID = rvSID("bob-session") })

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
	for _, in := range []*rvInstance{a, b} {
		for _, c := range append(revokedCreds, cred{"other user", bob, false}) {
			if got := in.status(t, "/jwt", c.tok, c.cookie); got != 200 {
				t.Fatalf("before logout, %s: got %d, want 200", c.name, got)
			}
		}
	}

	r := a.logout(t, api, sess, converted)
	if r.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: got %d %s (error %v), want 204", r.StatusCode, r.Body, a.lastError())
	}
	rvCheckLogoutCookies(t, r)

	// The legacy session is gone from Redis.
	if n, err := s.rdb.Exists(context.Background(), s.store.Key(sessID)).Result(); err != nil || n != 0 {
		t.Errorf("session key: exists %d (%v), want 0", n, err)
	}
	// On A at once.
	for _, c := range revokedCreds {
		if got := a.status(t, "/jwt", c.tok, c.cookie); got != http.StatusUnauthorized {
			t.Errorf("on A right after logout, %s: got %d, want 401", c.name, got)
		}
	}
	// On B within two seconds.
	start := time.Now()
	for _, c := range revokedCreds {
		rvEventually(t, 2*time.Second-time.Since(start), "on B, "+c.name+" refused", func() bool {
			return b.status(t, "/jwt", c.tok, c.cookie) == http.StatusUnauthorized
		})
	}
	t.Logf("B refused every token %v after the logout", time.Since(start))
	// The session cookie no longer authenticates anywhere.
	for name, in := range map[string]*rvInstance{"A": a, "B": b} {
		r := bridgetest.Do(t, &http.Client{Transport: in.c.Transport}, "GET", in.ts.URL+"/dual", nil, sess)
		if ck := r.Cookie(bridge.DefaultCookieName); r.StatusCode != http.StatusUnauthorized || ck != nil && ck.MaxAge >= 0 {
			t.Errorf("on %s, the logged-out session cookie: got %d, Set-Cookie %s, want 401 and no JWT cookie", name, r.StatusCode, bridgetest.CookiesDesc(r.Cookies()...))
		}
	}
	// An instance started after the logout learns it from the set.
	c := s.instance(t)
	for _, cr := range revokedCreds {
		rvEventually(t, 2*time.Second, "on C, "+cr.name+" refused", func() bool {
			return c.status(t, "/jwt", cr.tok, cr.cookie) == http.StatusUnauthorized
		})
	}
	// Nobody else is logged out.
	for name, in := range map[string]*rvInstance{"A": a, "B": b, "C": c} {
		if got := in.status(t, "/jwt", bob, false); got != 200 {
			t.Errorf("on %s, another user's token: got %d, want 200", name, got)
		}
	}
	// The set in Redis holds the revocations, never the raw session ID.
	members, err := s.rdb.ZRange(context.Background(), "{sessionbridge}:revoked", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"sid:" + sid, "jti:" + bridgetest.TokenClaims(t, converted).ID, "jti:" + bridgetest.TokenClaims(t, api).ID}
	for _, m := range want {
		if !slices.Contains(members, m) {
			t.Errorf("revocation set %q lacks %q", members, m)
		}
	}
	for _, m := range members {
		if strings.Contains(m, sessID) {
			t.Errorf("revocation set holds the raw session ID: %q", m)
		}
	}
	for _, in := range []*rvInstance{a, b, c} {
		bridgetest.CheckNoSecrets(t, in.logs.String(), sessID, sess.Value, converted, sibling, api)
	}
}

// TestLogoutRedisDown: with Redis gone, logout still clears both cookies
// and denies the tokens on this instance, and its error wraps
// ErrStoreUnavailable (a 503) within the session load and one
// Fleet.Revoke; once Redis is back, a retried logout reaches the other
// instances.
func TestLogoutRedisDown(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(*redistest.Server)
	}{
		{"killed", (*redistest.Server).Kill},
		{"hung", (*redistest.Server).Pause},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := rvNewShared(t)
			a, b := s.instance(t), s.instance(t)
			sess, sessID := bridgetest.SaveSession(t, s.store, bridgetest.User("1"))
			tok := a.convert(t, sess)
			api := s.key.Mint(t, a.b, "1", nil)
			if got := b.status(t, "/jwt", tok, false); got != 200 {
				t.Fatalf("before logout on B: got %d, want 200", got)
			}

			tc.fault(s.srv)
			start := time.Now()
			r := a.logout(t, api, sess, tok)
			took := time.Since(start)
			if r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
				t.Errorf("logout with Redis %s: got %d, Retry-After %q, want 503 with Retry-After", tc.name, r.StatusCode, r.Header.Get("Retry-After"))
			}
			if err := a.lastError(); !errors.Is(err, bridge.ErrStoreUnavailable) {
				t.Errorf("Logout error %v does not wrap ErrStoreUnavailable", err)
			}
			rvCheckLogoutCookies(t, r)
			// Bounded: the session load (300ms) and one revocation round
			// trip (FlushTimeout 300ms), with room for a slow machine.
			if took > 2*time.Second {
				t.Errorf("logout took %v with Redis %s, want within 2s", took, tc.name)
			}
			// This instance denies the tokens at once, without Redis.
			for _, x := range []string{tok, api} {
				if got := a.status(t, "/jwt", x, false); got != http.StatusUnauthorized {
					t.Errorf("on A after the failed logout: got %d, want 401", got)
				}
			}

			if tc.name == "hung" {
				s.srv.Resume()
			} else {
				s.srv.Restart() // empty: the session is gone with it
			}
			// The client retries; now every instance learns it.
			rvEventually(t, 5*time.Second, "logout retried with Redis back", func() bool {
				return a.logout(t, api, sess, tok).StatusCode == http.StatusNoContent
			})
			for _, x := range []string{tok, api} {
				rvEventually(t, 3*time.Second, "on B, refused after the retried logout", func() bool {
					return b.status(t, "/jwt", x, false) == http.StatusUnauthorized
				})
			}
			if n, _ := s.rdb.Exists(context.Background(), s.store.Key(sessID)).Result(); n != 0 {
				t.Error("session key still in Redis after the retried logout")
			}
		})
	}
}

// rvNode is a Bridge with its running Fleet, for the revocation tests
// that need no HTTP server. Its only route, /jwt, is in jwt mode.
type rvNode struct {
	b *bridge.Bridge
	f *Fleet
}

// revoke revokes as Logout does: b.Deny here at once, then f.Revoke for
// the fleet.
func (nd rvNode) revoke(ctx context.Context, rs ...bridge.Revocation) error {
	for _, r := range rs {
		nd.b.Deny(r)
	}
	return nd.f.Revoke(ctx, rs)
}

// check is nd's decision on tok as a bearer token on /jwt: nil when it
// authenticates, else the *bridge.Rejection, which wraps why.
func (nd rvNode) check(tok string) error {
	r := httptest.NewRequest(http.MethodGet, "https://app.test/jwt", nil)
	r.Pattern = "/jwt"
	r.Header.Set("Authorization", "Bearer "+tok)
	_, err := nd.b.Check(httptest.NewRecorder(), r)
	return err
}

// denies reports whether nd refuses tok as revoked.
func (nd rvNode) denies(tok string) bool { return errors.Is(nd.check(tok), bridge.ErrTokenRevoked) }

// TestRevocationExpiry: revocations are forgotten after their time, in
// Redis and in every replica, and a shorter revocation never shortens a
// longer one. A replica holding a jti or sid refuses every token that
// carries it, whatever its time: a token of that jti accepted again means
// the replica forgot it. (The denylist of a Bridge without a Fleet is
// bridge's TestRevocationExpiryWithoutFleet.)
func TestRevocationExpiry(t *testing.T) {
	srv := redistest.New(t)
	rdb := srv.Client()
	clock := bridgetest.NewClock()
	key := bridgetest.NewKey(t)
	mk := func() rvNode {
		f := rvNewFleet(t, Config{Redis: srv.Client(), Now: clock.Now, FlushTimeout: time.Second})
		b, _, _ := bridgetest.NewBridge(t, func(c *bridge.Config) {
			c.SigningKey = key.Key
			c.Fleet = f
			c.Now = clock.Now
			c.Routes = bridge.Routes{"/jwt": bridge.JWT}
		})
		return rvNode{b: b, f: f}
	}
	a, b := mk(), mk()
	rvRun(t, a.f)
	rvRun(t, b.f)
	// Tokens living 15 minutes that carry the revoked jti, or the revoked
	// sid.
	short := key.Mint(t, a.b, "alice", func(c *bridge.Claims) { c.ID = "short" })
	long := key.Mint(t, a.b, "bob", func(c *bridge.Claims) { c.SID = "long" })
	later := key.Mint(t, a.b, "carol", func(c *bridge.Claims) { c.ID = "later" })
	ctx := context.Background()
	now := clock.Now()
	if err := a.revoke(ctx,
		bridge.Revocation{JTI: "short", Until: now.Add(time.Minute)},
		bridge.Revocation{SID: "long", Until: now.Add(24 * time.Hour)},
	); err != nil {
		t.Fatal(err)
	}
	// A later, shorter revocation of the same sid keeps the longer time.
	if err := a.revoke(ctx, bridge.Revocation{SID: "long", Until: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	rvEventually(t, 2*time.Second, "B learns both", func() bool {
		return b.denies(short) && b.denies(long)
	})
	score, err := rdb.ZScore(ctx, "{sessionbridge}:revoked", "sid:long").Result()
	if err != nil || int64(score) != now.Add(24*time.Hour).Unix() {
		t.Errorf("sid:long scored %v (%v), want its 24h time %d", score, err, now.Add(24*time.Hour).Unix())
	}
	// The set lives as long as its latest entry (plus slack), not the
	// bridge's token lifetime.
	ttl, err := rdb.TTL(ctx, "{sessionbridge}:revoked").Result()
	if err != nil || ttl < 24*time.Hour-time.Minute {
		t.Errorf("revocation set TTL %v (%v), want at least 24h", ttl, err)
	}

	// Two minutes later the jti is forgotten everywhere; the sid is not.
	clock.Advance(2 * time.Minute)
	for name, x := range map[string]rvNode{"A": a, "B": b} {
		rvEventually(t, 3*time.Second, name+" forgets the jti", func() bool {
			return x.check(short) == nil
		})
		if !x.denies(long) {
			t.Errorf("%s forgot the sid before its time", name)
		}
	}
	// The next revocation trims the set in Redis.
	if err := a.revoke(ctx, bridge.Revocation{JTI: "later", Until: clock.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	members, _ := rdb.ZRange(ctx, "{sessionbridge}:revoked", 0, -1).Result()
	if slices.Contains(members, "jti:short") || !slices.Contains(members, "sid:long") || !slices.Contains(members, "jti:later") {
		t.Errorf("revocation set %q, want sid:long and jti:later only", members)
	}
	// A new instance never learns what has expired.
	c := mk()
	rvRun(t, c.f)
	rvEventually(t, 2*time.Second, "C learns the live ones", func() bool {
		return c.denies(later) && c.denies(long)
	})
	if err := c.check(short); err != nil {
		t.Errorf("C learnt an expired revocation: %v", err)
	}
}
