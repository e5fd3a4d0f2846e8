package bridge

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sessionbridge/sessionbridge/internal/webtest"
)

// TestJWTCookieTossing replays issue 13's point 6: a sibling subdomain can
// add a second cookie of the bridge's name. With two, neither is trusted
// (counted jwt_cookie_duplicate): the session decides on dual routes, a
// jwt route refuses, and the bridge clears its cookie.
func TestJWTCookieTossing(t *testing.T) {
	e := newTestEnv(t, nil)
	victim := e.token(t, "1", nil)
	attacker := e.token(t, "666", nil)
	sess, _ := e.session(t, testUser("1"))
	two := []*http.Cookie{e.jwtCookie(attacker), e.jwtCookie(victim)}

	resp := webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/dual", nil, append(two, sess)...)
	if id := identityOf(t, resp); resp.StatusCode != http.StatusOK || id.Subject != "1" || id.Source != "session" {
		t.Errorf("dual, two JWT cookies and the victim's session: %d %+v, want the session's user 1", resp.StatusCode, id)
	}
	if c := resp.Cookie(testCookieName(e)); c == nil || c.Value == attacker || c.Value == victim {
		t.Errorf("dual: the JWT cookie is neither cleared nor replaced by the session's conversion")
	}

	resp = webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/jwt", nil, two...)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("jwt route, two JWT cookies: %d, want 401", resp.StatusCode)
	}
	resp = webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/legacy", nil, two...)
	if id := identityOf(t, resp); resp.StatusCode != http.StatusOK || id.Has {
		t.Errorf("legacy route, two JWT cookies: %d %+v, want served with no identity", resp.StatusCode, id)
	}
	for route, n := range map[string]uint64{"/dual": 1, "/jwt": 1, "/legacy": 1} {
		if got := routeCounts(t, e.b, route).Rejections.Of(ReasonCookieDuplicate); got != n {
			t.Errorf("%s: jwt_cookie_duplicate %d, want %d", route, got, n)
		}
	}
	wantRequests(t, e.b, "/legacy", map[Mode]map[Source]uint64{Legacy: {SourceRejected: 1}})

	// An empty cookie tossed before the token is a second cookie too.
	resp = webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/jwt", nil,
		&http.Cookie{Name: testCookieName(e), Value: ""}, e.jwtCookie(victim))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("an empty cookie before the token: %d, want 401", resp.StatusCode)
	}
}

func testCookieName(e *testEnv) string { return e.b.cfg.CookieName }

// TestRevocationScopedByIssuer: a logout revokes a token's jti within its
// issuer (an IdP's jti never revokes one of ours that happens to be
// equal), and an IdP token without jti can still be revoked.
func TestRevocationScopedByIssuer(t *testing.T) {
	e := newIdPEnv(t, nil)
	idpTok := idpToken(t, e.key, func(c *Claims, _ map[string]any) { c.ID = "same" })
	ownTok := e.token(t, "1", func(c *Claims) { c.ID = "same" })
	noJTI := idpToken(t, e.key, func(c *Claims, _ map[string]any) { c.ID = "" })
	e.secret(idpTok, noJTI)

	logout := func(tok string) {
		t.Helper()
		r := httptest.NewRequest(http.MethodPost, "/logout", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		if err := e.b.Logout(httptest.NewRecorder(), r); err != nil {
			t.Fatalf("Logout: %v", err)
		}
	}
	logout(idpTok)
	if err := verifyErr(e.b, idpTok); err == nil {
		t.Error("IdP token still accepted after its logout")
	}
	if err := verifyErr(e.b, ownTok); err != nil {
		t.Errorf("own token with the same jti refused after the IdP token's logout: %v", err)
	}
	logout(noJTI)
	if err := verifyErr(e.b, noJTI); err == nil {
		t.Error("IdP token without jti still accepted after its logout")
	}
	if err := verifyErr(e.b, idpToken(t, e.key, func(c *Claims, _ map[string]any) { c.ID, c.Subject = "", "someone-else" })); err != nil {
		t.Errorf("another IdP token without jti refused: %v", err)
	}
}

// TestLogsCapAttackerStrings replays issue 13's point 9: an unverified
// issuer of several KiB reaches the logs cut to a bounded length.
func TestLogsCapAttackerStrings(t *testing.T) {
	e := newTestEnv(t, nil)
	long := "https://" + strings.Repeat("a", 6000)
	tok := e.token(t, "1", func(c *Claims) { c.Issuer = long })
	resp := webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/jwt", webtest.Bearer(tok))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("token of an untrusted 6 KB issuer: %d, want 401", resp.StatusCode)
	}
	var refused string
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(line, "credential refused") {
			refused = line
		}
	}
	if refused == "" {
		t.Fatalf("no refusal logged:\n%.2000s", e.logs.String())
	}
	if len(refused) > 1024 || strings.Contains(refused, strings.Repeat("a", 100)) {
		t.Errorf("refusal log line of %d bytes carries the issuer uncut:\n%.300s…", len(refused), refused)
	}
}

// TestJWTCookieOfAnotherSession replays issue 13's point 7: a browser
// still holding user 1's JWT cookie gets a new legacy session for user 2
// (an SSO callback, an admin's "log in as": a login flow that did not
// clear the cookie). The session decides, on every route, and the JWT
// cookie is replaced; a token with its own session reads the session once
// per cookie value, then never again.
func TestJWTCookieOfAnotherSession(t *testing.T) {
	e := newTestEnv(t, nil)
	ck1, id1, tok1 := e.converted(t, "1")
	jwt1 := e.jwtCookie(tok1.Value)
	var resp *webtest.Response

	// The same session: the JWT wins with no session read — the token is
	// cached bound to its session's cookie when minted, and its sch claim
	// (a keyed hash of that cookie) binds it on any instance; a token
	// without sch (an older version's) reads the session once per cookie
	// value, then never.
	noSCH, _, err := e.b.mintFor(context.Background(), testUser("1"), 0, e.b.sids.sid(id1), "", e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	e.secret(noSCH)
	for _, tc := range []struct {
		name  string
		tok   string
		purge bool
		reads int64
	}{
		{"just minted", tok1.Value, false, 0},
		{"verified anew, sch", tok1.Value, true, 0},
		{"no sch", noSCH, false, 1},
	} {
		if tc.purge {
			e.b.verifier.cache.purge()
		}
		loads := e.store.loads.Load()
		for range 3 {
			resp = webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/dual", nil, e.jwtCookie(tc.tok), ck1)
			if id := identityOf(t, resp); id.Subject != "1" || id.Source != "jwt_cookie" {
				t.Fatalf("%s: own session and token: %+v", tc.name, id)
			}
		}
		if n := e.store.loads.Load() - loads; n != tc.reads {
			t.Errorf("%s: session reads for 3 requests with a token and its own session: %d, want %d", tc.name, n, tc.reads)
		}
	}

	// Another session in the same browser: it decides.
	ck2, _ := e.session(t, testUser("2"))
	resp = webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/dual", nil, jwt1, ck2)
	if id := identityOf(t, resp); id.Subject != "2" || id.Source != "session" {
		t.Errorf("dual: user 1's JWT cookie with user 2's session: %+v, want user 2 by the session", id)
	}
	if c := resp.Cookie(testCookieName(e)); c == nil || c.Value == tok1.Value || c.MaxAge <= 0 {
		t.Error("dual: the JWT cookie is not replaced by user 2's")
	}
	resp = webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/jwt", nil, jwt1, ck2)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("jwt route: user 1's JWT cookie with user 2's session: %d, want 401", resp.StatusCode)
	}
	resp = webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/legacy", nil, jwt1, ck2)
	if id := identityOf(t, resp); id.Subject != "2" {
		t.Errorf("legacy route: %+v, want user 2", id)
	}
	for _, route := range []string{"/dual", "/jwt", "/legacy"} {
		if got := routeCounts(t, e.b, route).Rejections.Of(ReasonCookieOtherSession); got != 1 {
			t.Errorf("%s: jwt_cookie_other_session %d, want 1", route, got)
		}
	}
}
