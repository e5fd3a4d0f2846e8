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
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
	"github.com/sessionbridge/sessionbridge/internal/bridgetest"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// lApp is one instance of the app on its own redis-server: the legacy
// store (300ms per call) and a bridgetest.LogoutApp reading it. It has no
// Fleet: revocations stay on this instance.
type lApp struct {
	*bridgetest.LogoutApp
	srv   *redistest.Server
	rdb   *redis.Client
	store *redisstore.Store
}

func lNewApp(t *testing.T) *lApp {
	t.Helper()
	a := &lApp{srv: redistest.New(t)}
	a.rdb = a.srv.Client()
	a.store = bridgetest.NewStore(t, a.rdb, func(c *redisstore.Config) { c.Timeout = 300 * time.Millisecond })
	a.LogoutApp = bridgetest.NewLogoutApp(t, a.store, nil)
	return a
}

// TestLogout: a logout deletes the legacy session from Redis, clears
// both cookies, and refuses the session's tokens (bearer and cookie,
// presented or not) on this instance at once; nobody else is logged out.
// The same logout across instances is fleet's TestLogoutAcrossInstances.
func TestLogout(t *testing.T) {
	a := lNewApp(t)
	sess, sessID := bridgetest.SaveSession(t, a.store, bridgetest.User("1"))
	sid := bridge.SIDOf(a.B, sessID)
	toks := bridgetest.NewLogoutTokens(t, a.LogoutApp, a.Key, sess, sid, bridge.SIDOf(a.B, "bob-session"))
	toks.CheckAccepted(t, a.LogoutApp)

	toks.LogOut(t, a.LogoutApp, sess, a.rdb, a.store.Key(sessID))
	// The denylist holds the session's sid, which covers every token
	// minted from it, and the jti of the presented token without a sid:
	// one entry each.
	if _, ok := bridge.Denied(a.B, "", sid); !ok {
		t.Errorf("sid %q not denied", sid)
	}
	if jti := bridgetest.TokenClaims(t, toks.API).ID; !lDenied(a.B, jti) {
		t.Errorf("jti %q of the token without sid not denied", jti)
	}
	if jti := bridgetest.TokenClaims(t, toks.Converted).ID; lDenied(a.B, jti) {
		t.Errorf("jti %q of the converted token denied too: its sid covers it", jti)
	}
	// The session cookie no longer authenticates.
	a.CheckLoggedOutSession(t, "here", sess)
	// Nobody else is logged out.
	if got := a.Status(t, "/jwt", toks.Other, false); got != 200 {
		t.Errorf("another user's token: got %d, want 200", got)
	}
	bridgetest.CheckNoSecrets(t, a.Logs.String(), sessID, sess.Value, toks.Converted, toks.Sibling, toks.API)
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
	for _, tc := range bridgetest.StoreFaults() {
		t.Run(tc.Name, func(t *testing.T) {
			a := lNewApp(t)
			sess, sessID := bridgetest.SaveSession(t, a.store, bridgetest.User("1"))
			tok := a.Convert(t, sess)
			api := a.Key.Mint(t, a.B, "1", nil)
			for _, x := range []string{tok, api} {
				if got := a.Status(t, "/jwt", x, false); got != 200 {
					t.Fatalf("before logout: got %d, want 200", got)
				}
			}

			tc.Fault(a.srv)
			bridgetest.CheckLogoutStoreDown(t, a.LogoutApp, tc.Name, api, sess, tok)

			tc.Recover(a.srv)
			// The client retries; now it succeeds.
			bridgetest.Eventually(t, 5*time.Second, "logout retried with Redis back", func() bool {
				return a.Logout(t, api, sess, tok).StatusCode == http.StatusNoContent
			})
			for _, x := range []string{tok, api} {
				if got := a.Status(t, "/jwt", x, false); got != http.StatusUnauthorized {
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
		b, key, _ := bridgetest.NewBridge(t, bridgetest.WithJWTRoute)
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
		if err := bridgetest.Verify(t, b, tok); !errors.Is(err, bridge.ErrTokenRevoked) {
			t.Errorf("after logout: got %v, want ErrTokenRevoked", err)
		}
		if _, ok := bridge.Denied(b, "", "sid-alice"); !ok {
			t.Error("sid not revoked")
		}
	})
	t.Run("invalid credentials revoke nothing", func(t *testing.T) {
		b, key, _ := bridgetest.NewBridge(t, bridgetest.WithJWTRoute)
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
		if err := bridgetest.Verify(t, b, victim); err != nil {
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
		bridgetest.WithJWTRoute(c)
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
		if err := bridgetest.Verify(t, b, tok); !errors.Is(err, bridge.ErrTokenRevoked) {
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

// TestSubjectLogoutsFold: one subject logging out ever new tokens without
// a session (tokens a client can get cheaply) keeps a bounded denylist:
// past a few jtis its logouts fold into one revocation of the subject,
// which refuses its tokens that expire by then, not those it gets later,
// nor another subject's.
func TestSubjectLogoutsFold(t *testing.T) {
	clock := bridgetest.NewClock()
	b, key, _ := bridgetest.NewBridge(t, func(c *bridge.Config) {
		bridgetest.WithJWTRoute(c)
		c.Now = clock.Now
	})
	logout := func(tok string) {
		t.Helper()
		r := httptest.NewRequest("POST", "https://app.test/logout", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		if err := b.Logout(httptest.NewRecorder(), r); err != nil {
			t.Fatal(err)
		}
	}
	held := key.Mint(t, b, "mallory", nil)
	other := key.Mint(t, b, "alice", nil)
	for range 100 {
		tok := key.Mint(t, b, "mallory", nil)
		logout(tok)
		logout(tok) // a retry adds nothing
		if err := bridgetest.Verify(t, b, tok); !errors.Is(err, bridge.ErrTokenRevoked) {
			t.Fatalf("logged-out token: %v, want ErrTokenRevoked", err)
		}
	}
	if n := bridge.DeniedJTIs(b); n > 10 {
		t.Errorf("100 logouts of one subject left %d jtis, want a few", n)
	}
	if err := bridgetest.Verify(t, b, held); !errors.Is(err, bridge.ErrTokenRevoked) {
		t.Errorf("the subject's earlier token: %v, want ErrTokenRevoked", err)
	}
	if err := bridgetest.Verify(t, b, other); err != nil {
		t.Errorf("another subject's token: %v", err)
	}
	clock.Advance(time.Minute)
	if err := bridgetest.Verify(t, b, key.Mint(t, b, "mallory", nil)); err != nil {
		t.Errorf("the subject's token minted after the logouts: %v", err)
	}
}

// TestLogoutThroughAnyStore: Logout succeeds through every kind of
// gorilla store (204, never 503): both cookies cleared, the session's
// tokens refused, the session deleted by ID or through a Save with MaxAge
// -1 (rbcervilla/redisstore, which cannot delete by ID), and on a cookie
// store, which keeps nothing to delete, the replayed cookie refused and
// never converted. A logout with the session's token alone revokes its
// sid: the session is deleted when next seen (on a legacy page, whose
// handler reads it as gone) and never converts again.
func TestLogoutThroughAnyStore(t *testing.T) {
	srv := redistest.New(t)
	ctx := context.Background()
	for _, st := range sStores(t, srv.Client()) {
		// key is the session's Redis key, and id what its sid hashes.
		start := func(t *testing.T) (a *bridgetest.LogoutApp, sess *http.Cookie, id, key string) {
			a = bridgetest.NewLogoutApp(t, st.store, nil)
			sess, id = bridgetest.SaveSession(t, st.store, bridgetest.User("1"))
			key = "no such key"
			if st.key != nil {
				key = st.key(id)
			} else {
				id = sess.Value // a cookie store: the cookie is the session
			}
			return a, sess, id, key
		}
		t.Run(st.name+"/session cookie", func(t *testing.T) {
			a, sess, id, key := start(t)
			toks := bridgetest.NewLogoutTokens(t, a, a.Key, sess, bridge.SIDOf(a.B, id), bridge.SIDOf(a.B, "bob-session"))
			toks.LogOut(t, a, sess, srv.Client(), key)
			a.CheckLoggedOutSession(t, "replayed", sess)
			bridgetest.CheckNoSecrets(t, a.Logs.String(), id, sess.Value, toks.Converted, toks.API)
		})
		t.Run(st.name+"/token alone", func(t *testing.T) {
			a, sess, id, key := start(t)
			tok := a.Convert(t, sess)
			r := bridgetest.Do(t, &http.Client{Transport: a.C.Transport}, http.MethodPost, a.TS.URL+"/logout", nil,
				&http.Cookie{Name: bridge.DefaultCookieName, Value: tok})
			if r.StatusCode != http.StatusNoContent {
				t.Fatalf("logout with the token alone: %d (%v), want 204", r.StatusCode, a.LastError())
			}
			r = a.Get(t, "/legacy/app", sess)
			if u := r.Header.Get("X-Session-User"); r.StatusCode != http.StatusOK || u != "<nil>" {
				t.Errorf("legacy page with the logged-out session: %d, user %q; want 200 and no user", r.StatusCode, u)
			}
			if n := srv.Client().Exists(ctx, key).Val(); n != 0 {
				t.Errorf("session key after it was seen: got %d, want 0", n)
			}
			a.CheckLoggedOutSession(t, "replayed", sess)
			bridgetest.CheckNoSecrets(t, a.Logs.String(), id, sess.Value, tok)
		})
	}
}
