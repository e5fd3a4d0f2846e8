package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/fleet"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

const sessionName = "session"

// testApp is the audience of the test app's bridge: its fleet's name.
const testApp = "bridgectl-test"

func TestMain(m *testing.M) {
	redis.SetLogger(discardLogger{}) // as main does
	os.Exit(m.Run())
}

var (
	hashKey = []byte("0123456789abcdef0123456789abcdef")
	sidKey  = []byte("bridgectl-test-sid-key-32-bytes-")
)

// testRoutes are the configured modes of the test app's routes.
var testRoutes = bridge.Routes{
	"/api/me":          bridge.Dual,
	"/api/orders":      bridge.JWT,
	"/api/orders/{id}": bridge.Dual,
	"/profile":         bridge.Legacy,
}

// fleetEnv is one instance of a test app with the bridge and its fleet,
// on a real redis-server.
type fleetEnv struct {
	srv    *redistest.Server
	b      *bridge.Bridge
	f      *fleet.Fleet
	ts     *httptest.Server
	store  *sessions.CookieStore
	prefix string
}

// newFleetEnv starts redis-server and the app; mod changes the fleet's
// configuration before New (its counters are flushed hourly unless mod
// says otherwise: tests flush them with f.Flush).
func newFleetEnv(t *testing.T, mod func(*fleet.Config)) *fleetEnv {
	t.Helper()
	srv := redistest.New(t)
	rdb := srv.Client()
	fcfg := fleet.Config{Redis: rdb, FlushInterval: time.Hour}
	if mod != nil {
		mod(&fcfg)
	}
	f, err := fleet.New(fcfg)
	if err != nil {
		t.Fatalf("fleet.New: %v", err)
	}
	key, err := bridge.GenerateKey()
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	store := sessions.NewCookieStore(hashKey)
	var wrapped sessions.Store // the app's handlers' store, once b exists
	r := mux.NewRouter()
	ok := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/profile" {
			_, _ = wrapped.Get(r, sessionName) // a legacy page reads the session
		}
		src := "none"
		if id, ok := bridge.IdentityFrom(r.Context()); ok {
			src = id.Source().String()
		}
		_, _ = io.WriteString(w, src)
	}
	for tmpl := range testRoutes {
		r.HandleFunc(tmpl, ok)
	}
	b, err := bridge.New(bridge.Config{
		Sessions:           bridge.StoreSource(store, sessionName),
		SIDKey:             sidKey,
		Fleet:              f,
		SigningKey:         key,
		Issuer:             "https://issuer.test",
		Audience:           testApp,
		Router:             r,
		Routes:             testRoutes,
		InsecureDevCookies: true, // httptest serves plain http
	})
	if err != nil {
		t.Fatalf("bridge.New: %v", err)
	}
	t.Cleanup(func() { _ = f.Close() })
	wrapped = b.WrapStore(store)
	r.Use(b.Middleware)
	ts := httptest.NewServer(r)
	t.Cleanup(ts.Close)
	return &fleetEnv{srv: srv, b: b, f: f, ts: ts, store: store, prefix: f.Config().Prefix}
}

// sessionCookie returns the legacy cookie of a logged-in user, as the
// legacy app would set it.
func (e *fleetEnv) sessionCookie(t *testing.T) *http.Cookie {
	t.Helper()
	return e.savedCookie(t, map[any]any{"user_id": "1", "username": "alice", "roles": []string{"user"}})
}

// guestCookie returns the legacy cookie of a session with no user (a
// guest's cart).
func (e *fleetEnv) guestCookie(t *testing.T) *http.Cookie {
	t.Helper()
	return e.savedCookie(t, map[any]any{"cart": []string{"tea"}})
}

// savedCookie saves a new session holding values and returns its cookie.
func (e *fleetEnv) savedCookie(t *testing.T, values map[any]any) *http.Cookie {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/login", nil)
	rec := httptest.NewRecorder()
	s, err := e.store.New(req, sessionName)
	if err != nil {
		t.Fatalf("store.New: %v", err)
	}
	maps.Copy(s.Values, values)
	if err := s.Save(req, rec); err != nil {
		t.Fatalf("session Save: %v", err)
	}
	for _, c := range rec.Result().Cookies() {
		if c.Name == sessionName {
			return c
		}
	}
	t.Fatal("no session cookie set")
	return nil
}

// get sends GET path with the cookies and Authorization header given and
// returns the response (body closed).
func (e *fleetEnv) get(t *testing.T, path, authorization string, cookies ...*http.Cookie) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	for _, c := range cookies {
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// wantStatus sends a request and checks its status.
func (e *fleetEnv) wantStatus(t *testing.T, want int, path, authorization string, cookies ...*http.Cookie) *http.Response {
	t.Helper()
	resp := e.get(t, path, authorization, cookies...)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: status got %d, want %d", path, resp.StatusCode, want)
	}
	return resp
}

// sendTraffic sends a known mix of requests and returns the JWT the
// bridge minted from the session.
func (e *fleetEnv) sendTraffic(t *testing.T) string {
	t.Helper()
	sess := e.sessionCookie(t)
	// A session on a dual route: converted, the JWT cookie set.
	resp := e.wantStatus(t, http.StatusOK, "/api/me", "", sess)
	name := e.b.Config().CookieName
	var tok string
	for _, c := range resp.Cookies() {
		if c.Name == name {
			tok = c.Value
		}
	}
	if tok == "" {
		t.Fatalf("GET /api/me with a session: no %s cookie set", name)
	}
	jwtCookie := &http.Cookie{Name: name, Value: tok}
	e.wantStatus(t, http.StatusOK, "/api/me", "", jwtCookie)                      // jwt_cookie
	e.wantStatus(t, http.StatusOK, "/api/me", "Bearer "+tok)                      // jwt_bearer
	e.wantStatus(t, http.StatusUnauthorized, "/api/me", "")                       // anonymous
	e.wantStatus(t, http.StatusUnauthorized, "/api/me", "Bearer not.a.token")     // rejected
	e.wantStatus(t, http.StatusOK, "/api/orders", "Bearer "+tok)                  // jwt_bearer
	e.wantStatus(t, http.StatusOK, "/api/orders/7", "Bearer "+tok)                // jwt_bearer
	e.wantStatus(t, http.StatusOK, "/api/orders/8", "", jwtCookie)                // jwt_cookie
	e.wantStatus(t, http.StatusOK, "/profile", "")                                // anonymous
	e.wantStatus(t, http.StatusOK, "/profile", "", sess)                          // session
	e.wantStatus(t, http.StatusOK, "/profile", "", sess)                          // session
	e.wantStatus(t, http.StatusUnauthorized, "/api/orders", "Bearer not.a.token") // rejected
	e.wantStatus(t, http.StatusOK, "/api/orders", "Bearer ak_0123456789abcdef")   // app: the app's API key
	e.wantStatus(t, http.StatusOK, "/profile", "", e.guestCookie(t))              // anonymous, a guest session
	return tok
}

// result is the outcome of one bridgectl run.
type result struct {
	code           int
	stdout, stderr string
}

func bridgectl(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	getenv := func(k string) string { return env[k] }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, args, &stdout, &stderr, getenv)
	return result{code, stdout.String(), stderr.String()}
}

// mustRun runs bridgectl and fails the test unless it exits 0.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	r := bridgectl(t, nil, args...)
	if r.code != exitOK {
		t.Fatalf("bridgectl %s: exit %d, want 0; stderr:\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

func TestReport(t *testing.T) {
	e := newFleetEnv(t, nil)
	e.sendTraffic(t)
	if err := e.f.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}

	t.Run("json", func(t *testing.T) {
		out := mustRun(t, "report", "--redis", e.srv.URL(), "--app", testApp, "--json")
		var rep fleet.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("report --json: %v\n%s", err, out)
		}
		type line struct {
			mode       string
			counts     bridge.SourceCounts
			converted  uint64
			share      float64
			rejections bridge.ReasonCounts
		}
		want := map[string]line{
			"/api/me": {"dual", sourceCounts(map[bridge.Source]uint64{
				bridge.SourceSession: 1, bridge.SourceJWTCookie: 1, bridge.SourceJWTBearer: 1, bridge.SourceAnonymous: 1, bridge.SourceRejected: 1,
			}), 1, 1.0 / 3, reasonCounts(map[bridge.Reason]uint64{bridge.ReasonBearerInvalid: 1, bridge.ReasonNoCredentials: 1})},
			"/api/orders": {"jwt", sourceCounts(map[bridge.Source]uint64{
				bridge.SourceJWTBearer: 1, bridge.SourceRejected: 1, bridge.SourceApp: 1,
			}), 0, 0, reasonCounts(map[bridge.Reason]uint64{bridge.ReasonBearerInvalid: 1})},
			"/api/orders/{id}": {"dual", sourceCounts(map[bridge.Source]uint64{
				bridge.SourceJWTBearer: 1, bridge.SourceJWTCookie: 1,
			}), 0, 0, bridge.ReasonCounts{}},
			"/profile": {"legacy", sourceCounts(map[bridge.Source]uint64{
				bridge.SourceSession: 2, bridge.SourceAnonymous: 2,
			}), 0, 1, bridge.ReasonCounts{}},
		}
		got := map[string]line{}
		for _, r := range rep.Routes {
			got[r.Route] = line{r.Mode, r.Counts, r.Converted, r.SessionShare, r.Rejections}
		}
		for route, w := range want {
			if g := got[route]; g != w {
				t.Errorf("route %s: got %+v, want %+v", route, g, w)
			}
		}
		for route, g := range got {
			if _, ok := want[route]; !ok && (g.counts != (bridge.SourceCounts{}) || g.rejections != (bridge.ReasonCounts{})) {
				t.Errorf("route %s: got %+v, want no requests", route, g)
			}
		}
		// The JSON itself: every route carries its rejections, by reason
		// label; the totals carry every source, and converted.
		var raw struct {
			Totals map[string]uint64 `json:"totals"`
			Routes []struct {
				Route      string             `json:"route"`
				Rejections *map[string]uint64 `json:"rejections"`
			} `json:"routes"`
		}
		if err := json.Unmarshal([]byte(out), &raw); err != nil {
			t.Fatalf("report --json: %v\n%s", err, out)
		}
		for _, r := range raw.Routes {
			if r.Rejections == nil {
				t.Errorf("route %s: no \"rejections\" in the JSON", r.Route)
			} else if r.Route == "/api/me" && !reflect.DeepEqual(*r.Rejections, map[string]uint64{"bearer_invalid": 1, "no_credentials": 1}) {
				t.Errorf("route /api/me: JSON rejections got %v, want bearer_invalid 1, no_credentials 1", *r.Rejections)
			}
		}
		wantTotals := map[string]uint64{"session": 3, "jwt_cookie": 2, "jwt_bearer": 3, "app": 1, "anonymous": 3, "rejected": 2, "converted": 1}
		if !reflect.DeepEqual(raw.Totals, wantTotals) {
			t.Errorf("totals: got %v, want %v", raw.Totals, wantTotals)
		}
		if got, want := rep.Totals.SourceCounts, sourceCounts(map[bridge.Source]uint64{
			bridge.SourceSession: 3, bridge.SourceJWTCookie: 2, bridge.SourceJWTBearer: 3, bridge.SourceApp: 1, bridge.SourceAnonymous: 3, bridge.SourceRejected: 2,
		}); got != want {
			t.Errorf("totals: got %+v, want %+v", got, want)
		}
		if rep.DistinctSessions != 1 {
			t.Errorf("distinct_sessions: got %d, want 1", rep.DistinctSessions)
		}
		if rep.Scope != "fleet" {
			t.Errorf("scope: got %q, want fleet", rep.Scope)
		}
	})

	t.Run("json equals the report handler's", func(t *testing.T) {
		since := time.Now().Add(-2 * time.Hour).UTC().Format(time.RFC3339)
		out := mustRun(t, "report", "--redis", e.srv.URL(), "--app", testApp, "--json", "--since", since)
		rec := httptest.NewRecorder()
		e.f.ReportHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/migration/report.json?since="+url.QueryEscape(since), nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("report handler: status got %d, want 200", rec.Code)
		}
		cli, handler := decodeWithout(t, out, "generated_at"), decodeWithout(t, rec.Body.String(), "generated_at")
		if !reflect.DeepEqual(cli, handler) {
			t.Errorf("report --json:\n%s\nwant the handler's:\n%s", out, rec.Body.String())
		}
		if !strings.HasPrefix(out, "{\n  \"generated_at\"") {
			t.Errorf("report --json is not indented with two spaces:\n%s", out)
		}
	})

	t.Run("table", func(t *testing.T) {
		// Just deployed: JWT traffic only, and yet not ready.
		out := mustRun(t, "report", "--redis", e.srv.URL(), "--app", testApp, "--ready-after", "1h")
		t.Logf("report:\n%s", out)
		if got := tableRows(out)["/api/orders/{id}"]; len(got) != 14 || got[11] != "-" ||
			!strings.HasPrefix(got[13], "observed in dual for only ") || !strings.HasSuffix(got[13], "s of 1h") {
			t.Errorf("row /api/orders/{id} right after the deploy: got %q, want not ready, observed in dual for seconds of 1h", got)
		}
		// The dual routes have run in dual for two hours.
		dualKey := "{" + e.prefix + "}:dual"
		since := strconv.FormatInt(time.Now().Add(-2*time.Hour).Unix(), 10)
		if err := e.srv.Client().HSet(context.Background(), dualKey, "/api/me", since, "/api/orders/{id}", since).Err(); err != nil {
			t.Fatal(err)
		}
		out = mustRun(t, "report", "--redis", e.srv.URL(), "--app", testApp, "--ready-after", "1h")
		t.Logf("report:\n%s", out)
		wantRows := map[string][]string{
			"ROUTE":            {"MODE", "SESSION", "JWT_COOKIE", "JWT_BEARER", "APP", "ANON", "REJECTED", "CONVERTED", "GUESTS", "HANDLER_READS", "SESSION_SHARE", "READY", "TOP_REJECTIONS", "READY_REASON"},
			"/api/me":          {"dual", "1", "1", "1", "0", "1", "1", "1", "0", "0", "33.3%", "-", "bearer_invalid 1, no_credentials 1", "1 session request in the last 1h"},
			"/api/orders":      {"jwt", "0", "0", "1", "1", "0", "1", "0", "0", "0", "0.0%", "-", "bearer_invalid 1", "already in jwt mode"},
			"/api/orders/{id}": {"dual", "0", "1", "1", "0", "0", "0", "0", "0", "0", "0.0%", "ready", "-", "ready: in dual for 2h, no session request in the last 1h"},
			"/profile":         {"legacy", "2", "0", "0", "0", "2", "0", "0", "1", "4", "100.0%", "-", "-", "legacy mode: move it to dual first"},
			"TOTAL":            {"3", "2", "3", "1", "3", "2", "1", "1", "4", "37.5%"},
		}
		rows := tableRows(out)
		for route, want := range wantRows {
			if got := rows[route]; !reflect.DeepEqual(got, want) {
				t.Errorf("row %s: got %q, want %q", route, got, want)
			}
		}
		if !strings.Contains(out, "distinct sessions: 1\n") {
			t.Errorf("report: no line %q in\n%s", "distinct sessions: 1", out)
		}
	})

	t.Run("retention and ready-after of zero or less are the defaults", func(t *testing.T) {
		out := mustRun(t, "report", "--redis", e.srv.URL(), "--app", testApp, "--retention", "0", "--ready-after", "-1h")
		if !strings.Contains(out, "dual on every instance for the last "+fleet.DefaultReadyAfter.String()+",") {
			t.Errorf("report --ready-after -1h: got\n%s\nwant the default %v", out, fleet.DefaultReadyAfter)
		}
		if got := tableRows(out)["/api/me"]; len(got) == 0 || got[0] != "dual" {
			t.Errorf("report --retention 0: row /api/me got %q, want the counts", got)
		}
	})

	t.Run("since narrows the window", func(t *testing.T) {
		// The counts are in the current hour: a window starting in an
		// hour's time is refused, one starting a minute ago has them.
		r := bridgectl(t, nil, "report", "--redis", e.srv.URL(), "--app", testApp, "--since", time.Now().Add(time.Hour).Format(time.RFC3339))
		if r.code != exitUsage {
			t.Errorf("report --since in the future: exit %d, want %d", r.code, exitUsage)
		}
		out := mustRun(t, "report", "--redis", e.srv.URL(), "--app", testApp, "--json", "--since", "1m")
		var rep fleet.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatal(err)
		}
		if got := rep.Totals.Of(bridge.SourceSession); got != 3 {
			t.Errorf("report --since 1m: totals.session got %d, want 3", got)
		}
	})

	t.Run("REDIS_URL and prefix", func(t *testing.T) {
		r := bridgectl(t, map[string]string{"REDIS_URL": e.srv.URL()}, "report", "--json", "--app", testApp)
		if r.code != exitOK || !strings.Contains(r.stdout, `"/api/me"`) || !strings.Contains(r.stdout, `"app_name": "`+testApp+`"`) {
			t.Errorf("report with REDIS_URL: exit %d, want 0, the app and its routes; stdout %s stderr %s", r.code, r.stdout, r.stderr)
		}
		// The fleet's prefix names it as well as its app: the default is
		// per app.
		byPrefix := mustRun(t, "report", "--redis", e.srv.URL(), "--prefix", fleet.DefaultPrefix+":"+testApp)
		if !strings.Contains(byPrefix, "\napp: "+testApp+"\n") || tableRows(byPrefix)["/api/me"] == nil {
			t.Errorf("report --prefix %s:%s: got\n%s\nwant the app's report", fleet.DefaultPrefix, testApp, byPrefix)
		}
		out := mustRun(t, "report", "--redis", e.srv.URL(), "--app", testApp, "--json", "--prefix", "another-fleet")
		var rep fleet.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatal(err)
		}
		if len(rep.Routes) != 0 || rep.Totals != (fleet.Totals{}) {
			t.Errorf("report --prefix another-fleet: got %d routes, totals %+v, want none", len(rep.Routes), rep.Totals)
		}
	})
}

// cellSep separates the cells of a tabwriter table (padding 2): a cell may
// hold single spaces ("bearer_invalid 1, no_credentials 1").
var cellSep = regexp.MustCompile(`\s{2,}`)

// tableRows splits a table by its first cell: rows["/api/me"] are the
// other cells of the line of /api/me.
func tableRows(out string) map[string][]string {
	rows := map[string][]string{}
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			cells := cellSep.Split(l, -1)
			rows[cells[0]] = cells[1:]
		}
	}
	return rows
}

// sourceCounts returns the counts of m.
func sourceCounts(m map[bridge.Source]uint64) bridge.SourceCounts {
	var c bridge.SourceCounts
	for s, n := range m {
		c.Add(s, n)
	}
	return c
}

// reasonCounts returns the counts of m.
func reasonCounts(m map[bridge.Reason]uint64) bridge.ReasonCounts {
	var c bridge.ReasonCounts
	for r, n := range m {
		c.Add(r, n)
	}
	return c
}

// decodeWithout decodes a JSON object and drops the named members.
func decodeWithout(t *testing.T, s string, drop ...string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	for _, k := range drop {
		delete(m, k)
	}
	return m
}

func TestMode(t *testing.T) {
	e := newFleetEnv(t, func(c *fleet.Config) {
		c.ModeRefreshInterval = 50 * time.Millisecond
		c.FlushInterval = 50 * time.Millisecond
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.f.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	redisURL := e.srv.URL()
	sess := e.sessionCookie(t)

	waitMode := func(t *testing.T, route string, want bridge.Mode) {
		t.Helper()
		deadline := time.Now().Add(time.Second)
		for e.b.Mode(route) != want {
			if time.Now().After(deadline) {
				t.Fatalf("Mode(%q): got %v after 1s, want %v", route, e.b.Mode(route), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// listRow returns the OVERRIDE and EFFECTIVE of route in mode list,
	// once EFFECTIVE is want (instances publish it at their next flush).
	listRow := func(t *testing.T, route, wantEffective string) []string {
		t.Helper()
		deadline := time.Now().Add(time.Second)
		for {
			out := mustRun(t, "mode", "list", "--redis", redisURL, "--app", testApp)
			for _, l := range strings.Split(out, "\n") {
				if f := strings.Fields(l); len(f) == 3 && f[0] == route && (f[2] == wantEffective || time.Now().After(deadline)) {
					return f[1:]
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("mode list: no row for %s in\n%s", route, out)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	if got := listRow(t, "/api/me", "dual"); !reflect.DeepEqual(got, []string{"-", "dual"}) {
		t.Errorf("mode list before set: /api/me got %q, want [- dual]", got)
	}

	// Flags after the positional arguments work too.
	out := mustRun(t, "mode", "set", "/api/me", "jwt", "--redis", redisURL, "--app", testApp)
	if !strings.Contains(out, "roll back with: bridgectl mode reset /api/me --app "+testApp+"\n") {
		t.Errorf("mode set: output got %q, want the rollback command, naming the app", out)
	}
	waitMode(t, "/api/me", bridge.JWT)
	e.wantStatus(t, http.StatusUnauthorized, "/api/me", "", sess) // a session on a jwt route
	if got := listRow(t, "/api/me", "jwt"); !reflect.DeepEqual(got, []string{"jwt", "jwt"}) {
		t.Errorf("mode list after set: /api/me got %q, want [jwt jwt]", got)
	}

	out = mustRun(t, "mode", "reset", "--redis", redisURL, "--app", testApp, "/api/me")
	if !strings.Contains(out, "override jwt removed") {
		t.Errorf("mode reset: output got %q, want it to name the removed override", out)
	}
	waitMode(t, "/api/me", bridge.Dual)
	e.wantStatus(t, http.StatusOK, "/api/me", "", sess)
	if got := listRow(t, "/api/me", "dual"); !reflect.DeepEqual(got, []string{"-", "dual"}) {
		t.Errorf("mode list after reset: /api/me got %q, want [- dual]", got)
	}

	t.Run("set over an override rolls back to it", func(t *testing.T) {
		mustRun(t, "mode", "set", "--redis", redisURL, "--app", testApp, "/profile", "dual")
		out := mustRun(t, "mode", "set", "--redis", redisURL, "--app", testApp, "/profile", "jwt")
		if !strings.Contains(out, "roll back with: bridgectl mode set /profile dual") {
			t.Errorf("mode set over an override: output got %q, want rollback to dual", out)
		}
		waitMode(t, "/profile", bridge.JWT)
		mustRun(t, "mode", "reset", "--redis", redisURL, "--app", testApp, "/profile")
		waitMode(t, "/profile", bridge.Legacy)
		out = mustRun(t, "mode", "reset", "--redis", redisURL, "--app", testApp, "/profile")
		if !strings.Contains(out, "no override was set") {
			t.Errorf("mode reset without override: output got %q", out)
		}
	})

	t.Run("unknown route warns", func(t *testing.T) {
		r := bridgectl(t, nil, "mode", "set", "--redis", redisURL, "--app", testApp, "/api/typo", "jwt")
		if r.code != exitOK || !strings.Contains(r.stderr, `no instance has published route "/api/typo"`) {
			t.Errorf("mode set /api/typo: exit %d, stderr %q; want 0 and a warning", r.code, r.stderr)
		}
		mustRun(t, "mode", "reset", "--redis", redisURL, "--app", testApp, "/api/typo")
	})
}

// TestReportSharedWith: the table names the app, and warns when other
// apps' counts are merged into the report.
func TestReportSharedWith(t *testing.T) {
	for _, c := range []struct {
		rep  fleet.Report
		want []string
		not  string
	}{
		{fleet.Report{App: "shop"}, []string{"\napp: shop\ndistinct sessions: 0\n"}, "warning"},
		{fleet.Report{App: "shop", SharedWith: []string{"blog", "wiki"}},
			[]string{"\napp: shop\nwarning: apps blog, wiki flushed counts under the same prefix"}, ""},
	} {
		var out strings.Builder
		if err := writeReport(&out, &c.rep, time.Now()); err != nil {
			t.Fatal(err)
		}
		for _, w := range c.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("report of %+v: got\n%s\nwant %q", c.rep, out.String(), w)
			}
		}
		if c.not != "" && strings.Contains(out.String(), c.not) {
			t.Errorf("report of %+v: got\n%s\nwant no %q", c.rep, out.String(), c.not)
		}
	}
}

func TestShare(t *testing.T) {
	tests := []struct {
		c    bridge.SourceCounts
		want string
	}{
		{bridge.SourceCounts{}, "-"},
		{sourceCounts(map[bridge.Source]uint64{bridge.SourceAnonymous: 5, bridge.SourceRejected: 2}), "-"},
		{sourceCounts(map[bridge.Source]uint64{bridge.SourceSession: 1}), "100.0%"},
		{sourceCounts(map[bridge.Source]uint64{bridge.SourceSession: 1, bridge.SourceJWTCookie: 1, bridge.SourceJWTBearer: 1}), "33.3%"},
		{sourceCounts(map[bridge.Source]uint64{bridge.SourceJWTBearer: 7}), "0.0%"},
	}
	for _, tt := range tests {
		if got := share(tt.c); got != tt.want {
			t.Errorf("share(%+v): got %q, want %q", tt.c, got, tt.want)
		}
	}
}

func TestTopReasons(t *testing.T) {
	tests := []struct {
		c    map[bridge.Reason]uint64
		want string
	}{
		{nil, "-"},
		{map[bridge.Reason]uint64{bridge.ReasonSessionUnknown: 1}, "session_unknown 1"},
		{map[bridge.Reason]uint64{bridge.ReasonSessionUnknown: 1, bridge.ReasonBearerInvalid: 3}, "bearer_invalid 3, session_unknown 1"},
		// Ties by name.
		{map[bridge.Reason]uint64{bridge.ReasonNoCredentials: 2, bridge.ReasonBearerExpired: 2}, "bearer_expired 2, no_credentials 2"},
		// The top three, then how many other reasons there were.
		{map[bridge.Reason]uint64{
			bridge.ReasonBearerInvalid: 1, bridge.ReasonCookieExpired: 9, bridge.ReasonSessionUnknown: 4,
			bridge.ReasonCrossOrigin: 1, bridge.ReasonStoreUnavailable: 12,
		}, "session_store_unavailable 12, jwt_cookie_expired 9, session_unknown 4, +2 more"},
	}
	for _, tt := range tests {
		if got := topReasons(reasonCounts(tt.c)); got != tt.want {
			t.Errorf("topReasons(%v): got %q, want %q", tt.c, got, tt.want)
		}
	}
}

func TestModeListEmpty(t *testing.T) {
	srv := redistest.New(t)
	out := mustRun(t, "mode", "list", "--redis", srv.URL(), "--app", testApp)
	if !strings.Contains(out, "no routes") {
		t.Errorf("mode list on an empty Redis: got %q, want it to say there are no routes", out)
	}
}

func TestUsage(t *testing.T) {
	redisURL := "redis://127.0.0.1:1" // never reached: usage is checked first
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"no arguments", nil, "Usage:"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"help of an unknown command", []string{"help", "frobnicate"}, `unknown command "frobnicate"`},
		{"mode without subcommand", []string{"mode"}, "missing subcommand"},
		{"unknown mode subcommand", []string{"mode", "flip"}, `unknown subcommand "flip"`},
		{"set without mode", []string{"mode", "set", "/api/me", "--redis", redisURL}, "want ROUTE MODE"},
		{"set with a bad mode", []string{"mode", "set", "/api/me", "sideways", "--redis", redisURL}, "want legacy, dual or jwt"},
		{"set with a raw path", []string{"mode", "set", "api/me", "jwt", "--redis", redisURL}, "mux path template"},
		{"set with extra arguments", []string{"mode", "set", "/api/me", "jwt", "now", "--redis", redisURL}, "want ROUTE MODE"},
		{"reset without route", []string{"mode", "reset", "--redis", redisURL}, "want ROUTE"},
		{"list with an argument", []string{"mode", "list", "/api/me", "--redis", redisURL}, "unexpected argument"},
		{"unknown flag", []string{"report", "--verbose", "--redis", redisURL}, "flag provided but not defined: -verbose"},
		{"report with an argument", []string{"report", "now", "--redis", redisURL}, "unexpected argument"},
		{"bad since", []string{"report", "--since", "yesterday", "--redis", redisURL}, `--since "yesterday"`},
		{"negative since", []string{"report", "--since", "-1h", "--redis", redisURL}, "positive duration"},
		{"no redis", []string{"report"}, "pass --redis URL or set REDIS_URL"},
		{"no redis for mode", []string{"mode", "list"}, "pass --redis URL or set REDIS_URL"},
		{"bad scheme", []string{"report", "--redis", "http://127.0.0.1:6379"}, "unknown scheme"},
		{"retention under an hour", []string{"report", "--retention", "30m", "--redis", redisURL}, "--retention 30m0s: shorter than an hour"},
		{"prefix with braces", []string{"mode", "list", "--prefix", "{app}", "--redis", redisURL}, "must not contain braces"},
		{"app with braces", []string{"report", "--app", "{app}", "--redis", redisURL}, "must not contain braces"},
		{"report of no app", []string{"report", "--redis", redisURL}, "name the fleet: --app NAME"},
		{"mode list of no app", []string{"mode", "list", "--redis", redisURL}, "name the fleet: --app NAME"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bridgectl(t, nil, tt.args...)
			if r.code != exitUsage {
				t.Errorf("exit: got %d, want %d", r.code, exitUsage)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr: got %q, want it to contain %q", r.stderr, tt.want)
			}
			if !strings.Contains(r.stderr, "Usage") {
				t.Errorf("stderr: got %q, want the usage", r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout: got %q, want nothing", r.stdout)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	tests := []struct {
		args []string
		want string // in stdout
	}{
		{[]string{"help"}, "bridgectl mode set   ROUTE MODE"},
		{[]string{"-h"}, "bridgectl mode set   ROUTE MODE"},
		{[]string{"--help"}, "bridgectl report"},
		{[]string{"help", "report"}, "-since"},
		{[]string{"help", "mode"}, "rollback"},
		{[]string{"report", "-h"}, "-ready-after"},
		{[]string{"mode", "-h"}, "bridgectl mode reset ROUTE"},
		{[]string{"mode", "set", "--help"}, "bridgectl mode reset ROUTE"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := bridgectl(t, map[string]string{"REDIS_URL": "redis://:hunter2@127.0.0.1:1"}, tt.args...)
			if r.code != exitOK {
				t.Errorf("exit: got %d, want 0; stderr %q", r.code, r.stderr)
			}
			if !strings.Contains(r.stdout, tt.want) {
				t.Errorf("stdout: got %q, want it to contain %q", r.stdout, tt.want)
			}
			if strings.Contains(r.stdout, "hunter2") {
				t.Errorf("stdout shows REDIS_URL's password: %q", r.stdout)
			}
		})
	}
}

func TestRedisDown(t *testing.T) {
	const password = "hunter2"
	down := "redis://:" + password + "@127.0.0.1:1/0"
	tests := []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"report", nil, []string{"report", "--redis", down, "--app", testApp}},
		{"report --json from REDIS_URL", map[string]string{"REDIS_URL": down}, []string{"report", "--json", "--prefix", "p"}},
		{"mode list", nil, []string{"mode", "list", "--redis", down, "--app", testApp}},
		{"mode set", nil, []string{"mode", "set", "/api/me", "jwt", "--redis", down, "--app", testApp}},
		{"mode reset", nil, []string{"mode", "reset", "/api/me", "--redis", down, "--app", testApp}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			r := bridgectl(t, tt.env, tt.args...)
			if r.code != exitRuntime {
				t.Errorf("exit: got %d, want %d; stderr %q", r.code, exitRuntime, r.stderr)
			}
			if want := "cannot reach Redis at 127.0.0.1:1"; !strings.Contains(r.stderr, want) {
				t.Errorf("stderr: got %q, want it to contain %q", r.stderr, want)
			}
			if strings.Contains(r.stderr+r.stdout, password) {
				t.Errorf("output shows the password: %q", r.stderr)
			}
			if strings.Contains(r.stderr, "Usage") {
				t.Errorf("stderr: got %q, want no usage for a runtime error", r.stderr)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v, want a prompt failure", d)
			}
		})
	}
}

func TestPasswordNeverShown(t *testing.T) {
	tests := []struct {
		name, url, secret string
	}{
		{"bad escape in password", "redis://user:hun%zzter2@127.0.0.1:6379", "hun"},
		{"slash in password", "redis://user:hun/ter2@127.0.0.1:6379", "hun"},
		{"bad db with password", "redis://:hunter2@127.0.0.1:6379/x", "hunter2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bridgectl(t, nil, "mode", "list", "--redis", tt.url)
			if r.code != exitUsage {
				t.Errorf("exit: got %d, want %d; stderr %q", r.code, exitUsage, r.stderr)
			}
			if strings.Contains(r.stderr, tt.secret) {
				t.Errorf("stderr shows the password: %q", r.stderr)
			}
		})
	}
	t.Run("redact", func(t *testing.T) {
		err := redact(errors.New("auth hunter2 failed for user:hunter2"), "redis://user:hunter2@h:1")
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("redact: got %q, want no password", err)
		}
		plain := errors.New("dial tcp: refused")
		if got := redact(plain, "redis://h:1"); got != plain {
			t.Errorf("redact without user information: got %v, want the error unchanged", got)
		}
	})
}
