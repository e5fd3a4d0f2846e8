package bridge

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gorilla/sessions"

	"github.com/sessionbridge/sessionbridge/internal/webtest"
)

// wsEnv is an app whose handlers use the store WrapStore returned: a
// legacy page reading the session twice, the API migrated (it reads
// IdentityFrom only), the app's own logout (MaxAge -1 and Save), and a
// "logout" that only clears the user's values, keeping the cart.
type wsEnv struct {
	*testEnv
	wrapped sessions.Store
}

func newWSEnv(t *testing.T) *wsEnv {
	t.Helper()
	w := &wsEnv{}
	w.testEnv = newTestEnv(t, func(e *testEnv, c *Config) {
		r := c.Router
		get := func(r *http.Request) *sessions.Session {
			s, err := w.wrapped.Get(r, testSessionName)
			if err != nil {
				t.Errorf("handler: session: %v", err)
			}
			return s
		}
		r.HandleFunc("/page", func(rw http.ResponseWriter, r *http.Request) {
			get(r)
			get(r) // a template helper reading it again
			identityHandler(rw, r)
		})
		r.HandleFunc("/logout/app", func(rw http.ResponseWriter, r *http.Request) {
			s := get(r)
			s.Options.MaxAge = -1
			if err := s.Save(r, rw); err != nil {
				t.Errorf("app logout: %v", err)
			}
		}).Methods(http.MethodPost)
		r.HandleFunc("/logout/values", func(rw http.ResponseWriter, r *http.Request) {
			s := get(r)
			delete(s.Values, "user_id")
			if err := s.Save(r, rw); err != nil {
				t.Errorf("values logout: %v", err)
			}
		}).Methods(http.MethodPost)
		c.Routes = testRoutesWith(Routes{"/page": Legacy, "/logout/app": Dual, "/logout/values": Dual})
	})
	w.wrapped = w.b.WrapStore(w.store)
	return w
}

// TestWrapStoreHandlerReads: handler session reads are counted per route,
// whatever credential came; the bridge's own read is not one, and the
// handler's reads reuse it (one store read per request).
func TestWrapStoreHandlerReads(t *testing.T) {
	w := newWSEnv(t)
	sess, _ := w.session(t, testUser("1"))
	before := w.store.loads.Load()
	resp := webtest.Do(t, w.ts.Client(), http.MethodGet, w.ts.URL+"/page", nil, sess)
	if resp.StatusCode != 200 || identityOf(t, resp).Source != "session" {
		t.Fatalf("/page with the session: %d %s", resp.StatusCode, resp.Body)
	}
	if n := w.store.loads.Load() - before; n != 1 {
		t.Errorf("store reads for one request: %d, want 1 (the handler reuses the bridge's)", n)
	}
	webtest.Do(t, w.ts.Client(), http.MethodGet, w.ts.URL+"/page", nil)
	webtest.Do(t, w.ts.Client(), http.MethodGet, w.ts.URL+"/dual", nil, sess)
	if got := routeCounts(t, w.b, "/page").HandlerReads; got != 4 {
		t.Errorf("/page handler reads: %d, want 4 (2 per request)", got)
	}
	if got := routeCounts(t, w.b, "/dual").HandlerReads; got != 0 {
		t.Errorf("/dual handler reads: %d, want 0 (a migrated handler)", got)
	}
	// Config.Sessions given the wrapped store reads through the bare one.
	if src := StoreSource(w.wrapped, testSessionName).(*storeSource); src.store != sessions.Store(w.store) {
		t.Errorf("StoreSource keeps the wrapper")
	}
}

// TestWrapStoreAppLogout replays issue 14's fourth break: the app's own
// logout (gorilla's MaxAge -1 and Save) ends the JWT minted from that
// session in the same response — the cookie cleared, the sid revoked, so
// that a copy of the token is refused — without the app calling Logout.
func TestWrapStoreAppLogout(t *testing.T) {
	w := newWSEnv(t)
	sess, id := w.session(t, testUser("1"))
	jwt := w.convert(t, sess)
	resp := webtest.Do(t, w.ts.Client(), http.MethodPost, w.ts.URL+"/logout/app", nil, sess, jwt)
	if resp.StatusCode != 200 {
		t.Fatalf("app logout: %d %s", resp.StatusCode, resp.Body)
	}
	if c := resp.Cookie(w.b.cfg.CookieName); c == nil || c.MaxAge >= 0 {
		t.Errorf("JWT cookie not cleared by the app's logout: %v", resp.Header.Values("Set-Cookie"))
	}
	if _, ok := w.store.sessions[id]; ok {
		t.Errorf("session still stored")
	}
	if r := webtest.Do(t, w.ts.Client(), http.MethodGet, w.ts.URL+"/jwt", nil, jwt); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("the token after the app's logout: %d, want 401", r.StatusCode)
	}
	wantReasons(t, w.b, "/jwt", map[Reason]uint64{ReasonCookieRevoked: 1})
}

// TestWrapStoreValuesLogout: a logout that only clears the user's values
// (the session, and its cart, live on) ends the request's token and clears
// its cookie; the session is a guest's from then on, and logging in again
// in the same session converts anew.
func TestWrapStoreValuesLogout(t *testing.T) {
	w := newWSEnv(t)
	sess, id := w.session(t, map[any]any{"user_id": "1", "cart": []string{"tea"}})
	jwt := w.convert(t, sess)
	// The browser sends both cookies; the JWT authenticates.
	resp := webtest.Do(t, w.ts.Client(), http.MethodPost, w.ts.URL+"/logout/values", nil, sess, jwt)
	if c := resp.Cookie(w.b.cfg.CookieName); resp.StatusCode != 200 || c == nil || c.MaxAge >= 0 {
		t.Fatalf("values logout: %d, JWT cookie %v", resp.StatusCode, resp.Header.Values("Set-Cookie"))
	}
	if r := webtest.Do(t, w.ts.Client(), http.MethodGet, w.ts.URL+"/jwt", nil, jwt); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("the token after the values logout: %d, want 401", r.StatusCode)
	}
	if r := webtest.Do(t, w.ts.Client(), http.MethodGet, w.ts.URL+"/legacy", nil, sess); identityOf(t, r).Has {
		t.Errorf("the session after the values logout still authenticates")
	}
	if _, ok := w.store.sessions[id]; !ok {
		t.Fatal("the session (and its cart) is gone: only its user was to go")
	}
	// The same session logs in again (as gorilla apps do, same ID).
	saveValues(t, w.store, id, map[any]any{"user_id": "2", "cart": []string{"tea"}})
	again := webtest.Do(t, w.ts.Client(), http.MethodGet, w.ts.URL+"/dual", nil, sess)
	if id := identityOf(t, again); again.StatusCode != 200 || id.Subject != "2" || again.Cookie(w.b.cfg.CookieName) == nil {
		t.Errorf("the next login in the same session: %d %+v", again.StatusCode, id)
	}

	// A save that keeps the user changes nothing.
	tok2 := again.Cookie(w.b.cfg.CookieName)
	w.secret(tok2.Value)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.AddCookie(sess)
	s, _ := w.wrapped.Get(req, testSessionName)
	s.Values["cart"] = []string{"tea", "cake"}
	if err := s.Save(req, rec); err != nil || len(rec.Result().Cookies()) != 1 {
		t.Errorf("a save keeping the user: %v, cookies %v", err, rec.Header().Values("Set-Cookie"))
	}
}

// saveValues replaces the values of session id in store.
func saveValues(t *testing.T, store *memStore, id string, values map[any]any) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.AddCookie(&http.Cookie{Name: testSessionName, Value: id})
	s, err := store.New(req, testSessionName)
	if err != nil || s.IsNew {
		t.Fatalf("session %v", err)
	}
	s.Values = values
	if err := store.Save(req, httptest.NewRecorder(), s); err != nil {
		t.Fatal(err)
	}
}

// TestWrapStoreCookieStoreLogout: the app's own logout on a cookie store
// (nothing server-side to delete) refuses a replayed copy of the session
// cookie for as long as the cookie could load, not only the tokens'
// lifetime: it never converts again.
func TestWrapStoreCookieStoreLogout(t *testing.T) {
	cs := sessions.NewCookieStore([]byte("wrapstore-test-cookie-hash-key-32b!"))
	var wrapped sessions.Store
	e := newTestEnv(t, func(_ *testEnv, c *Config) {
		c.Sessions = StoreSource(cs, testSessionName)
		c.Router.HandleFunc("/logout/app", func(rw http.ResponseWriter, r *http.Request) {
			s, _ := wrapped.Get(r, testSessionName)
			s.Options.MaxAge = -1
			if err := s.Save(r, rw); err != nil {
				t.Errorf("app logout: %v", err)
			}
		}).Methods(http.MethodPost)
		c.Routes = testRoutesWith(Routes{"/logout/app": Dual})
	})
	wrapped = e.b.WrapStore(cs)
	sess, _ := saveSession(t, cs, testUser("1"))
	e.secret(sess.Value)
	jwt := e.convert(t, sess)
	resp := webtest.Do(t, e.ts.Client(), http.MethodPost, e.ts.URL+"/logout/app", nil, sess, jwt)
	if c := resp.Cookie(e.b.cfg.CookieName); resp.StatusCode != 200 || c == nil || c.MaxAge >= 0 {
		t.Fatalf("app logout: %d, JWT cookie %v", resp.StatusCode, resp.Header.Values("Set-Cookie"))
	}
	e.clock.Advance(e.b.cfg.TokenTTL + time.Hour)
	r := webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/dual", nil, sess)
	if r.StatusCode != http.StatusUnauthorized || r.Cookie(e.b.cfg.CookieName) != nil {
		t.Errorf("the replayed cookie an hour past the tokens' life: %d, cookies %v; want 401, nothing minted", r.StatusCode, r.Header.Values("Set-Cookie"))
	}
	wantReasons(t, e.b, "/dual", map[Reason]uint64{ReasonSessionRevoked: 1})
}
