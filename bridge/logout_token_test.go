package bridge

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gorilla/sessions"

	"github.com/sessionbridge/sessionbridge/internal/webtest"
)

// converted logs user in with a new legacy session and converts it on
// /dual: the session cookie, its raw ID and the JWT cookie set, all
// recorded as secrets.
func (e *testEnv) converted(t *testing.T, user string) (session *http.Cookie, id string, jwt *http.Cookie) {
	t.Helper()
	session, id = e.session(t, testUser(user))
	resp := webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/dual", nil, session)
	jwt = resp.Cookie(e.b.cfg.CookieName)
	if jwt == nil {
		t.Fatalf("user %s: session not converted (%d)", user, resp.StatusCode)
	}
	e.secret(jwt.Value)
	return session, id, jwt
}

// TestLogoutWithTokenEndsSession replays issue 13's logout point: a logout
// that presents only the session's token revokes its sid; the session
// then never mints again, and is deleted the first time it is seen, on a
// legacy route too, where the legacy handler reads it as gone.
func TestLogoutWithTokenEndsSession(t *testing.T) {
	e := newTestEnv(t, nil)
	ck, id, jwtCk := e.converted(t, "1")

	// Logout with the token alone (an API client, or a browser whose
	// session cookie the app's logout already expired).
	r := httptest.NewRequest(http.MethodPost, "/logout", nil)
	r.AddCookie(jwtCk)
	if err := e.b.Logout(httptest.NewRecorder(), r); err != nil {
		t.Fatalf("Logout with a token alone: %v", err)
	}

	// The session cookie, replayed on a legacy page: nobody, nothing
	// minted, the session deleted, its cookie expired, and the legacy
	// handler reads an empty session.
	resp := webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/legacy/app", nil, ck)
	if id := identityOf(t, resp); resp.StatusCode != http.StatusOK || id.Has {
		t.Errorf("legacy page after the token's logout: %d %+v, want served with no identity", resp.StatusCode, id)
	}
	if u := resp.Header.Get("X-Session-User"); u != "<nil>" {
		t.Errorf("the legacy handler read user %q from the ended session, want none", u)
	}
	if c := resp.Cookie(testSessionName); c == nil || c.MaxAge >= 0 {
		t.Errorf("session cookie not expired")
	}
	e.store.mu.Lock()
	_, alive := e.store.sessions[id]
	e.store.mu.Unlock()
	if alive {
		t.Error("session still in the store after it was seen")
	}
	wantReasons(t, e.b, "/legacy/app", map[Reason]uint64{ReasonSessionRevoked: 1})
	wantRequests(t, e.b, "/legacy/app", map[Mode]map[Source]uint64{Legacy: {SourceRejected: 1}})

	// Deleted: the cookie is now unknown; nothing converts.
	resp = webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/dual", nil, ck)
	if resp.StatusCode != http.StatusUnauthorized || resp.Cookie(e.b.cfg.CookieName) != nil && resp.Cookie(e.b.cfg.CookieName).MaxAge > 0 {
		t.Errorf("dual after deletion: %d, want 401 and no new token", resp.StatusCode)
	}
}

// TestLogoutRevokedSessionNeverMints: a session whose sid is revoked is
// refused, not converted, on a dual route, even while the store still
// holds it. A cookie store holds it in the cookie, which no logout can
// delete: the sid stays revoked as long as a replayed copy of the cookie
// could load (the store's MaxAge), not only as long as its tokens live,
// whether the logout came with the session cookie or with a token alone.
func TestLogoutRevokedSessionNeverMints(t *testing.T) {
	tests := []struct {
		name   string
		maxAge int  // the cookie store's MaxAge, in seconds; 0 keeps its default (30 days)
		token  bool // log out with the session's token alone, not its cookie
	}{
		{name: "session cookie"},
		{name: "token alone", token: true},
		{name: "session cookie, MaxAge 2h", maxAge: 7200},
		{name: "token alone, MaxAge 2h", maxAge: 7200, token: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := sessions.NewCookieStore(webtest.SIDKey)
			if tt.maxAge != 0 {
				cs.MaxAge(tt.maxAge)
			}
			life := time.Duration(cs.Options.MaxAge) * time.Second
			clock := webtest.NewClock()
			start := clock.Now()
			router := newTestRouter(cs)
			b := newTestBridge(t, func(c *Config) {
				c.Sessions = StoreSource(cs, testSessionName)
				c.Routes = testRoutes
				c.Router = router
				c.Now = clock.Now
			})
			router.Use(b.Middleware)
			ts := httptest.NewServer(router)
			defer ts.Close()

			ck, _ := saveSession(t, cs, testUser("1"))
			resp := webtest.Do(t, ts.Client(), http.MethodGet, ts.URL+"/dual", nil, ck)
			jwtCk := resp.Cookie(b.cfg.CookieName)
			if id := identityOf(t, resp); id.Subject != "1" || jwtCk == nil {
				t.Fatalf("cookie-store session not converted: %+v", id)
			}

			// Logout on a store that cannot delete the session: it
			// succeeds (the cookie is the session), and revokes the sid.
			r := httptest.NewRequest(http.MethodPost, "/logout", nil)
			if tt.token {
				r.AddCookie(jwtCk)
			} else {
				r.AddCookie(ck)
			}
			w := httptest.NewRecorder()
			if err := b.Logout(w, r); err != nil {
				t.Fatalf("Logout on a cookie store: %v, want success", err)
			}
			if len(w.Result().Cookies()) < 2 {
				t.Errorf("Logout set %d cookies, want both cleared", len(w.Result().Cookies()))
			}
			until, _ := Denied(b, "", b.sids.sid(ck.Value))
			if until.Before(start.Add(life)) {
				t.Errorf("sid revoked until %v after logout, want at least the cookie's life %v", until.Sub(start), life)
			}

			// A replayed copy of the cookie is refused and never converted
			// again: at once, once its tokens have expired, and until the
			// cookie itself would no longer verify.
			for _, at := range []time.Duration{0, b.cfg.TokenTTL + b.cfg.Leeway + time.Minute, life - time.Minute} {
				clock.Advance(start.Add(at).Sub(clock.Now()))
				resp = webtest.Do(t, ts.Client(), http.MethodGet, ts.URL+"/dual", nil, ck)
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("replayed logged-out cookie-store session %v after logout: %d, want 401", at, resp.StatusCode)
				}
				if c := resp.Cookie(b.cfg.CookieName); c != nil && c.MaxAge > 0 {
					t.Fatalf("a logged-out session was converted again %v after logout", at)
				}
			}
			wantReasons(t, b, "/dual", map[Reason]uint64{ReasonSessionRevoked: 3})
		})
	}
}

// TestDenySessionByID: the one call an app makes when it demotes or kicks
// a user (Deny with the session's raw ID): the session's tokens are
// refused at once, its next request re-authenticates from the session
// (deleted when seen) — the raw ID is hashed and never kept.
func TestDenySessionByID(t *testing.T) {
	e := newTestEnv(t, nil)
	_, id, tok := e.converted(t, "1")
	e.b.Deny(Revocation{Session: id, Until: e.clock.Now().Add(e.b.cfg.TokenTTL)})
	if r := webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/jwt", webtest.Bearer(tok.Value)); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("token of the denied session: %d, want 401", r.StatusCode)
	}
	e.b.revoked.mu.RLock()
	_, rawKept := e.b.revoked.sids[id]
	_, hashed := e.b.revoked.sids[e.b.sids.sid(id)]
	e.b.revoked.mu.RUnlock()
	if rawKept || !hashed {
		t.Errorf("denylist: raw ID kept %v, sid kept %v; want only the sid", rawKept, hashed)
	}
	// Neither two kinds at once nor a raw ID without sessions denies anything.
	e.b.Deny(Revocation{Session: "x", JTI: "y", Until: e.clock.Now().Add(e.b.cfg.TokenTTL)})
	if _, ok := e.b.revoked.jtis["y"]; ok {
		t.Error("a Revocation with two kinds set was applied")
	}
}
