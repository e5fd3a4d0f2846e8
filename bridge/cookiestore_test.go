package bridge

import (
	"net/http"
	"testing"

	"github.com/gorilla/sessions"

	"github.com/sessionbridge/sessionbridge/internal/webtest"
)

// csEnv is an app on a sessions.CookieStore with an encryption key (as
// gophish's): every Save writes a new cookie value. Its handlers use the
// wrapped store: /page saves the session (a flash, a setting), /logout/values
// deletes the user and saves.
type csEnv struct {
	*testEnv
	cs      *sessions.CookieStore
	wrapped sessions.Store
}

func newCSEnv(t *testing.T) *csEnv {
	t.Helper()
	e := &csEnv{cs: sessions.NewCookieStore([]byte("cookiestore-test-hash-key-32-bytes!!"), []byte("cookiestore-block-key-32-bytes!!"))}
	save := func(rw http.ResponseWriter, r *http.Request, change func(*sessions.Session)) {
		s, err := e.wrapped.Get(r, testSessionName)
		if err != nil {
			t.Errorf("handler: session: %v", err)
			return
		}
		change(s)
		if err := s.Save(r, rw); err != nil {
			t.Errorf("handler: save: %v", err)
		}
	}
	e.testEnv = newTestEnv(t, func(_ *testEnv, c *Config) {
		c.Sessions = StoreSource(e.cs, testSessionName)
		c.Router.HandleFunc("/page", func(rw http.ResponseWriter, r *http.Request) {
			save(rw, r, func(s *sessions.Session) { s.Values["seen"] = true })
		})
		c.Router.HandleFunc("/logout/values", func(rw http.ResponseWriter, r *http.Request) {
			save(rw, r, func(s *sessions.Session) { delete(s.Values, "user_id") })
		}).Methods(http.MethodPost)
		c.Routes = testRoutesWith(Routes{"/page": Legacy, "/logout/values": Dual})
	})
	e.wrapped = e.b.WrapStore(e.cs)
	return e
}

// cookie returns the session cookie a response set.
func (e *csEnv) cookie(t *testing.T, r *webtest.Response) *http.Cookie {
	t.Helper()
	c := r.Cookie(testSessionName)
	if c == nil {
		t.Fatalf("no session cookie set: %v", r.Header.Values("Set-Cookie"))
	}
	e.secret(c.Value)
	return c
}

// TestCookieStoreSavesKeepTheToken: a cookie store's cookie changes at every
// Save; the JWT cookie minted from the session stays the user's (no
// jwt_cookie_other_session, no second conversion, jwt routes served),
// while a JWT cookie of another user still never wins over the session.
func TestCookieStoreSavesKeepTheToken(t *testing.T) {
	e := newCSEnv(t)
	sess, _ := saveSession(t, e.cs, testUser("1"))
	e.secret(sess.Value)
	jwt := e.convert(t, sess)
	for range 3 {
		sess = e.cookie(t, webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/page", nil, sess, jwt))
		for _, path := range []string{"/dual", "/jwt"} {
			r := webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+path, nil, sess, jwt)
			if id := identityOf(t, r); r.StatusCode != 200 || id.Source != "jwt_cookie" || r.Cookie(e.b.cfg.CookieName) != nil {
				t.Fatalf("%s after a Save: %d %+v, Set-Cookie %v; want the JWT cookie, untouched", path, r.StatusCode, id, r.Header.Values("Set-Cookie"))
			}
		}
	}
	if rc := routeCounts(t, e.b, "/dual"); rc.Conversions != 1 || rc.Rejections.Of(ReasonCookieOtherSession) != 0 {
		t.Errorf("/dual: %d conversions, %d jwt_cookie_other_session; want 1 and 0", rc.Conversions, rc.Rejections.Of(ReasonCookieOtherSession))
	}
	// Another user's session with this JWT cookie: the session decides.
	other, _ := saveSession(t, e.cs, testUser("2"))
	e.secret(other.Value)
	r := webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/dual", nil, other, jwt)
	if id := identityOf(t, r); id.Subject != "2" {
		t.Errorf("user 1's JWT cookie with user 2's cookie-store session: %+v, want user 2", id)
	}
	wantReasons(t, e.b, "/dual", map[Reason]uint64{ReasonCookieOtherSession: 1})
}

// TestCookieStoreValuesLogout: gophish's logout (delete the user, Save) on
// a cookie store: the token is revoked, its cookie cleared, and the cookie
// from before the logout — which still decodes — is refused rather than
// converted again; the new cookie is a guest's.
func TestCookieStoreValuesLogout(t *testing.T) {
	e := newCSEnv(t)
	before, _ := saveSession(t, e.cs, testUser("1"))
	e.secret(before.Value)
	jwt := e.convert(t, before)
	out := webtest.Do(t, e.ts.Client(), http.MethodPost, e.ts.URL+"/logout/values", nil, before, jwt)
	if c := out.Cookie(e.b.cfg.CookieName); out.StatusCode != 200 || c == nil || c.MaxAge >= 0 {
		t.Fatalf("values logout: %d, Set-Cookie %v", out.StatusCode, out.Header.Values("Set-Cookie"))
	}
	after := e.cookie(t, out)
	if r := webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/jwt", nil, jwt); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("the token after the logout: %d, want 401", r.StatusCode)
	}
	r := webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/dual", nil, before)
	if r.StatusCode != http.StatusUnauthorized || r.Cookie(e.b.cfg.CookieName) != nil {
		t.Errorf("the cookie from before the logout, replayed: %d, Set-Cookie %v; want 401, nothing minted", r.StatusCode, r.Header.Values("Set-Cookie"))
	}
	if r := webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/legacy", nil, after); identityOf(t, r).Has {
		t.Errorf("the cookie after the logout still names a user")
	}
}
