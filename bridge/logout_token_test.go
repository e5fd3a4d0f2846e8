package bridge

import (
	"net/http"
	"net/http/httptest"
	"testing"

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
// holds it (a store without delete by ID: the cookie store).
func TestLogoutRevokedSessionNeverMints(t *testing.T) {
	cs := sessions.NewCookieStore(webtest.SIDKey)
	router := newTestRouter(cs)
	b := newTestBridge(t, func(c *Config) {
		c.Sessions = StoreSource(cs, testSessionName)
		c.Routes = testRoutes
		c.Router = router
	})
	router.Use(b.Middleware)
	ts := httptest.NewServer(router)
	defer ts.Close()

	ck, _ := saveSession(t, cs, testUser("1"))
	resp := webtest.Do(t, ts.Client(), http.MethodGet, ts.URL+"/dual", nil, ck)
	if id := identityOf(t, resp); id.Subject != "1" || resp.Cookie(b.cfg.CookieName) == nil {
		t.Fatalf("cookie-store session not converted: %+v", id)
	}

	// Logout with the session cookie on a store that cannot delete by
	// ID: it succeeds (the cookie is the session), and revokes the sid.
	r := httptest.NewRequest(http.MethodPost, "/logout", nil)
	r.AddCookie(ck)
	w := httptest.NewRecorder()
	if err := b.Logout(w, r); err != nil {
		t.Fatalf("Logout on a cookie store: %v, want success", err)
	}
	if len(w.Result().Cookies()) < 2 {
		t.Errorf("Logout set %d cookies, want both cleared", len(w.Result().Cookies()))
	}

	// A replayed copy of the cookie is refused and never converted again.
	for range 3 {
		resp = webtest.Do(t, ts.Client(), http.MethodGet, ts.URL+"/dual", nil, ck)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("replayed logged-out cookie-store session: %d, want 401", resp.StatusCode)
		}
		if c := resp.Cookie(b.cfg.CookieName); c != nil && c.MaxAge > 0 {
			t.Fatal("a logged-out session was converted again")
		}
	}
	wantReasons(t, b, "/dual", map[Reason]uint64{ReasonSessionRevoked: 3})
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
