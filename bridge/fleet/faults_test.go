// Fault tests of the fleet on a single real redis-server: killed and
// restarted empty, paused (SIGSTOP: connections accepted, never
// answered), a blackhole listener in its place, and a graceful shutdown
// under load. The counter flush keeps its batch through the outage and
// never counts twice, Close gives up within FlushTimeout and accounts for
// what it lost, and the request path of a Bridge with a Fleet stays as it
// is without one (503 for sessions, JWTs with zero Redis calls while Run
// works in the background). The request path alone through the same
// faults is tested in bridge (faults_test.go). They measure time against
// deadlines, so they do not run in parallel. Each instance (rvFaultNode)
// counts the Redis commands of the request path only (rvRequestCalls).
package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
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

// rvFaultBound is how long a session request may take when Redis does
// not answer. The store's per-call deadline is redisstore.DefaultTimeout
// (500ms) and the requests take about that (logged); the bound leaves
// room for a loaded machine under -race, and stays far below the fault
// clients' own timeouts (rvFaultClientTimeout), so a request that were
// not bounded by the per-call deadline would fail it.
const rvFaultBound = 3 * time.Second

// rvFaultClientTimeout is the dial, read and write timeout of the fault
// tests' clients: long, so that only the per-call deadlines bound a call.
const rvFaultClientTimeout = 10 * time.Second

// rvFaultOptions are srv's options with rvFaultClientTimeout.
func rvFaultOptions(srv *redistest.Server) *redis.Options {
	o := srv.Options()
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = rvFaultClientTimeout, rvFaultClientTimeout, rvFaultClientTimeout
	return o
}

// rvFaultNode is one instance: a Bridge with a redisstore.Store on rdb and
// a Fleet on rdb, the router of bridgetest.NewRouter behind a plain
// httptest server, and a counter of the Redis commands sent on the
// request path (calls).
type rvFaultNode struct {
	b     *bridge.Bridge
	f     *Fleet
	key   *bridgetest.Key // b's signing key
	store *redisstore.Store
	rdb   redis.UniversalClient
	ts    *httptest.Server
	c     *http.Client
	calls *rvRequestCalls
}

// rvNewFaultNode builds an instance on rdb with a Fleet of fc (fc.Redis
// is set here); Sessions is StoreSource(store). Its Fleet does not run.
func rvNewFaultNode(t testing.TB, rdb redis.UniversalClient, fc Config) *rvFaultNode {
	t.Helper()
	nd := &rvFaultNode{rdb: rdb, calls: new(rvRequestCalls)}
	rdb.AddHook(nd.calls)
	nd.store = bridgetest.NewStore(t, rdb, nil)
	fc.Redis = rdb
	nd.f = rvNewFleet(t, fc)
	router := bridgetest.NewRouter(nd.store)
	nd.b, nd.key, _ = bridgetest.NewBridge(t, func(c *bridge.Config) {
		c.Sessions = bridge.StoreSource(nd.store, bridgetest.SessionName)
		c.Fleet = nd.f
		c.Routes = bridgetest.Routes
		c.Router = router
	})
	router.Use(nd.b.Middleware)
	nd.ts = httptest.NewServer(rvMarkRequests(router))
	t.Cleanup(nd.ts.Close)
	nd.c = &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return nd
}

// rvRequestKey marks the context of requests served by a test server, so
// that rvRequestCalls counts the Redis commands of the request path only
// (not those of Run's flushes, mode refreshes and revocation resyncs).
type rvRequestKey struct{}

func rvMarkRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), rvRequestKey{}, true)))
	})
}

// rvRequestCalls is a go-redis hook counting the commands (and dials)
// made with a request's context.
type rvRequestCalls struct{ n atomic.Int64 }

func (h *rvRequestCalls) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if ctx.Value(rvRequestKey{}) != nil {
			h.n.Add(1)
		}
		return next(ctx, network, addr)
	}
}

func (h *rvRequestCalls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if ctx.Value(rvRequestKey{}) != nil {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *rvRequestCalls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if ctx.Value(rvRequestKey{}) != nil {
			h.n.Add(int64(len(cmds)))
		}
		return next(ctx, cmds)
	}
}

// rvFaultCreds are the credentials of the fault tests.
type rvFaultCreds struct {
	session   *http.Cookie // a legacy session cookie
	bearer    string       // a valid token for the bearer header
	jwtCookie *http.Cookie // a valid token in the JWT cookie
}

func rvNewFaultCreds(t testing.TB, nd *rvFaultNode, session *http.Cookie) rvFaultCreds {
	t.Helper()
	return rvFaultCreds{
		session:   session,
		bearer:    nd.key.Mint(t, nd.b, "bearer-user", nil),
		jwtCookie: &http.Cookie{Name: bridge.DefaultCookieName, Value: nd.key.Mint(t, nd.b, "cookie-user", nil)},
	}
}

// rvCheckJWTUnaffected sends JWT requests (bearer and cookie, dual and
// jwt routes): each must be 200 with its source and, all together, make
// no Redis call on the request path.
func rvCheckJWTUnaffected(t *testing.T, nd *rvFaultNode, cr rvFaultCreds, what string) {
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

// rvCheckUnavailable sends session-only requests while Redis does not
// answer: 503 with Retry-After on dual routes within rvFaultBound, the
// session cookie kept (not cleared); legacy routes pass the request
// through (counted rejected), within the same bound.
func rvCheckUnavailable(t *testing.T, nd *rvFaultNode, cr rvFaultCreds, what string) {
	t.Helper()
	for range 3 {
		start := time.Now()
		r := bridgetest.Do(t, nd.c, http.MethodGet, nd.ts.URL+"/dual", nil, cr.session)
		took := time.Since(start)
		if r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" || r.Reason() != "session_store_unavailable" {
			t.Errorf("%s: session on /dual: got %d Retry-After %q reason %q, want 503 with Retry-After, session_store_unavailable",
				what, r.StatusCode, r.Header.Get("Retry-After"), r.Reason())
		}
		if took > rvFaultBound {
			t.Errorf("%s: session on /dual answered in %v, want within %v", what, took, rvFaultBound)
		}
		if c := r.Cookie(bridgetest.SessionName); c != nil {
			t.Errorf("%s: the session cookie was changed: %s", what, bridgetest.CookiesDesc(c))
		}
		t.Logf("%s: 503 in %v", what, took.Round(time.Millisecond))
	}
	start := time.Now()
	r := bridgetest.Do(t, nd.c, http.MethodGet, nd.ts.URL+"/legacy", nil, cr.session)
	if took := time.Since(start); r.StatusCode != http.StatusOK || r.Identity(t).Has || took > rvFaultBound {
		t.Errorf("%s: session on /legacy: got %d %s in %v, want 200 without identity within %v", what, r.StatusCode, r.Body, took, rvFaultBound)
	}
}

// rvHangChecks are the checks while Redis hangs.
func rvHangChecks(t *testing.T, nd *rvFaultNode, cr rvFaultCreds) {
	t.Helper()
	rvCheckUnavailable(t, nd, cr, "hang")
	rvCheckJWTUnaffected(t, nd, cr, "hang")
	// Logout: cookies cleared at once, the store's failure reported,
	// within the session read's deadline plus one FlushTimeout (the
	// Fleet's Revoke).
	req := httptest.NewRequest(http.MethodPost, "/logout", nil)
	req.AddCookie(cr.session)
	req.AddCookie(cr.jwtCookie)
	w := httptest.NewRecorder()
	start := time.Now()
	err := nd.b.Logout(w, req)
	took := time.Since(start)
	bound := rvFaultBound + nd.f.Config().FlushTimeout
	if !errors.Is(err, bridge.ErrStoreUnavailable) || took > bound {
		t.Errorf("Logout while Redis hangs: got %v in %v, want ErrStoreUnavailable within %v", err, took, bound)
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

// rvCounts are counters by "route source", "route converted", "route
// retired" and "route reason=R", without zeros: the common ground of the
// in-process snapshot and the fleet report.
type rvCounts = map[string]uint64

func rvSnapshotCounts(bs ...*bridge.Bridge) rvCounts {
	m := rvCounts{}
	for _, b := range bs {
		for _, rc := range b.Snapshot() {
			for s, n := range rc.Requests().All() {
				if n > 0 {
					m[rc.Route+" "+s.String()] += n
				}
			}
			if rc.Conversions > 0 {
				m[rc.Route+" converted"] += rc.Conversions
			}
			if rc.Retired > 0 {
				m[rc.Route+" retired"] += rc.Retired
			}
			for r, n := range rc.Rejections.All() {
				m[rc.Route+" reason="+r.String()] += n
			}
		}
	}
	return m
}

func rvReportCounts(rep *Report) rvCounts {
	m := rvCounts{}
	for _, r := range rep.Routes {
		for s, n := range r.Counts.All() {
			if n > 0 {
				m[r.Route+" "+s.String()] += n
			}
		}
		if r.Converted > 0 {
			m[r.Route+" converted"] += r.Converted
		}
		if r.Retired > 0 {
			m[r.Route+" retired"] += r.Retired
		}
		for reason, n := range r.Rejections.All() {
			m[r.Route+" reason="+reason.String()] += n
		}
	}
	return m
}

// rvCompare fails with every counter where got and want differ.
func rvCompare(t testing.TB, what string, got, want rvCounts) {
	t.Helper()
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		if got[k] != want[k] {
			t.Errorf("%s: %s: got %d, want %d", what, k, got[k], want[k])
		}
	}
}

// rvResp is an answer read without failing the test (for goroutines).
type rvResp struct {
	status int
	hdr    http.Header
	reason string // WriteError's reason
	source string // IdentityHandler's source
	dur    time.Duration
	err    error
}

// rvDo sends a GET to url, prepared by prep.
func rvDo(c *http.Client, url string, prep func(*http.Request)) rvResp {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return rvResp{err: err}
	}
	prep(req)
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return rvResp{err: err, dur: time.Since(start)}
	}
	defer resp.Body.Close()
	var body struct{ Reason, Source string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return rvResp{status: resp.StatusCode, hdr: resp.Header, reason: body.Reason, source: body.Source, dur: time.Since(start)}
}

// rvSessionCookie is a valid legacy cookie (bridgetest.KeyPairs) naming
// id, whether or not a session with that ID exists.
func rvSessionCookie(t testing.TB, id string) *http.Cookie {
	t.Helper()
	v, err := securecookie.EncodeMulti(bridgetest.SessionName, id, securecookie.CodecsFromPairs(bridgetest.KeyPairs()...)...)
	if err != nil {
		t.Fatalf("encode cookie: %v", err)
	}
	return &http.Cookie{Name: bridgetest.SessionName, Value: v}
}

// TestFaultRedisRestartedEmpty: Redis is killed, then restarted empty.
// While it is down, session requests get 503 and JWT users are served
// without Redis; the counter flush fails and keeps its batch. Once it is
// back, the sessions are gone (session_unknown: 401 on dual routes), JWT
// users — including one converted before the outage — are unaffected,
// and the counters flushed to the fresh server are exactly what was served
// since the last acknowledged flush: the pending batch re-applied (the
// empty server has no seq key, so applying it is right) and nothing
// counted twice.
func TestFaultRedisRestartedEmpty(t *testing.T) {
	ctx := context.Background()
	srv := redistest.New(t)
	rdb := srv.Client()
	// No Run: flushes happen exactly where the test says.
	nd := rvNewFaultNode(t, rdb, Config{})
	sess, _ := bridgetest.SaveSession(t, nd.store, bridgetest.User("1"))
	cr := rvNewFaultCreds(t, nd, sess)
	// A user converted before the outage keeps the JWT cookie (and the
	// session cookie).
	convSess, _ := bridgetest.SaveSession(t, nd.store, bridgetest.User("2"))
	r := bridgetest.Do(t, nd.c, http.MethodGet, nd.ts.URL+"/dual", nil, convSess)
	converted := r.Cookie(bridge.DefaultCookieName)
	if r.StatusCode != http.StatusOK || converted == nil {
		t.Fatalf("conversion: got %d %s, want 200 and a JWT cookie", r.StatusCode, bridgetest.CookiesDesc(converted))
	}
	convCreds := rvFaultCreds{session: convSess, bearer: cr.bearer, jwtCookie: &http.Cookie{Name: bridge.DefaultCookieName, Value: converted.Value}}
	fl := nd.f.fl
	flush := func() error { // a killed server refuses at once
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return nd.f.Flush(ctx)
	}

	// Up: everything works; the flush is acknowledged.
	if r := bridgetest.Do(t, nd.c, http.MethodGet, nd.ts.URL+"/dual", nil, sess); r.StatusCode != http.StatusOK || r.Identity(t).Source != "session" {
		t.Fatalf("session before the outage: got %d %s, want 200 session", r.StatusCode, r.Body)
	}
	rvCheckJWTUnaffected(t, nd, convCreds, "up")
	if err := flush(); err != nil {
		t.Fatalf("flush with Redis up: %v", err)
	}
	acked := rvSnapshotCounts(nd.b)
	ackedRequests := bridgetest.TotalRequests(nd.b)
	if got := nd.f.Stats().Flushed; got != ackedRequests {
		t.Fatalf("flushed %d, served %d", got, ackedRequests)
	}

	// Down.
	srv.Kill()
	rvCheckUnavailable(t, nd, cr, "killed")
	rvCheckJWTUnaffected(t, nd, convCreds, "killed")
	if err := flush(); err == nil {
		t.Fatal("flush with Redis killed: no error")
	}
	fl.mu.Lock()
	pending := fl.pending
	fl.mu.Unlock()
	if pending == nil || pending.total == 0 || nd.f.Stats().Pending != pending.total {
		t.Fatalf("no pending batch after the failed flush (pending %v, Stats().Pending %d)", pending, nd.f.Stats().Pending)
	}
	pendingSeq := pending.seq

	// Back, empty.
	srv.Restart()
	rvEventually(t, 5*time.Second, "the client to reach the restarted server", func() bool {
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
	rvCheckJWTUnaffected(t, nd, convCreds, "restarted")
	rvCheckJWTUnaffected(t, nd, cr, "restarted")
	if err := flush(); err != nil {
		t.Fatalf("flush after the restart: %v", err)
	}
	fl.mu.Lock()
	pending, seq := fl.pending, fl.seq
	fl.mu.Unlock()
	if pending != nil {
		t.Fatal("batch still pending after a successful flush")
	}
	if seq != pendingSeq+1 {
		t.Errorf("sequence after the restart: got %d, want the pending batch %d then one new batch", seq, pendingSeq)
	}
	if got, err := rdb.Get(ctx, fl.seqKey).Uint64(); err != nil || got != seq {
		t.Errorf("seq key on the fresh server: got %d (%v), want %d", got, err, seq)
	}

	// The fresh server holds what was served since the acknowledged flush.
	since := rvCounts{}
	for k, v := range rvSnapshotCounts(nd.b) {
		if d := v - acked[k]; d > 0 {
			since[k] = d
		}
	}
	rep, err := nd.f.Report(ctx, time.Time{})
	if err != nil {
		t.Fatalf("Report: %v", err)
	}
	rvCompare(t, "fresh server's report vs served since the last acknowledged flush", rvReportCounts(rep), since)
	if got, want := nd.f.Stats().Flushed, bridgetest.TotalRequests(nd.b); got != want {
		t.Errorf("flushed %d requests in all, served %d", got, want)
	}
	// One more flush sends nothing twice.
	if err := flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	rep, err = nd.f.Report(ctx, time.Time{})
	if err != nil {
		t.Fatalf("Report: %v", err)
	}
	rvCompare(t, "report after one more flush", rvReportCounts(rep), since)
	t.Logf("served %d requests, %d acknowledged before the kill; the fresh server got the other %d",
		bridgetest.TotalRequests(nd.b), ackedRequests, bridgetest.TotalRequests(nd.b)-ackedRequests)
}

// TestFaultRedisHangs: Redis accepts connections and never answers — a
// paused (SIGSTOP) server, or a blackhole listener in its place. Session
// requests get 503 with Retry-After within the store's deadline; JWT
// requests get 200 with zero Redis calls; Run's flushes fail without
// affecting requests and keep the counts; logout clears the cookies and
// reports the store unavailable within its bound. The paused server, once
// resumed, still holds the session (nothing was deleted) and receives
// every count; with the blackhole, Close gives up within FlushTimeout and
// accounts for exactly what it could not flush.
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
				opts = rvFaultOptions(srv)
			} else {
				opts = rvFaultOptions(redistest.New(t)) // the same options, pointed at the blackhole
				opts.Addr = redistest.Blackhole(t)
			}
			rdb := redis.NewClient(opts)
			t.Cleanup(func() { _ = rdb.Close() })
			nd := rvNewFaultNode(t, rdb, Config{
				FlushInterval: 50 * time.Millisecond,
				FlushTimeout:  200 * time.Millisecond,
			})
			var sess *http.Cookie
			var sessKey string
			if srv != nil {
				var id string
				sess, id = bridgetest.SaveSession(t, nd.store, bridgetest.User("1"))
				sessKey = nd.store.Key(id)
			} else {
				sess = rvSessionCookie(t, redisstore.NewID())
			}
			cr := rvNewFaultCreds(t, nd, sess)
			rvRun(t, nd.f)
			if srv != nil {
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
				errs := nd.f.Stats().Errors
				rvEventually(t, 3*time.Second, "a flush to fail", func() bool { return nd.f.Stats().Errors > errs })
				rvHangChecks(t, nd, cr)
				srv.Resume()
				paused = false
				if n, err := rdb.Exists(ctx, sessKey).Result(); err != nil || n != 1 {
					t.Errorf("session key after the hang: exists %d (%v), want it kept", n, err)
				}
				if r := bridgetest.Do(t, nd.c, http.MethodGet, nd.ts.URL+"/dual", nil, sess); r.StatusCode != http.StatusOK || r.Identity(t).Source != "session" {
					t.Errorf("session after resume: got %d %s, want 200 session", r.StatusCode, r.Body)
				}
				rvEventually(t, 5*time.Second, "Run to flush the counts kept during the hang", func() bool {
					return nd.f.Stats().Flushed == bridgetest.TotalRequests(nd.b)
				})
				rep, err := nd.f.Report(ctx, time.Time{})
				if err != nil {
					t.Fatalf("Report: %v", err)
				}
				rvCompare(t, "report after the hang vs served", rvReportCounts(rep), rvSnapshotCounts(nd.b))
				return
			}
			rvEventually(t, 3*time.Second, "a flush to fail", func() bool { return nd.f.Stats().Errors > 0 })
			rvHangChecks(t, nd, cr)
			start := time.Now()
			err := nd.f.Close()
			if took := time.Since(start); err == nil || took > 200*time.Millisecond+2*time.Second {
				t.Errorf("Close against the blackhole: got %v in %v, want an error within FlushTimeout (200ms)", err, took)
			}
			if lost, served := nd.f.Stats().LostOnClose, bridgetest.TotalRequests(nd.b); lost != served || lost == 0 {
				t.Errorf("lost at Close: got %d, want every request served (%d)", lost, served)
			}
		})
	}
}

// TestFaultGracefulShutdown: requests in flight while Close runs. The
// order is the documented one: the HTTP server stops accepting
// (http.Server.Shutdown) and Close runs while handlers are still running;
// their requests were counted before their handlers started, so the final
// flush includes them. With Redis up, the report equals the in-process
// counts exactly and nothing is lost; with Redis hung at shutdown, Close
// gives up within FlushTimeout and accounts for exactly what it could not
// flush.
//
// Close does not wait for requests still inside the middleware (before
// they are counted): the test waits until every request in the server is
// parked in its handler, i.e. counted, before it calls Close.
func TestFaultGracefulShutdown(t *testing.T) {
	for _, tc := range []struct {
		name      string
		hungClose bool
	}{
		{"redis up", false},
		{"redis hung at close", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			srv := redistest.New(t)
			rdb := redis.NewClient(rvFaultOptions(srv))
			t.Cleanup(func() { _ = rdb.Close() })
			nd := rvNewFaultNode(t, rdb, Config{
				// Run's ticker stays out of the way; the test flushes
				// half-way through the load in its place.
				FlushInterval: time.Hour,
				FlushTimeout:  300 * time.Millisecond,
			})
			sess, _ := bridgetest.SaveSession(t, nd.store, bridgetest.User("1"))
			cr := rvNewFaultCreds(t, nd, sess)
			forged := bridgetest.NewKey(t).Mint(t, nd.b, "x", nil)

			// The server: requests to /hold/{id} park in the handler until
			// release; entered/left count requests in the server.
			var inMu sync.Mutex
			inServer, inHandler := 0, 0
			release := make(chan struct{})
			router := bridgetest.NewRouter(nd.store)
			router.HandleFunc("/hold/{id}", func(w http.ResponseWriter, r *http.Request) {
				inMu.Lock()
				inHandler++
				inMu.Unlock()
				<-release
				inMu.Lock()
				inHandler--
				inMu.Unlock()
				bridgetest.IdentityHandler(w, r)
			})
			router.Use(nd.b.Middleware)
			handler := rvMarkRequests(router)
			open := map[net.Conn]http.ConnState{} // connections not closed
			hs := &http.Server{ConnState: func(c net.Conn, st http.ConnState) {
				inMu.Lock()
				defer inMu.Unlock()
				if st == http.StateClosed || st == http.StateHijacked {
					delete(open, c)
				} else {
					open[c] = st
				}
			}, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				inMu.Lock()
				inServer++
				inMu.Unlock()
				defer func() {
					inMu.Lock()
					inServer--
					inMu.Unlock()
				}()
				handler.ServeHTTP(w, r)
			})}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = hs.Serve(ln) }()
			base := "http://" + ln.Addr().String()
			client := &http.Client{Timeout: 10 * time.Second}
			runCtx, cancelRun := context.WithCancel(ctx)
			defer cancelRun()
			runDone := make(chan struct{})
			go func() {
				defer close(runDone)
				_ = nd.f.Run(runCtx)
			}()

			// Load: every kind of request, until the server shuts down.
			kinds := []func(*http.Request){
				func(r *http.Request) { r.AddCookie(cr.session) },
				func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+cr.bearer) },
				func(r *http.Request) { r.AddCookie(cr.jwtCookie) },
				func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+forged) },
				func(*http.Request) {},
			}
			paths := []string{"/dual", "/legacy", "/jwt", "/dual/7"}
			stop := make(chan struct{})
			var load sync.WaitGroup
			for w := range 8 {
				load.Go(func() {
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						rvDo(client, base+paths[(i+w)%len(paths)], kinds[(i/len(paths)+w)%len(kinds)])
					}
				})
			}
			const held = 4
			var holders sync.WaitGroup
			for i := range held {
				holders.Go(func() {
					r := rvDo(client, base+"/hold/"+strconv.Itoa(i), kinds[i%3])
					if r.err != nil || r.status != http.StatusOK {
						t.Errorf("held request %d: got %d %v, want 200", i, r.status, r.err)
					}
				})
			}
			time.Sleep(300 * time.Millisecond)
			if err := nd.f.Flush(ctx); err != nil {
				t.Fatalf("Flush under load: %v", err)
			}
			time.Sleep(300 * time.Millisecond)
			rvEventually(t, 2*time.Second, "the held requests in their handlers", func() bool {
				inMu.Lock()
				defer inMu.Unlock()
				return inHandler == held
			})

			// Shutdown: stop accepting, drain.
			shutdownDone := make(chan error, 1)
			go func() { shutdownDone <- hs.Shutdown(context.Background()) }()
			// Shutdown closes the listener and, as they fall idle, the
			// other connections: once only the held requests' are left,
			// no request can enter the middleware any more, and every
			// request in the server is counted (parked in its handler).
			rvEventually(t, 3*time.Second, "only the held requests left in the server", func() bool {
				inMu.Lock()
				defer inMu.Unlock()
				for _, st := range open {
					if st != http.StateActive {
						return false
					}
				}
				return len(open) == held && inServer == held && inHandler == held
			})
			close(stop)
			unflushed := bridgetest.TotalRequests(nd.b) - nd.f.Stats().Flushed
			if tc.hungClose {
				srv.Pause()
				defer srv.Resume()
			}
			start := time.Now()
			err = nd.f.Close() // handlers still in flight
			took := time.Since(start)
			close(release)
			holders.Wait()
			load.Wait()
			if err := <-shutdownDone; err != nil {
				t.Errorf("Shutdown: %v", err)
			}
			select {
			case <-runDone:
			case <-time.After(time.Second):
				t.Error("Run did not return after Close")
			}
			served := bridgetest.TotalRequests(nd.b)
			st := nd.f.Stats()
			t.Logf("served %d requests; %d not yet flushed when Close began; Close took %v", served, unflushed, took.Round(time.Millisecond))
			if unflushed == 0 {
				t.Error("nothing left for the final flush: the test did not exercise it")
			}
			if tc.hungClose {
				srv.Resume()
				if flushTimeout := nd.f.Config().FlushTimeout; err == nil || took > flushTimeout+2*time.Second {
					t.Errorf("Close with Redis hung: got %v in %v, want an error within FlushTimeout %v", err, took, flushTimeout)
				}
				if st.LostOnClose != served-st.Flushed || st.LostOnClose != unflushed {
					t.Errorf("lost at Close: got %d, want served %d − flushed %d = %d", st.LostOnClose, served, st.Flushed, unflushed)
				}
				// The final batch was written to the hung server before
				// Close gave up: resumed, Redis may run it. Either way it
				// is applied at most once (it is never re-sent), so the
				// report holds what was acknowledged, or that plus the
				// unacknowledged batch; LostOnClose is the upper bound.
				reported := func() uint64 {
					rep, err := nd.f.Report(ctx, time.Time{})
					if err != nil {
						t.Fatalf("Report: %v", err)
					}
					var n uint64
					for _, r := range rep.Routes {
						n += r.Counts.Total()
					}
					return n
				}
				acked, lost := st.Flushed, st.LostOnClose
				var got uint64
				deadline := time.Now().Add(time.Second)
				for got = reported(); got != acked+lost && time.Now().Before(deadline); got = reported() {
					time.Sleep(20 * time.Millisecond)
				}
				if got != acked && got != acked+lost {
					t.Errorf("report holds %d requests, want the %d acknowledged, or those and the unacknowledged final batch (%d)", got, acked, acked+lost)
				}
				t.Logf("after resume the report holds %d requests: %d acknowledged + %d of the %d Close reported as lost",
					got, acked, got-acked, lost)
				return
			}
			if err != nil {
				t.Fatalf("Close with Redis up: %v", err)
			}
			if st.LostOnClose != 0 {
				t.Errorf("lost at Close: got %d, want 0", st.LostOnClose)
			}
			if st.Flushed != served {
				t.Errorf("flushed %d, served %d", st.Flushed, served)
			}
			rep, err := nd.f.Report(ctx, time.Time{})
			if err != nil {
				t.Fatalf("Report: %v", err)
			}
			rvCompare(t, "report after Close vs in-process counts", rvReportCounts(rep), rvSnapshotCounts(nd.b))
		})
	}
}
