// Fault tests of the request path on a single real redis-server: killed
// and restarted empty, paused (SIGSTOP: connections accepted, never
// answered), a blackhole listener in its place, an exhausted connection
// pool. The bridges here have no Fleet: what the counter flush and Close
// do through the same faults is tested in bridge/fleet (faults_test.go).
// They measure time against deadlines, so they do not run in parallel.
// Each instance (lNode) counts the Redis commands of the request path
// only (lRequestCalls), so that "zero Redis calls" means the request
// path's.
package bridge_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
	"github.com/sessionbridge/sessionbridge/internal/bridgetest"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// lFaultBound is how long a session request may take when Redis does not
// answer. The store's per-call deadline is redisstore.DefaultTimeout
// (500ms) and the requests take about that (logged); the bound leaves
// room for a loaded machine under -race, and stays far below the fault
// clients' own timeouts (lFaultClientTimeout), so a request that were not
// bounded by the per-call deadline would fail it.
const lFaultBound = 3 * time.Second

// lFaultClientTimeout is the dial, read and write timeout of the fault
// tests' clients: long, so that only the per-call deadlines bound a call.
const lFaultClientTimeout = 10 * time.Second

// lFaultOptions are srv's options with lFaultClientTimeout.
func lFaultOptions(srv *redistest.Server) *redis.Options {
	o := srv.Options()
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = lFaultClientTimeout, lFaultClientTimeout, lFaultClientTimeout
	return o
}

// lNode is one instance: a Bridge (no Fleet) with a redisstore.Store on
// rdb, the router of bridgetest.NewRouter behind a plain httptest server,
// and a counter of the Redis commands sent on the request path (calls).
type lNode struct {
	b     *bridge.Bridge
	key   *bridgetest.Key // b's signing key
	store *redisstore.Store
	rdb   redis.UniversalClient
	ts    *httptest.Server
	c     *http.Client
	calls *lRequestCalls
}

// lNewNode builds an instance on rdb; Sessions is StoreSource(store)
// unless mod changes it.
func lNewNode(t testing.TB, rdb redis.UniversalClient, mod func(*bridge.Config)) *lNode {
	t.Helper()
	nd := &lNode{rdb: rdb, calls: new(lRequestCalls)}
	rdb.AddHook(nd.calls)
	nd.store = bridgetest.NewStore(t, rdb, nil)
	router := bridgetest.NewRouter(nd.store)
	nd.b, nd.key, _ = bridgetest.NewBridge(t, func(c *bridge.Config) {
		c.Sessions = bridge.StoreSource(nd.store, bridgetest.SessionName)
		c.Routes = bridgetest.Routes
		c.Router = router
		if mod != nil {
			mod(c)
		}
	})
	router.Use(nd.b.Middleware)
	nd.ts = httptest.NewServer(lMarkRequests(router))
	t.Cleanup(nd.ts.Close)
	nd.c = &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return nd
}

// lRequestKey marks the context of requests served by a test server, so
// that lRequestCalls counts the Redis commands of the request path only.
type lRequestKey struct{}

func lMarkRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), lRequestKey{}, true)))
	})
}

// lRequestCalls is a go-redis hook counting the commands (and dials) made
// with a request's context.
type lRequestCalls struct{ n atomic.Int64 }

func (h *lRequestCalls) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if ctx.Value(lRequestKey{}) != nil {
			h.n.Add(1)
		}
		return next(ctx, network, addr)
	}
}

func (h *lRequestCalls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if ctx.Value(lRequestKey{}) != nil {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *lRequestCalls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if ctx.Value(lRequestKey{}) != nil {
			h.n.Add(int64(len(cmds)))
		}
		return next(ctx, cmds)
	}
}

// lFaultCreds are the credentials of the fault tests.
type lFaultCreds struct {
	session   *http.Cookie // a legacy session cookie
	bearer    string       // a valid token for the bearer header
	jwtCookie *http.Cookie // a valid token in the JWT cookie
}

func lNewFaultCreds(t testing.TB, nd *lNode, session *http.Cookie) lFaultCreds {
	t.Helper()
	return lFaultCreds{
		session:   session,
		bearer:    nd.key.Mint(t, nd.b, "bearer-user", nil),
		jwtCookie: &http.Cookie{Name: bridge.DefaultCookieName, Value: nd.key.Mint(t, nd.b, "cookie-user", nil)},
	}
}

// lCheckJWTUnaffected sends JWT requests (bearer and cookie, dual and jwt
// routes): each must be 200 with its source and, all together, make no
// Redis call on the request path.
func lCheckJWTUnaffected(t *testing.T, nd *lNode, cr lFaultCreds, what string) {
	t.Helper()
	before := nd.calls.n.Load()
	for _, tc := range []struct {
		path   string
		hdr    http.Header
		cookie *http.Cookie
		source string
	}{
		{"/dual", bridgetest.Bearer(cr.bearer), nil, "jwt_bearer"},
		{"/jwt", bridgetest.Bearer(cr.bearer), nil, "jwt_bearer"},
		{"/dual", nil, cr.jwtCookie, "jwt_cookie"},
		{"/jwt", nil, cr.jwtCookie, "jwt_cookie"},
		// A JWT cookie next to the session cookie: the JWT authenticates
		// and the session is not read.
		{"/dual", nil, cr.jwtCookie, "jwt_cookie"},
	} {
		cs := []*http.Cookie{}
		if tc.cookie != nil {
			cs = append(cs, tc.cookie)
			if cr.session != nil {
				cs = append(cs, cr.session)
			}
		}
		r := bridgetest.Do(t, nd.c, http.MethodGet, nd.ts.URL+tc.path, tc.hdr, cs...)
		if r.StatusCode != http.StatusOK || r.Identity(t).Source != tc.source {
			t.Errorf("%s: %s %s: got %d %s, want 200 %s", what, tc.source, tc.path, r.StatusCode, r.Body, tc.source)
		}
	}
	if n := nd.calls.n.Load() - before; n != 0 {
		t.Errorf("%s: JWT requests made %d Redis calls, want 0", what, n)
	}
}

// lCheckUnavailable sends session-only requests while Redis does not
// answer: 503 with Retry-After on dual routes within lFaultBound, the
// session cookie kept (not cleared); legacy routes pass the request
// through (counted rejected), within the same bound.
func lCheckUnavailable(t *testing.T, nd *lNode, cr lFaultCreds, what string) {
	t.Helper()
	for range 3 {
		start := time.Now()
		r := bridgetest.Do(t, nd.c, http.MethodGet, nd.ts.URL+"/dual", nil, cr.session)
		took := time.Since(start)
		if r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" || r.Reason() != "session_store_unavailable" {
			t.Errorf("%s: session on /dual: got %d Retry-After %q reason %q, want 503 with Retry-After, session_store_unavailable",
				what, r.StatusCode, r.Header.Get("Retry-After"), r.Reason())
		}
		if took > lFaultBound {
			t.Errorf("%s: session on /dual answered in %v, want within %v", what, took, lFaultBound)
		}
		if c := r.Cookie(bridgetest.SessionName); c != nil {
			t.Errorf("%s: the session cookie was changed: %s", what, bridgetest.CookiesDesc(c))
		}
		t.Logf("%s: 503 in %v", what, took.Round(time.Millisecond))
	}
	before := bridgetest.RouteCounts(t, nd.b, "/legacy").Requests().Of(bridge.SourceRejected)
	start := time.Now()
	r := bridgetest.Do(t, nd.c, http.MethodGet, nd.ts.URL+"/legacy", nil, cr.session)
	if took := time.Since(start); r.StatusCode != http.StatusOK || r.Identity(t).Has || took > lFaultBound {
		t.Errorf("%s: session on /legacy: got %d %s in %v, want 200 without identity within %v", what, r.StatusCode, r.Body, took, lFaultBound)
	}
	if got := bridgetest.RouteCounts(t, nd.b, "/legacy").Requests().Of(bridge.SourceRejected) - before; got != 1 {
		t.Errorf("%s: session on /legacy counted rejected %d times, want 1", what, got)
	}
}

// lHangChecks are the checks while Redis hangs.
func lHangChecks(t *testing.T, nd *lNode, cr lFaultCreds) {
	t.Helper()
	lCheckUnavailable(t, nd, cr, "hang")
	lCheckJWTUnaffected(t, nd, cr, "hang")
	// Logout: cookies cleared at once, the store's failure reported,
	// within the session read's deadline.
	req := httptest.NewRequest(http.MethodPost, "/logout", nil)
	req.AddCookie(cr.session)
	req.AddCookie(cr.jwtCookie)
	w := httptest.NewRecorder()
	start := time.Now()
	err := nd.b.Logout(w, req)
	took := time.Since(start)
	if !errors.Is(err, bridge.ErrStoreUnavailable) || took > lFaultBound {
		t.Errorf("Logout while Redis hangs: got %v in %v, want ErrStoreUnavailable within %v", err, took, lFaultBound)
	}
	cleared := map[string]bool{}
	for _, c := range w.Result().Cookies() {
		cleared[c.Name] = c.MaxAge < 0
	}
	if !cleared[bridgetest.SessionName] || !cleared[bridge.DefaultCookieName] || w.Header().Get("Clear-Site-Data") == "" {
		t.Errorf("Logout while Redis hangs: cookies cleared %v, Clear-Site-Data %q, want both cleared and Clear-Site-Data", cleared, w.Header().Get("Clear-Site-Data"))
	}
	// The local denial stands: the logged-out JWT is refused here at once.
	if r := bridgetest.Do(t, nd.c, http.MethodGet, nd.ts.URL+"/jwt", nil, cr.jwtCookie); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("logged-out JWT cookie: got %d, want 401", r.StatusCode)
	}
}

// lSessionCookie is a valid legacy cookie (bridgetest.KeyPairs) naming
// id, whether or not a session with that ID exists.
func lSessionCookie(t testing.TB, id string) *http.Cookie {
	t.Helper()
	v, err := securecookie.EncodeMulti(bridgetest.SessionName, id, securecookie.CodecsFromPairs(bridgetest.KeyPairs()...)...)
	if err != nil {
		t.Fatalf("encode cookie: %v", err)
	}
	return &http.Cookie{Name: bridgetest.SessionName, Value: v}
}

// lResp is an answer read without failing the test (for goroutines).
type lResp struct {
	status int
	hdr    http.Header
	reason string // WriteError's reason
	source string // IdentityHandler's source
	dur    time.Duration
	err    error
}

// lDo sends a GET to url, prepared by prep.
func lDo(c *http.Client, url string, prep func(*http.Request)) lResp {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return lResp{err: err}
	}
	prep(req)
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return lResp{err: err, dur: time.Since(start)}
	}
	defer resp.Body.Close()
	var body struct{ Reason, Source string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return lResp{status: resp.StatusCode, hdr: resp.Header, reason: body.Reason, source: body.Source, dur: time.Since(start)}
}

// TestFaultRedisRestartedEmpty: Redis is killed, then restarted empty.
// While it is down, session requests get 503 and JWT users are served
// without Redis. Once it is back, the sessions are gone (session_unknown:
// 401 on dual routes), and JWT users — including one converted before
// the outage — are unaffected. The counter flush through the same outage
// is fleet's TestFaultRedisRestartedEmpty.
func TestFaultRedisRestartedEmpty(t *testing.T) {
	ctx := context.Background()
	srv := redistest.New(t)
	rdb := srv.Client()
	nd := lNewNode(t, rdb, nil)
	sess, _ := bridgetest.SaveSession(t, nd.store, bridgetest.User("1"))
	cr := lNewFaultCreds(t, nd, sess)
	// A user converted before the outage keeps the JWT cookie (and the
	// session cookie).
	convSess, _ := bridgetest.SaveSession(t, nd.store, bridgetest.User("2"))
	r := bridgetest.Do(t, nd.c, http.MethodGet, nd.ts.URL+"/dual", nil, convSess)
	converted := r.Cookie(bridge.DefaultCookieName)
	if r.StatusCode != http.StatusOK || converted == nil {
		t.Fatalf("conversion: got %d %s, want 200 and a JWT cookie", r.StatusCode, bridgetest.CookiesDesc(converted))
	}
	convCreds := lFaultCreds{session: convSess, bearer: cr.bearer, jwtCookie: &http.Cookie{Name: bridge.DefaultCookieName, Value: converted.Value}}

	// Up: everything works.
	if r := bridgetest.Do(t, nd.c, http.MethodGet, nd.ts.URL+"/dual", nil, sess); r.StatusCode != http.StatusOK || r.Identity(t).Source != "session" {
		t.Fatalf("session before the outage: got %d %s, want 200 session", r.StatusCode, r.Body)
	}
	lCheckJWTUnaffected(t, nd, convCreds, "up")

	// Down.
	srv.Kill()
	lCheckUnavailable(t, nd, cr, "killed")
	lCheckJWTUnaffected(t, nd, convCreds, "killed")

	// Back, empty.
	srv.Restart()
	lWaitFor(t, 5*time.Second, "the client to reach the restarted server", func() bool {
		for range 3 { // cycle through any pooled connection to the old process
			if rdb.Ping(ctx).Err() != nil {
				return false
			}
		}
		return true
	})
	if n, err := rdb.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("restarted server holds %d keys (%v), want it empty", n, err)
	}
	for _, path := range []string{"/dual", "/jwt"} {
		r := bridgetest.Do(t, nd.c, http.MethodGet, nd.ts.URL+path, nil, sess)
		want := map[string]string{"/dual": "session_unknown", "/jwt": "session_on_jwt_route"}[path]
		if r.StatusCode != http.StatusUnauthorized || r.Reason() != want {
			t.Errorf("session on %s after the restart: got %d %q, want 401 %s", path, r.StatusCode, r.Reason(), want)
		}
	}
	if r := bridgetest.Do(t, nd.c, http.MethodGet, nd.ts.URL+"/legacy", nil, sess); r.StatusCode != http.StatusOK || r.Identity(t).Has {
		t.Errorf("session on /legacy after the restart: got %d %s, want 200 passed through without identity", r.StatusCode, r.Body)
	}
	lCheckJWTUnaffected(t, nd, convCreds, "restarted")
	lCheckJWTUnaffected(t, nd, cr, "restarted")
}

// TestFaultRedisHangs: Redis accepts connections and never answers — a
// paused (SIGSTOP) server, or a blackhole listener in its place. Session
// requests get 503 with Retry-After within the store's deadline; JWT
// requests get 200 with zero Redis calls; logout clears the cookies and
// reports the store unavailable within its bound. The paused server, once
// resumed, still holds the session (nothing was deleted) and serves it
// again. The flush and Close through the same hang are fleet's
// TestFaultRedisHangs.
func TestFaultRedisHangs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		paused bool // a paused server (resumed later), else a blackhole
	}{
		{"paused server", true},
		{"blackhole", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			var srv *redistest.Server
			var opts *redis.Options
			if tc.paused {
				srv = redistest.New(t)
				opts = lFaultOptions(srv)
			} else {
				opts = lFaultOptions(redistest.New(t)) // the same options, pointed at the blackhole
				opts.Addr = redistest.Blackhole(t)
			}
			rdb := redis.NewClient(opts)
			t.Cleanup(func() { _ = rdb.Close() })
			nd := lNewNode(t, rdb, nil)
			var sess *http.Cookie
			var sessKey string
			if srv != nil {
				var id string
				sess, id = bridgetest.SaveSession(t, nd.store, bridgetest.User("1"))
				sessKey = nd.store.Key(id)
			} else {
				sess = lSessionCookie(t, redisstore.NewID())
			}
			cr := lNewFaultCreds(t, nd, sess)
			if srv == nil {
				lHangChecks(t, nd, cr)
				return
			}
			if r := bridgetest.Do(t, nd.c, http.MethodGet, nd.ts.URL+"/dual", nil, sess); r.StatusCode != http.StatusOK {
				t.Fatalf("session before the fault: got %d, want 200", r.StatusCode)
			}
			srv.Pause()
			paused := true
			defer func() {
				if paused {
					srv.Resume()
				}
			}()
			lHangChecks(t, nd, cr)
			srv.Resume()
			paused = false
			if n, err := rdb.Exists(ctx, sessKey).Result(); err != nil || n != 1 {
				t.Errorf("session key after the hang: exists %d (%v), want it kept", n, err)
			}
			if r := bridgetest.Do(t, nd.c, http.MethodGet, nd.ts.URL+"/dual", nil, sess); r.StatusCode != http.StatusOK || r.Identity(t).Source != "session" {
				t.Errorf("session after resume: got %d %s, want 200 session", r.StatusCode, r.Body)
			}
		})
	}
}

// TestFaultPoolExhaustion: a client with a pool of two connections and a
// short PoolTimeout, 50 concurrent session requests: each is answered 200
// (authenticated by the session) or 503 within the deadline — never 401,
// never a hang — and the pool serves again once Redis does.
func TestFaultPoolExhaustion(t *testing.T) {
	tests := []struct {
		name   string
		pause  bool
		want   func(ok, unavailable int) bool
		wantIs string
	}{
		{"redis up", false, func(ok, _ int) bool { return ok > 0 }, "some 200"},
		{"redis paused", true, func(ok, _ int) bool { return ok == 0 }, "every request 503"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.New(t)
			opts := lFaultOptions(srv)
			opts.PoolSize = 2
			opts.PoolTimeout = 100 * time.Millisecond
			rdb := redis.NewClient(opts)
			t.Cleanup(func() { _ = rdb.Close() })
			nd := lNewNode(t, rdb, nil)
			const nSessions, concurrent = 10, 50
			var cookies []*http.Cookie
			for i := range nSessions {
				c, _ := bridgetest.SaveSession(t, nd.store, bridgetest.User(strconv.Itoa(i)))
				cookies = append(cookies, c)
			}
			// Server-side durations, measured around the whole handler.
			var mu sync.Mutex
			var durs []time.Duration
			inner := nd.ts.Config.Handler
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				start := time.Now()
				inner.ServeHTTP(w, r)
				mu.Lock()
				durs = append(durs, time.Since(start))
				mu.Unlock()
			}))
			t.Cleanup(ts.Close)
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: concurrent}}
			t.Cleanup(client.CloseIdleConnections)
			// Connections first, so that the burst is of requests.
			var warm sync.WaitGroup
			for range concurrent {
				warm.Go(func() { lDo(client, ts.URL+"/healthz", func(*http.Request) {}) })
			}
			warm.Wait()
			if tc.pause {
				srv.Pause()
				defer srv.Resume()
			}
			timeoutsBefore := rdb.PoolStats().Timeouts
			gate := make(chan struct{})
			results := make([]lResp, concurrent)
			var wg sync.WaitGroup
			for i := range concurrent {
				wg.Go(func() {
					<-gate
					results[i] = lDo(client, ts.URL+"/dual", func(r *http.Request) { r.AddCookie(cookies[i%nSessions]) })
				})
			}
			start := time.Now()
			close(gate)
			wg.Wait()
			burst := time.Since(start)
			var ok, unavailable int
			for i, r := range results {
				switch {
				case r.err != nil:
					t.Errorf("request %d: %v", i, r.err)
				case r.status == http.StatusOK && r.source == "session":
					ok++
				case r.status == http.StatusServiceUnavailable && r.hdr.Get("Retry-After") != "":
					unavailable++
				default:
					t.Errorf("request %d: got %d source %q reason %q, want 200 session or 503 with Retry-After", i, r.status, r.source, r.reason)
				}
			}
			mu.Lock()
			var slowest time.Duration
			for _, d := range durs {
				slowest = max(slowest, d)
			}
			mu.Unlock()
			if slowest > lFaultBound {
				t.Errorf("slowest request took %v in the server, want within %v", slowest, lFaultBound)
			}
			if !tc.want(ok, unavailable) {
				t.Errorf("%d × 200, %d × 503: want %s", ok, unavailable, tc.wantIs)
			}
			poolTimeouts := rdb.PoolStats().Timeouts - timeoutsBefore
			if tc.pause && poolTimeouts == 0 {
				t.Error("no pool timeout: the pool was not exhausted")
			}
			t.Logf("%d × 200, %d × 503, %d pool timeouts; burst answered in %v, slowest in the server %v",
				ok, unavailable, poolTimeouts, burst.Round(time.Millisecond), slowest.Round(time.Millisecond))
			if tc.pause {
				srv.Resume()
				// The connections that timed out were discarded: the pool
				// serves again.
				for i := range 5 {
					if r := bridgetest.Do(t, nd.c, http.MethodGet, nd.ts.URL+"/dual", nil, cookies[i]); r.StatusCode != http.StatusOK {
						t.Errorf("session after resume: got %d %s, want 200", r.StatusCode, r.Body)
					}
				}
			}
		})
	}
}
