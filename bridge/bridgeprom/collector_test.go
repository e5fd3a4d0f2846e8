package bridgeprom_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/sessions"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/bridgeprom"
	"github.com/sessionbridge/sessionbridge/bridge/fleet"
	"github.com/sessionbridge/sessionbridge/internal/bridgetest"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// The flush-health families: only a collector with a Fleet describes and
// collects them.
var flushFamilies = []string{
	"sessionbridge_flushed_requests_total",
	"sessionbridge_flush_errors_total",
	"sessionbridge_flush_pending_requests",
	"sessionbridge_flush_dropped_total",
}

// gatherMetrics registers NewCollector(b, f) in a new pedantic registry
// (which checks that every metric collected was described, and
// consistently) and returns every sample as `name{label="value",…}` →
// value, labels sorted.
func gatherMetrics(t testing.TB, b *bridge.Bridge, f *fleet.Fleet) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(bridgeprom.NewCollector(b, f)); err != nil {
		t.Fatalf("register the collector: %v", err)
	}
	return gatherFrom(t, reg, nil)
}

// gatherFrom gathers g into samples; types, if not nil, receives each
// family's type.
func gatherFrom(t testing.TB, g prometheus.Gatherer, types map[string]string) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if types != nil {
			types[mf.GetName()] = mf.GetType().String()
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(labels)
			name := mf.GetName()
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			var v float64
			switch {
			case m.GetCounter() != nil:
				v = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				v = m.GetGauge().GetValue()
			default:
				t.Fatalf("metric %s is neither a counter nor a gauge", name)
			}
			if _, dup := out[name]; dup {
				t.Errorf("metric %s collected twice", name)
			}
			out[name] = v
		}
	}
	return out
}

// described returns the names of the families c describes.
func described(c prometheus.Collector) []string {
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	var names []string
	for d := range ch {
		// Desc has no getter: its String is Desc{fqName: "…", …}.
		_, rest, _ := strings.Cut(d.String(), `fqName: "`)
		name, _, _ := strings.Cut(rest, `"`)
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// promWant is the request, conversion and rejection series a tally of
// served requests must produce, modes as in bridgetest.Routes.
func promWant(tally *pmTally) map[string]float64 {
	out := map[string]float64{}
	for route, w := range tally.want() {
		mode := bridgetest.Routes[route].String()
		for s, n := range w.counts.All() {
			if n > 0 {
				out[fmt.Sprintf(`sessionbridge_requests_total{mode=%q,route=%q,source=%q}`, mode, route, s)] = float64(n)
			}
		}
		if w.converted > 0 {
			out[fmt.Sprintf(`sessionbridge_conversions_total{route=%q}`, route)] = float64(w.converted)
		}
		for reason, n := range w.rejections {
			out[fmt.Sprintf(`sessionbridge_rejections_total{reason=%q,route=%q}`, reason, route)] = float64(n)
		}
	}
	return out
}

// TestPrometheusCollector: the collector exports exactly the served
// requests per (route, mode, source), conversions per route, rejections
// per (route, reason), and the flush's health, as counters and a gauge.
func TestPrometheusCollector(t *testing.T) {
	srv := redistest.New(t)
	key := bridgetest.NewKey(t)
	store := sessions.NewCookieStore(bridgetest.HashKey)
	x := newPmInstance(t, "web-0", key, store, srv.Client())
	creds := newPmCreds(t, key, x.b, store, 5)
	tally := newPmTally()
	b, f := x.b, x.f

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(bridgeprom.NewCollector(b, f))
	x.drive(t, creds, tally, 3)
	if err := f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The names and help follow Prometheus' conventions.
	if mfs, err := reg.Gather(); err != nil {
		t.Errorf("gather: %v", err)
	} else if problems, err := promlint.NewWithMetricFamilies(mfs).Lint(); err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %v", problems, err)
	}

	types := map[string]string{}
	got := gatherFrom(t, reg, types)
	want := promWant(tally)
	total := float64(tally.total())
	want[`sessionbridge_flushed_requests_total`] = total
	want[`sessionbridge_flush_errors_total`] = 0
	want[`sessionbridge_flush_pending_requests`] = 0
	want[`sessionbridge_flush_dropped_total{kind="session_hash"}`] = 0
	want[`sessionbridge_flush_dropped_total{kind="request"}`] = 0
	for name, v := range want {
		if g, ok := got[name]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", name, g, ok, v)
		}
	}
	for name, v := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected series %s = %v", name, v)
		}
		if strings.Contains(name, `route="/dual/42"`) {
			t.Errorf("raw path as a route label: %s", name)
		}
	}
	for name, typ := range map[string]string{
		"sessionbridge_requests_total":         "COUNTER",
		"sessionbridge_conversions_total":      "COUNTER",
		"sessionbridge_rejections_total":       "COUNTER",
		"sessionbridge_flushed_requests_total": "COUNTER",
		"sessionbridge_flush_errors_total":     "COUNTER",
		"sessionbridge_flush_dropped_total":    "COUNTER",
		"sessionbridge_flush_pending_requests": "GAUGE",
	} {
		if types[name] != typ {
			t.Errorf("%s has type %q, want %s", name, types[name], typ)
		}
	}

	// Values are read at scrape time.
	pmServe(x.h, "/jwt", pmSession, creds, 0)
	got = gatherFrom(t, reg, nil)
	if k := `sessionbridge_rejections_total{reason="session_on_jwt_route",route="/jwt"}`; got[k] != want[k]+1 {
		t.Errorf("%s = %v after one more, want %v", k, got[k], want[k]+1)
	}

	// Redis down: errors and the pending batch show.
	srv.Pause()
	defer srv.Resume()
	for i := range 4 {
		pmServe(x.h, "/legacy", pmBearer, creds, i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := f.Flush(ctx); err == nil {
		t.Fatal("Flush with Redis paused: no error")
	}
	got = gatherFrom(t, reg, nil)
	if got[`sessionbridge_flush_errors_total`] != 1 || got[`sessionbridge_flush_pending_requests`] != 5 ||
		got[`sessionbridge_flushed_requests_total`] != total {
		t.Errorf("flush health while Redis is down: errors %v pending %v flushed %v; want 1, 5, %v",
			got[`sessionbridge_flush_errors_total`], got[`sessionbridge_flush_pending_requests`],
			got[`sessionbridge_flushed_requests_total`], total)
	}
	srv.Resume()
	if err := f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got = gatherFrom(t, reg, nil)
	if got[`sessionbridge_flush_pending_requests`] != 0 || got[`sessionbridge_flushed_requests_total`] != total+5 {
		t.Errorf("flush health after recovery: pending %v flushed %v", got[`sessionbridge_flush_pending_requests`], got[`sessionbridge_flushed_requests_total`])
	}
}

// TestPrometheusDroppedSessionHashes: session hashes past the buffer's
// bound are counted under kind="session_hash", and never reach Redis.
//
// The bound is the fleet's own (unexported, 50000 hashes between two
// flushes): it is learnt from a Fleet of its own, and the instance's
// buffer is filled with fillers through Fleet.SessionSeen up to two free
// places before 5 sessions are served, twice each. The fillers reach
// Redis too, so the distinct-sessions count (a HyperLogLog estimate) is
// about the bound; which hashes reached Redis is read on the wire.
func TestPrometheusDroppedSessionHashes(t *testing.T) {
	srv := redistest.New(t)
	key := bridgetest.NewKey(t)
	store := sessions.NewCookieStore(bridgetest.HashKey)
	rdb := srv.Client()
	pfadds := new(pmPFAddRecorder)
	rdb.AddHook(pfadds)
	x := newPmInstance(t, "web-0", key, store, rdb)
	creds := newPmCreds(t, key, x.b, store, 5)

	bound := pmSessionHashBound(t, rdb)
	const fillerPrefix = "filler-"
	for i := range bound - 2 {
		x.f.SessionSeen(fmt.Sprint(fillerPrefix, i))
	}
	if d := x.f.Stats().DroppedSessionHashes; d != 0 {
		t.Fatalf("%d hashes dropped while filling the buffer to %d of %d", d, bound-2, bound)
	}
	for i := range 10 { // 5 sessions, twice each
		pmServe(x.h, "/legacy", pmSession, creds, i)
	}
	if got := gatherMetrics(t, x.b, x.f)[`sessionbridge_flush_dropped_total{kind="session_hash"}`]; got != 6 {
		t.Errorf(`dropped session hashes = %v, want 6 (3 sessions past the bound, each seen twice)`, got)
	}
	if err := x.f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var fillers, kept int
	for _, m := range pfadds.members() {
		if strings.HasPrefix(m, fillerPrefix) {
			fillers++
		} else {
			kept++
		}
	}
	if fillers != bound-2 || kept != 2 {
		t.Errorf("hashes sent to Redis: %d fillers and %d sessions, want %d and the 2 kept", fillers, kept, bound-2)
	}
	// HyperLogLog's standard error is 0.81%.
	if n := pmReport(t, x.f).DistinctSessions; n < int64(bound)*97/100 || n > int64(bound)*103/100 {
		t.Errorf("distinct sessions %d, want about %d (the fillers and the 2 kept)", n, bound)
	}
}

// TestPrometheusWithoutFleet (was TestPrometheusRegisterer, when New
// registered the collector in Config.Registerer): without a Fleet, only
// the request families are described and collected; a second collector of
// the same metrics in one registry is refused.
func TestPrometheusWithoutFleet(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	router := bridgetest.NewRouter(nil)
	b, key, _ := bridgetest.NewBridge(t, func(c *bridge.Config) {
		c.Routes = bridgetest.Routes
		c.Router = router
	})
	router.Use(b.Middleware)
	c := bridgeprom.NewCollector(b, nil)
	reg.MustRegister(c)
	creds := &pmCreds{bearer: []string{key.Mint(t, b, "1", nil)}}
	for i := range 3 {
		pmServe(router, pmPath("/dual/{id}"), pmBearer, creds, i)
		pmServe(router, "/jwt", pmAnon, creds, i)
	}
	got := gatherFrom(t, reg, nil)
	want := map[string]float64{
		`sessionbridge_requests_total{mode="dual",route="/dual/{id}",source="jwt_bearer"}`: 3,
		`sessionbridge_requests_total{mode="jwt",route="/jwt",source="anonymous"}`:         3,
		`sessionbridge_rejections_total{reason="no_credentials",route="/jwt"}`:             3,
	}
	if len(got) != len(want) {
		t.Errorf("gathered %v, want %v (no flush metrics without a Fleet)", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	wantDescribed := []string{
		"sessionbridge_conversions_total", "sessionbridge_rejections_total",
		"sessionbridge_requests_total", "sessionbridge_retired_total",
	}
	if d := described(c); strings.Join(d, " ") != strings.Join(wantDescribed, " ") {
		t.Errorf("described %v, want %v (no flush families without a Fleet)", d, wantDescribed)
	}
	unused := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // Describe does no I/O
	t.Cleanup(func() { _ = unused.Close() })
	f, err := fleet.New(fleet.Config{Redis: unused})
	if err != nil {
		t.Fatal(err)
	}
	withFleet := strings.Join(described(bridgeprom.NewCollector(b, f)), " ")
	for _, name := range flushFamilies {
		if !strings.Contains(withFleet, name) {
			t.Errorf("with a Fleet, %s is not described (described %s)", name, withFleet)
		}
	}

	// A second bridge's collector: the same metrics, refused.
	b2, _, _ := bridgetest.NewBridge(t, nil)
	err = reg.Register(bridgeprom.NewCollector(b2, nil))
	if err == nil {
		t.Fatal("registered a second collector with the same metrics")
	}
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Errorf("error %v is not a prometheus.AlreadyRegisteredError", err)
	}

	// The same collector registered twice.
	if err := reg.Register(c); err == nil {
		t.Error("registering the collector twice succeeded")
	}
}

// TestPrometheusUnmatchedRoute: paths no route matches share one label.
func TestPrometheusUnmatchedRoute(t *testing.T) {
	router := bridgetest.NewRouter(nil)
	b, _, _ := bridgetest.NewBridge(t, func(c *bridge.Config) { c.Routes = bridgetest.Routes; c.Router = router })
	router.Use(b.Middleware)
	// mux runs middleware only on a match; a NotFoundHandler wrapped in
	// the middleware counts the rest.
	router.NotFoundHandler = b.Middleware(http.NotFoundHandler())
	for i := range 20 {
		pmServe(router, fmt.Sprintf("/random/%d", i), pmAnon, &pmCreds{}, 0)
	}
	got := gatherMetrics(t, b, nil)
	if v := got[`sessionbridge_requests_total{mode="legacy",route="unmatched",source="anonymous"}`]; v != 20 {
		t.Errorf("unmatched requests = %v, want 20; got %v", v, got)
	}
	if len(got) != 1 {
		t.Errorf("random paths made %d series: %v", len(got), got)
	}
}

// --- traffic of every kind on every route, and its tally ---

// pmKind is the credential a test request carries.
type pmKind int

const (
	pmAnon      pmKind = iota // nothing
	pmBearer                  // a valid bearer token
	pmCookie                  // a valid JWT cookie
	pmSession                 // a legacy session cookie (gorilla CookieStore)
	pmBadBearer               // a bearer token signed by an unknown key
	numPmKinds
)

func (k pmKind) String() string {
	return [...]string{"anonymous", "bearer", "jwt_cookie", "session", "bad_bearer"}[k]
}

// pmExpect is how the counting rules count a request of kind k on a route
// in mode m: its source, the reason counted (if any), whether the session
// is converted, and the status answered.
func pmExpect(m bridge.Mode, k pmKind) (src bridge.Source, reason bridge.Reason, hasReason, converted bool, status int) {
	switch k {
	case pmBearer:
		return bridge.SourceJWTBearer, 0, false, false, http.StatusOK
	case pmCookie:
		return bridge.SourceJWTCookie, 0, false, false, http.StatusOK
	case pmBadBearer:
		if m == bridge.Legacy {
			return bridge.SourceRejected, bridge.ReasonBearerInvalid, true, false, http.StatusOK
		}
		return bridge.SourceRejected, bridge.ReasonBearerInvalid, true, false, http.StatusUnauthorized
	case pmSession:
		switch m {
		case bridge.Legacy:
			return bridge.SourceSession, 0, false, false, http.StatusOK
		case bridge.Dual:
			return bridge.SourceSession, 0, false, true, http.StatusOK
		default:
			return bridge.SourceRejected, bridge.ReasonSessionOnJWT, true, false, http.StatusUnauthorized
		}
	default:
		if m == bridge.Legacy {
			return bridge.SourceAnonymous, 0, false, false, http.StatusOK
		}
		return bridge.SourceAnonymous, bridge.ReasonNoCredentials, true, false, http.StatusUnauthorized
	}
}

// pmPath is a concrete path of a test route template.
func pmPath(route string) string { return strings.ReplaceAll(route, "{id}", "42") }

// pmRoutes are bridgetest.Routes' templates, sorted.
func pmRoutes() []string {
	var out []string
	for r := range bridgetest.Routes {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// pmCreds are the credentials test requests carry.
type pmCreds struct {
	bearer   []string
	cookie   []string
	sessions []*http.Cookie
	bad      string
}

// newPmCreds mints tokens with key for b and saves nSessions sessions
// with store.
func newPmCreds(t testing.TB, key *bridgetest.Key, b *bridge.Bridge, store sessions.Store, nSessions int) *pmCreds {
	t.Helper()
	c := &pmCreds{}
	for i := range 3 {
		c.bearer = append(c.bearer, key.Mint(t, b, fmt.Sprint("bearer-", i), nil))
		c.cookie = append(c.cookie, key.Mint(t, b, fmt.Sprint("cookie-", i), nil))
	}
	c.bad = bridgetest.NewKey(t).Mint(t, b, "forger", nil)
	for i := range nSessions {
		ck, _ := bridgetest.SaveSession(t, store, bridgetest.User(fmt.Sprint(100+i)))
		c.sessions = append(c.sessions, ck)
	}
	return c
}

// pmServe sends one GET of kind k to path through h and returns the
// recorder.
func pmServe(h http.Handler, path string, k pmKind, c *pmCreds, i int) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "https://app.test"+path, nil)
	switch k {
	case pmBearer:
		r.Header.Set("Authorization", "Bearer "+c.bearer[i%len(c.bearer)])
	case pmCookie:
		r.AddCookie(&http.Cookie{Name: bridge.DefaultCookieName, Value: c.cookie[i%len(c.cookie)]})
	case pmSession:
		r.AddCookie(c.sessions[i%len(c.sessions)])
	case pmBadBearer:
		r.Header.Set("Authorization", "Bearer "+c.bad)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// pmTally counts what was served, per route and kind.
type pmTally struct {
	mu sync.Mutex
	n  map[string]*[numPmKinds]uint64
}

func newPmTally() *pmTally { return &pmTally{n: map[string]*[numPmKinds]uint64{}} }

func (t *pmTally) add(route string, k pmKind) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.n[route]
	if a == nil {
		a = new([numPmKinds]uint64)
		t.n[route] = a
	}
	a[k]++
}

// pmRouteWant is one route's expected counts.
type pmRouteWant struct {
	counts     bridge.SourceCounts
	converted  uint64
	rejections map[string]uint64
}

// want turns the tally into expected counts per route, modes as
// configured in bridgetest.Routes.
func (t *pmTally) want() map[string]*pmRouteWant {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string]*pmRouteWant{}
	for route, a := range t.n {
		w := &pmRouteWant{rejections: map[string]uint64{}}
		for k := pmKind(0); k < numPmKinds; k++ {
			n := a[k]
			if n == 0 {
				continue
			}
			src, reason, hasReason, conv, _ := pmExpect(bridgetest.Routes[route], k)
			w.counts.Add(src, n)
			if hasReason {
				w.rejections[reason.String()] += n
			}
			if conv {
				w.converted += n
			}
		}
		out[route] = w
	}
	return out
}

func (t *pmTally) total() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var n uint64
	for _, a := range t.n {
		for _, v := range a {
			n += v
		}
	}
	return n
}

// pmInstance is one Bridge with its Fleet and its own router.
type pmInstance struct {
	b *bridge.Bridge
	f *fleet.Fleet
	h http.Handler
}

// newPmInstance builds a Bridge with a Fleet on rdb (not running: tests
// flush by hand) and its own mux router carrying bridgetest.Routes,
// reading sessions from store.
func newPmInstance(t testing.TB, id string, key *bridgetest.Key, store sessions.Store, rdb redis.UniversalClient) *pmInstance {
	t.Helper()
	f, err := fleet.New(fleet.Config{
		Redis:               rdb,
		InstanceID:          id,
		FlushInterval:       30 * time.Millisecond,
		FlushTimeout:        200 * time.Millisecond,
		ModeRefreshInterval: time.Hour,
	})
	if err != nil {
		t.Fatalf("fleet.New: %v", err)
	}
	router := bridgetest.NewRouter(nil)
	b, _, _ := bridgetest.NewBridge(t, func(c *bridge.Config) {
		c.SigningKey = key.Key
		c.Sessions = bridge.StoreSource(store, bridgetest.SessionName)
		c.Routes = bridgetest.Routes
		c.Router = router
		c.Fleet = f
	})
	router.Use(b.Middleware)
	return &pmInstance{b: b, f: f, h: router}
}

// drive sends rounds of one request per (route, kind) through in,
// checking each status and recording it in tally.
func (in *pmInstance) drive(t testing.TB, c *pmCreds, tally *pmTally, rounds int) {
	t.Helper()
	routes := pmRoutes()
	for i := range rounds {
		for _, route := range routes {
			for k := pmKind(0); k < numPmKinds; k++ {
				w := pmServe(in.h, pmPath(route), k, c, i)
				_, _, _, conv, status := pmExpect(bridgetest.Routes[route], k)
				if w.Code != status {
					t.Errorf("%s %s: status %d, want %d", route, k, w.Code, status)
				}
				if conv && !strings.Contains(w.Header().Get("Set-Cookie"), bridge.DefaultCookieName+"=") {
					t.Errorf("%s %s: no JWT cookie set", route, k)
				}
				tally.add(route, k)
			}
		}
	}
}

// pmReport reads the fleet report through f.
func pmReport(t testing.TB, f *fleet.Fleet) *fleet.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rep, err := f.Report(ctx, time.Time{})
	if err != nil {
		t.Fatalf("Report: %v", err)
	}
	return rep
}

// pmSessionHashBound is how many session hashes a Fleet buffers between
// two flushes: SessionSeen on a Fleet of its own until one is dropped.
func pmSessionHashBound(t testing.TB, rdb redis.UniversalClient) int {
	t.Helper()
	f, err := fleet.New(fleet.Config{Redis: rdb})
	if err != nil {
		t.Fatalf("fleet.New: %v", err)
	}
	for i := range 10_000_000 {
		f.SessionSeen(fmt.Sprint("bound-", i))
		if f.Stats().DroppedSessionHashes > 0 {
			return i
		}
	}
	t.Fatal("no session hash dropped after 10M: the buffer is unbounded")
	return 0
}

// pmPFAddRecorder is a go-redis hook recording the members of the PFADDs
// that Redis acknowledged in a pipeline (the flush's).
type pmPFAddRecorder struct {
	mu  sync.Mutex
	got []string
}

func (h *pmPFAddRecorder) members() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.got...)
}

func (h *pmPFAddRecorder) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *pmPFAddRecorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h *pmPFAddRecorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if err := next(ctx, cmds); err != nil {
			return err
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, c := range cmds {
			if c.Name() != "pfadd" || c.Err() != nil {
				continue
			}
			for _, a := range c.Args()[2:] { // pfadd, key, members…
				h.got = append(h.got, fmt.Sprint(a))
			}
		}
		return nil
	}
}
