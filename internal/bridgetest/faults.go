package bridgetest

// What every instance (Node) must do while Redis is killed, restarted
// empty, paused or replaced by a blackhole, with a Fleet or without: the
// checks of the fault tests of the request path (bridge's
// faults_test.go) and of the fleet (bridge/fleet's faults_test.go).

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// FaultBound is how long a session request may take when Redis does not
// answer. The store's per-call deadline is redisstore.DefaultTimeout
// (500ms) and the requests take about that (logged); the bound leaves
// room for a loaded machine under -race, and stays far below the fault
// clients' own timeouts (FaultClientTimeout), so a request that were not
// bounded by the per-call deadline would fail it.
const FaultBound = 3 * time.Second

// FaultClientTimeout is the dial, read and write timeout of the fault
// tests' clients: long, so that only the per-call deadlines bound a call.
const FaultClientTimeout = 10 * time.Second

// FaultOptions are srv's options with FaultClientTimeout.
func FaultOptions(srv *redistest.Server) *redis.Options {
	o := srv.Options()
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = FaultClientTimeout, FaultClientTimeout, FaultClientTimeout
	return o
}

// RunHangs runs fn as two subtests with a client (FaultOptions) of a
// Redis that will hang: "paused server", on a new redis-server (srv) for
// fn to pause and resume, and "blackhole", on a listener that accepts
// connections and never answers (srv nil).
func RunHangs(t *testing.T, fn func(t *testing.T, srv *redistest.Server, rdb *redis.Client)) {
	for _, tc := range []struct {
		name   string
		paused bool
	}{
		{"paused server", true},
		{"blackhole", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var srv *redistest.Server
			var opts *redis.Options
			if tc.paused {
				srv = redistest.New(t)
				opts = FaultOptions(srv)
			} else {
				opts = FaultOptions(redistest.New(t)) // the same options, pointed at the blackhole
				opts.Addr = redistest.Blackhole(t)
			}
			rdb := redis.NewClient(opts)
			t.Cleanup(func() { _ = rdb.Close() })
			fn(t, srv, rdb)
		})
	}
}

// FaultCreds are the credentials of the fault tests.
type FaultCreds struct {
	Session   *http.Cookie // a legacy session cookie
	Bearer    string       // a valid token for the bearer header
	JWTCookie *http.Cookie // a valid token in the JWT cookie
}

// NewFaultCreds mints a bearer token and a JWT cookie with nd's key.
func NewFaultCreds(t testing.TB, nd *Node, session *http.Cookie) FaultCreds {
	t.Helper()
	return FaultCreds{
		Session:   session,
		Bearer:    nd.Key.Mint(t, nd.B, "bearer-user", nil),
		JWTCookie: &http.Cookie{Name: bridge.DefaultCookieName, Value: nd.Key.Mint(t, nd.B, "cookie-user", nil)},
	}
}

// ConvertedCreds saves a second user's session and converts it on /dual
// before an outage: the user keeps the JWT cookie (and the session
// cookie); the bearer token is cr's.
func ConvertedCreds(t testing.TB, nd *Node, cr FaultCreds) FaultCreds {
	t.Helper()
	sess, _ := SaveSession(t, nd.Store, User("2"))
	r := Do(t, nd.C, http.MethodGet, nd.URL("/dual"), nil, sess)
	converted := r.Cookie(bridge.DefaultCookieName)
	if r.StatusCode != http.StatusOK || converted == nil {
		t.Fatalf("conversion: got %d %s, want 200 and a JWT cookie", r.StatusCode, CookiesDesc(converted))
	}
	return FaultCreds{Session: sess, Bearer: cr.Bearer, JWTCookie: &http.Cookie{Name: bridge.DefaultCookieName, Value: converted.Value}}
}

// CheckJWTUnaffected sends JWT requests (bearer and cookie, dual and jwt
// routes): each must be 200 with its source and, all together, make no
// Redis call on the request path.
func CheckJWTUnaffected(t *testing.T, nd *Node, cr FaultCreds, what string) {
	t.Helper()
	before := nd.Calls.N()
	for _, tc := range []struct {
		path   string
		hdr    http.Header
		cookie *http.Cookie
		source string
	}{
		{"/dual", Bearer(cr.Bearer), nil, "jwt_bearer"},
		{"/jwt", Bearer(cr.Bearer), nil, "jwt_bearer"},
		{"/dual", nil, cr.JWTCookie, "jwt_cookie"},
		{"/jwt", nil, cr.JWTCookie, "jwt_cookie"},
		// A JWT cookie next to the session cookie: the JWT authenticates
		// and the session is not read.
		{"/dual", nil, cr.JWTCookie, "jwt_cookie"},
	} {
		cs := []*http.Cookie{}
		if tc.cookie != nil {
			cs = append(cs, tc.cookie)
			if cr.Session != nil {
				cs = append(cs, cr.Session)
			}
		}
		r := Do(t, nd.C, http.MethodGet, nd.URL(tc.path), tc.hdr, cs...)
		if r.StatusCode != http.StatusOK || r.Identity(t).Source != tc.source {
			t.Errorf("%s: %s %s: got %d %s, want 200 %s", what, tc.source, tc.path, r.StatusCode, r.Body, tc.source)
		}
	}
	if n := nd.Calls.N() - before; n != 0 {
		t.Errorf("%s: JWT requests made %d Redis calls, want 0", what, n)
	}
}

// CheckUnavailable sends session-only requests while Redis does not
// answer: 503 with Retry-After on dual routes within FaultBound, the
// session cookie kept (not cleared); legacy routes pass the request
// through (counted rejected), within the same bound.
func CheckUnavailable(t *testing.T, nd *Node, cr FaultCreds, what string) {
	t.Helper()
	for range 3 {
		start := time.Now()
		r := Do(t, nd.C, http.MethodGet, nd.URL("/dual"), nil, cr.Session)
		took := time.Since(start)
		if r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" || r.Reason() != "session_store_unavailable" {
			t.Errorf("%s: session on /dual: got %d Retry-After %q reason %q, want 503 with Retry-After, session_store_unavailable",
				what, r.StatusCode, r.Header.Get("Retry-After"), r.Reason())
		}
		if took > FaultBound {
			t.Errorf("%s: session on /dual answered in %v, want within %v", what, took, FaultBound)
		}
		if c := r.Cookie(SessionName); c != nil {
			t.Errorf("%s: the session cookie was changed: %s", what, CookiesDesc(c))
		}
		t.Logf("%s: 503 in %v", what, took.Round(time.Millisecond))
	}
	before := RouteCounts(t, nd.B, "/legacy").Requests().Of(bridge.SourceRejected)
	start := time.Now()
	r := Do(t, nd.C, http.MethodGet, nd.URL("/legacy"), nil, cr.Session)
	if took := time.Since(start); r.StatusCode != http.StatusOK || r.Identity(t).Has || took > FaultBound {
		t.Errorf("%s: session on /legacy: got %d %s in %v, want 200 without identity within %v", what, r.StatusCode, r.Body, took, FaultBound)
	}
	if got := RouteCounts(t, nd.B, "/legacy").Requests().Of(bridge.SourceRejected) - before; got != 1 {
		t.Errorf("%s: session on /legacy counted rejected %d times, want 1", what, got)
	}
}

// HangChecks are the checks while Redis hangs: CheckUnavailable,
// CheckJWTUnaffected, and a logout that clears the cookies at once and
// reports the store's failure within logoutBound (the session read's
// deadline, plus one FlushTimeout for a Fleet's Revoke), after which the
// logged-out JWT is refused here at once.
func HangChecks(t *testing.T, nd *Node, cr FaultCreds, logoutBound time.Duration) {
	t.Helper()
	CheckUnavailable(t, nd, cr, "hang")
	CheckJWTUnaffected(t, nd, cr, "hang")
	req := httptest.NewRequest(http.MethodPost, "/logout", nil)
	req.AddCookie(cr.Session)
	req.AddCookie(cr.JWTCookie)
	w := httptest.NewRecorder()
	start := time.Now()
	err := nd.B.Logout(w, req)
	took := time.Since(start)
	if !errors.Is(err, bridge.ErrStoreUnavailable) || took > logoutBound {
		t.Errorf("Logout while Redis hangs: got %v in %v, want ErrStoreUnavailable within %v", err, took, logoutBound)
	}
	cleared := map[string]bool{}
	for _, c := range w.Result().Cookies() {
		cleared[c.Name] = c.MaxAge < 0
	}
	if !cleared[SessionName] || !cleared[bridge.DefaultCookieName] || w.Header().Get("Clear-Site-Data") == "" {
		t.Errorf("Logout while Redis hangs: cookies cleared %v, Clear-Site-Data %q, want both cleared and Clear-Site-Data", cleared, w.Header().Get("Clear-Site-Data"))
	}
	// The local denial stands: the logged-out JWT is refused here at once.
	if r := Do(t, nd.C, http.MethodGet, nd.URL("/jwt"), nil, cr.JWTCookie); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("logged-out JWT cookie: got %d, want 401", r.StatusCode)
	}
}

// HangSession is the session of a hang test: saved in nd's store when
// Redis answers at first (saved true), with its Redis key; else a valid
// cookie naming a session that was never saved, and no key.
func HangSession(t testing.TB, nd *Node, saved bool) (sess *http.Cookie, key string) {
	t.Helper()
	if !saved {
		return SessionCookie(t, redisstore.NewID()), ""
	}
	sess, id := SaveSession(t, nd.Store, User("1"))
	return sess, nd.Store.Key(id)
}

// PauseAfterSession checks that sess authenticates on nd, then pauses
// srv (nd's server) until resume is called or the test ends.
func PauseAfterSession(t testing.TB, nd *Node, srv *redistest.Server, sess *http.Cookie) (resume func()) {
	t.Helper()
	if r := Do(t, nd.C, http.MethodGet, nd.URL("/dual"), nil, sess); r.StatusCode != http.StatusOK {
		t.Fatalf("session before the fault: got %d, want 200", r.StatusCode)
	}
	srv.Pause()
	var once sync.Once
	resume = func() { once.Do(srv.Resume) }
	t.Cleanup(resume)
	return resume
}

// CheckSessionKept checks, once a hung Redis answers again, that the
// session's key is still there (nothing was deleted) and that the session
// authenticates again.
func CheckSessionKept(t *testing.T, nd *Node, sess *http.Cookie, key string) {
	t.Helper()
	if n, err := nd.RDB.Exists(context.Background(), key).Result(); err != nil || n != 1 {
		t.Errorf("session key after the hang: exists %d (%v), want it kept", n, err)
	}
	if r := Do(t, nd.C, http.MethodGet, nd.URL("/dual"), nil, sess); r.StatusCode != http.StatusOK || r.Identity(t).Source != "session" {
		t.Errorf("session after resume: got %d %s, want 200 session", r.StatusCode, r.Body)
	}
}

// CheckRestartedEmpty waits until nd's client reaches its redis-server,
// restarted empty, and checks what nd does then: the sessions are gone
// (session_unknown: 401 on dual routes, passed through on legacy ones),
// JWT users, including one converted before the outage, are unaffected.
func CheckRestartedEmpty(t *testing.T, nd *Node, cr, converted FaultCreds) {
	t.Helper()
	ctx := context.Background()
	Eventually(t, 5*time.Second, "the client to reach the restarted server", func() bool {
		for range 3 { // cycle through any pooled connection to the old process
			if nd.RDB.Ping(ctx).Err() != nil {
				return false
			}
		}
		return true
	})
	if n, err := nd.RDB.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("restarted server holds %d keys (%v), want it empty", n, err)
	}
	for _, path := range []string{"/dual", "/jwt"} {
		r := Do(t, nd.C, http.MethodGet, nd.URL(path), nil, cr.Session)
		want := map[string]string{"/dual": "session_unknown", "/jwt": "session_on_jwt_route"}[path]
		if r.StatusCode != http.StatusUnauthorized || r.Reason() != want {
			t.Errorf("session on %s after the restart: got %d %q, want 401 %s", path, r.StatusCode, r.Reason(), want)
		}
	}
	if r := Do(t, nd.C, http.MethodGet, nd.URL("/legacy"), nil, cr.Session); r.StatusCode != http.StatusOK || r.Identity(t).Has {
		t.Errorf("session on /legacy after the restart: got %d %s, want 200 passed through without identity", r.StatusCode, r.Body)
	}
	CheckJWTUnaffected(t, nd, converted, "restarted")
	CheckJWTUnaffected(t, nd, cr, "restarted")
}
