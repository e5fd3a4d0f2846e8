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
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
	"github.com/sessionbridge/sessionbridge/internal/bridgetest"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
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

// instance starts one instance of the app (see bridgetest.LogoutApp)
// reading s.store, signing with s.key; its Fleet (FlushTimeout 300ms, a
// client of its own) runs until the test ends.
func (s *rvShared) instance(t *testing.T) *bridgetest.LogoutApp {
	t.Helper()
	f := ftNewFleet(t, Config{Redis: s.srv.Client(), FlushTimeout: 300 * time.Millisecond})
	in := bridgetest.NewLogoutApp(t, s.store, func(c *bridge.Config) {
		c.SigningKey = s.key.Key
		c.Fleet = f
	})
	ftRun(t, f)
	return in
}

// rvSID is the sid the bridges of these tests (SIDKey bridgetest.SIDKey)
// put in the tokens they mint from the session id: the first 18 bytes of
// its HMAC-SHA256, base64url.
func rvSID(id string) string {
	m := hmac.New(sha256.New, bridgetest.SIDKey)
	m.Write([]byte(id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
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
	toks := bridgetest.NewLogoutTokens(t, a, s.key, sess, sid, rvSID("bob-session"))
	for _, in := range []*bridgetest.LogoutApp{a, b} {
		toks.CheckAccepted(t, in)
	}

	// On A at once.
	toks.LogOut(t, a, sess, s.rdb, s.store.Key(sessID))
	// On B within two seconds.
	start := time.Now()
	for _, c := range toks.Revoked {
		bridgetest.Eventually(t, 2*time.Second-time.Since(start), "on B, "+c.Name+" refused", func() bool {
			return b.Status(t, "/jwt", c.Tok, c.Cookie) == http.StatusUnauthorized
		})
	}
	t.Logf("B refused every token %v after the logout", time.Since(start))
	// The session cookie no longer authenticates anywhere.
	for name, in := range map[string]*bridgetest.LogoutApp{"A": a, "B": b} {
		in.CheckLoggedOutSession(t, "on "+name, sess)
	}
	// An instance started after the logout learns it from the set.
	c := s.instance(t)
	for _, cr := range toks.Revoked {
		bridgetest.Eventually(t, 2*time.Second, "on C, "+cr.Name+" refused", func() bool {
			return c.Status(t, "/jwt", cr.Tok, cr.Cookie) == http.StatusUnauthorized
		})
	}
	// Nobody else is logged out.
	for name, in := range map[string]*bridgetest.LogoutApp{"A": a, "B": b, "C": c} {
		if got := in.Status(t, "/jwt", toks.Other, false); got != 200 {
			t.Errorf("on %s, another user's token: got %d, want 200", name, got)
		}
	}
	// The set in Redis holds the revocations, never the raw session ID.
	members, err := s.rdb.ZRange(context.Background(), ftDefaultKeys.revoked(), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	// One entry per session (its sid covers the converted token's jti)
	// and one per token without a session.
	want := []string{"sid:" + sid, "jti:" + bridgetest.TokenClaims(t, toks.API).ID}
	slices.Sort(want)
	if !slices.Equal(members, want) {
		t.Errorf("revocation set %q, want %q", members, want)
	}
	for _, m := range members {
		if strings.Contains(m, sessID) {
			t.Errorf("revocation set holds the raw session ID: %q", m)
		}
	}
	for _, in := range []*bridgetest.LogoutApp{a, b, c} {
		bridgetest.CheckNoSecrets(t, in.Logs.String(), sessID, sess.Value, toks.Converted, toks.Sibling, toks.API)
	}
}

// TestLogoutRedisDown: with Redis gone, logout still clears both cookies
// and denies the tokens on this instance, and its error wraps
// ErrStoreUnavailable (a 503) within the session load and one
// Fleet.Revoke; once Redis is back, a retried logout reaches the other
// instances.
func TestLogoutRedisDown(t *testing.T) {
	for _, tc := range bridgetest.StoreFaults() {
		t.Run(tc.Name, func(t *testing.T) {
			s := rvNewShared(t)
			a, b := s.instance(t), s.instance(t)
			sess, sessID := bridgetest.SaveSession(t, s.store, bridgetest.User("1"))
			tok := a.Convert(t, sess)
			api := s.key.Mint(t, a.B, "1", nil)
			if got := b.Status(t, "/jwt", tok, false); got != 200 {
				t.Fatalf("before logout on B: got %d, want 200", got)
			}

			tc.Fault(s.srv)
			// Bounded: the session load (300ms) and one revocation round
			// trip (FlushTimeout 300ms).
			bridgetest.CheckLogoutStoreDown(t, a, tc.Name, api, sess, tok)

			tc.Recover(s.srv)
			// The client retries; now every instance learns it.
			bridgetest.Eventually(t, 5*time.Second, "logout retried with Redis back", func() bool {
				return a.Logout(t, api, sess, tok).StatusCode == http.StatusNoContent
			})
			for _, x := range []string{tok, api} {
				bridgetest.Eventually(t, 3*time.Second, "on B, refused after the retried logout", func() bool {
					return b.Status(t, "/jwt", x, false) == http.StatusUnauthorized
				})
			}
			if n, _ := s.rdb.Exists(context.Background(), s.store.Key(sessID)).Result(); n != 0 {
				t.Error("session key still in Redis after the retried logout")
			}
		})
	}
}

// rvNode is a Bridge with its running Fleet, for the revocation tests
// that need no HTTP server. Its only route is bridgetest.JWTRoute.
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

// denies reports whether nd refuses tok as revoked (see
// bridgetest.Verify).
func (nd rvNode) denies(t testing.TB, tok string) bool {
	t.Helper()
	return errors.Is(bridgetest.Verify(t, nd.b, tok), bridge.ErrTokenRevoked)
}

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
		f := ftNewFleet(t, Config{Redis: srv.Client(), Now: clock.Now, FlushTimeout: time.Second})
		b, _, _ := bridgetest.NewBridge(t, func(c *bridge.Config) {
			c.SigningKey = key.Key
			c.Fleet = f
			c.Now = clock.Now
			bridgetest.WithJWTRoute(c)
		})
		return rvNode{b: b, f: f}
	}
	a, b := mk(), mk()
	ftRun(t, a.f)
	ftRun(t, b.f)
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
	bridgetest.Eventually(t, 2*time.Second, "B learns both", func() bool {
		return b.denies(t, short) && b.denies(t, long)
	})
	score, err := rdb.ZScore(ctx, ftDefaultKeys.revoked(), "sid:long").Result()
	if err != nil || int64(score) != now.Add(24*time.Hour).Unix() {
		t.Errorf("sid:long scored %v (%v), want its 24h time %d", score, err, now.Add(24*time.Hour).Unix())
	}
	// The set lives as long as its latest entry (plus slack), not the
	// bridge's token lifetime.
	ttl, err := rdb.TTL(ctx, ftDefaultKeys.revoked()).Result()
	if err != nil || ttl < 24*time.Hour-time.Minute {
		t.Errorf("revocation set TTL %v (%v), want at least 24h", ttl, err)
	}

	// Two minutes later the jti is forgotten everywhere; the sid is not.
	clock.Advance(2 * time.Minute)
	for name, x := range map[string]rvNode{"A": a, "B": b} {
		bridgetest.Eventually(t, 3*time.Second, name+" forgets the jti", func() bool {
			return bridgetest.Verify(t, x.b, short) == nil
		})
		if !x.denies(t, long) {
			t.Errorf("%s forgot the sid before its time", name)
		}
	}
	// The next revocation trims the set in Redis.
	if err := a.revoke(ctx, bridge.Revocation{JTI: "later", Until: clock.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	members, _ := rdb.ZRange(ctx, ftDefaultKeys.revoked(), 0, -1).Result()
	if slices.Contains(members, "jti:short") || !slices.Contains(members, "sid:long") || !slices.Contains(members, "jti:later") {
		t.Errorf("revocation set %q, want sid:long and jti:later only", members)
	}
	// A new instance never learns what has expired.
	c := mk()
	ftRun(t, c.f)
	bridgetest.Eventually(t, 2*time.Second, "C learns the live ones", func() bool {
		return c.denies(t, later) && c.denies(t, long)
	})
	if err := bridgetest.Verify(t, c.b, short); err != nil {
		t.Errorf("C learnt an expired revocation: %v", err)
	}
}
