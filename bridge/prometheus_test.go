package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/sessions"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// gatherMetrics registers b's collector in a new pedantic registry (which
// checks that every metric collected was described, and consistently) and
// returns every sample as `name{label="value",…}` → value, labels sorted.
func gatherMetrics(t testing.TB, b *Bridge) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(b.Collector()); err != nil {
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

// promWant is the request, conversion and rejection series a tally of
// served requests must produce, modes as in testRoutes.
func promWant(tally *flTally) map[string]float64 {
	out := map[string]float64{}
	for route, w := range tally.want() {
		mode := testRoutes[route].String()
		for s := Source(0); s < numSources; s++ {
			var c SourceCounts
			c.add(s, 1)
			n := w.counts.Session*c.Session + w.counts.JWTCookie*c.JWTCookie + w.counts.JWTBearer*c.JWTBearer +
				w.counts.Anonymous*c.Anonymous + w.counts.Rejected*c.Rejected
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
	key := newTestKey(t)
	store := sessions.NewCookieStore(testHashKey)
	creds := newFlCreds(t, key, store, 5)
	tally := newFlTally()
	x := newFlInstance(t, "web-0", key, store, srv.Client(), nil)
	b := x.b

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(b.Collector())
	x.drive(t, creds, tally, 3)
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
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
	flServe(x.h, "/jwt", flSession, creds, 0)
	got = gatherFrom(t, reg, nil)
	if k := `sessionbridge_rejections_total{reason="session_on_jwt_route",route="/jwt"}`; got[k] != want[k]+1 {
		t.Errorf("%s = %v after one more, want %v", k, got[k], want[k]+1)
	}

	// Redis down: errors and the pending batch show.
	srv.Pause()
	defer srv.Resume()
	for i := range 4 {
		flServe(x.h, "/legacy", flBearer, creds, i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := b.Flush(ctx); err == nil {
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
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got = gatherFrom(t, reg, nil)
	if got[`sessionbridge_flush_pending_requests`] != 0 || got[`sessionbridge_flushed_requests_total`] != total+5 {
		t.Errorf("flush health after recovery: pending %v flushed %v", got[`sessionbridge_flush_pending_requests`], got[`sessionbridge_flushed_requests_total`])
	}
}

// TestPrometheusDroppedSessionHashes: session hashes past the buffer's
// bound are counted under kind="session_hash".
func TestPrometheusDroppedSessionHashes(t *testing.T) {
	srv := redistest.New(t)
	key := newTestKey(t)
	store := sessions.NewCookieStore(testHashKey)
	creds := newFlCreds(t, key, store, 5)
	x := newFlInstance(t, "web-0", key, store, srv.Client(), nil)
	x.b.flusher.sidMu.Lock()
	x.b.flusher.maxSIDs = 2
	x.b.flusher.sidMu.Unlock()
	for i := range 10 { // 5 sessions, twice each
		flServe(x.h, "/legacy", flSession, creds, i)
	}
	if got := gatherMetrics(t, x.b)[`sessionbridge_flush_dropped_total{kind="session_hash"}`]; got != 6 {
		t.Errorf(`dropped session hashes = %v, want 6 (3 sessions past the bound, each seen twice)`, got)
	}
	if err := x.b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := flReport(t, x.b).DistinctSessions; n != 2 {
		t.Errorf("distinct sessions %d, want the 2 kept", n)
	}
}

// TestPrometheusRegisterer: Config.Registerer gets the collector in New;
// registering a second bridge's collector there is an error naming the
// field. Without Redis, only the request families are described.
func TestPrometheusRegisterer(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	key := newTestKey(t)
	router := newTestRouter(nil)
	b := newTestBridge(t, func(c *Config) {
		c.SigningKey = key
		c.Routes = testRoutes
		c.Router = router
		c.Registerer = reg
	})
	router.Use(b.Middleware)
	creds := &flCreds{bearer: []string{mintTestToken(t, b, "1", nil)}}
	for i := range 3 {
		flServe(router, flPath("/dual/{id}"), flBearer, creds, i)
		flServe(router, "/jwt", flAnon, creds, i)
	}
	got := gatherFrom(t, reg, nil)
	want := map[string]float64{
		`sessionbridge_requests_total{mode="dual",route="/dual/{id}",source="jwt_bearer"}`: 3,
		`sessionbridge_requests_total{mode="jwt",route="/jwt",source="anonymous"}`:         3,
		`sessionbridge_rejections_total{reason="no_credentials",route="/jwt"}`:             3,
	}
	if len(got) != len(want) {
		t.Errorf("gathered %v, want %v (no flush metrics without Redis)", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}

	_, err := New(Config{SigningKey: key, Issuer: testIssuer, Audience: testAudience, Registerer: reg})
	if err == nil {
		t.Fatal("New registered a second collector with the same metrics")
	}
	if !strings.Contains(err.Error(), "Config.Registerer") {
		t.Errorf("error %q does not name Config.Registerer", err)
	}
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Errorf("error %v does not wrap prometheus.AlreadyRegisteredError", err)
	}

	// The same collector registered twice by hand.
	if err := reg.Register(b.Collector()); err == nil {
		t.Error("registering b.Collector() twice succeeded")
	}
}

// TestPrometheusUnmatchedRoute: paths no route matches share one label.
func TestPrometheusUnmatchedRoute(t *testing.T) {
	router := newTestRouter(nil)
	b := newTestBridge(t, func(c *Config) { c.Routes = testRoutes; c.Router = router })
	router.Use(b.Middleware)
	// mux runs middleware only on a match; a NotFoundHandler wrapped in
	// the middleware counts the rest.
	router.NotFoundHandler = b.Middleware(http.NotFoundHandler())
	for i := range 20 {
		flServe(router, fmt.Sprintf("/random/%d", i), flAnon, &flCreds{}, 0)
	}
	got := gatherMetrics(t, b)
	if v := got[`sessionbridge_requests_total{mode="legacy",route="unmatched",source="anonymous"}`]; v != 20 {
		t.Errorf("unmatched requests = %v, want 20; got %v", v, got)
	}
	if len(got) != 1 {
		t.Errorf("random paths made %d series: %v", len(got), got)
	}
}
