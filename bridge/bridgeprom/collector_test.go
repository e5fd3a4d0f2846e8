package bridgeprom_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

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
func promWant(tally *bridgetest.Tally) map[string]float64 {
	out := map[string]float64{}
	for route, w := range tally.Want() {
		mode := bridgetest.Routes[route].String()
		for s, n := range w.Counts.All() {
			if n > 0 {
				out[fmt.Sprintf(`sessionbridge_requests_total{mode=%q,route=%q,source=%q}`, mode, route, s)] = float64(n)
			}
		}
		if w.Converted > 0 {
			out[fmt.Sprintf(`sessionbridge_conversions_total{route=%q}`, route)] = float64(w.Converted)
		}
		for reason, n := range w.Rejections {
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
	tr := bridgetest.NewTraffic(t, 5)
	x := newPmInstance(t, "web-0", tr, srv.Client())
	b, f := x.b, x.f

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(bridgeprom.NewCollector(b, f))
	tr.Drive(t, x.h, 3)
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
	want := promWant(tr.Tally)
	total := float64(tr.Tally.Total())
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
	bridgetest.Serve(x.h, "/jwt", bridgetest.KindSession, tr.Creds, 0)
	got = gatherFrom(t, reg, nil)
	if k := `sessionbridge_rejections_total{reason="session_on_jwt_route",route="/jwt"}`; got[k] != want[k]+1 {
		t.Errorf("%s = %v after one more, want %v", k, got[k], want[k]+1)
	}

	// Redis down: errors and the pending batch show.
	srv.Pause()
	defer srv.Resume()
	for i := range 4 {
		bridgetest.Serve(x.h, "/legacy", bridgetest.KindBearer, tr.Creds, i)
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
	tr := bridgetest.NewTraffic(t, 5)
	rdb := srv.Client()
	pfadds := new(pmPFAddRecorder)
	rdb.AddHook(pfadds)
	x := newPmInstance(t, "web-0", tr, rdb)

	bound := pmSessionHashBound(t, rdb)
	const fillerPrefix = "filler-"
	for i := range bound - 2 {
		x.f.SessionSeen(fmt.Sprint(fillerPrefix, i))
	}
	if d := x.f.Stats().DroppedSessionHashes; d != 0 {
		t.Fatalf("%d hashes dropped while filling the buffer to %d of %d", d, bound-2, bound)
	}
	for i := range 10 { // 5 sessions, twice each
		bridgetest.Serve(x.h, "/legacy", bridgetest.KindSession, tr.Creds, i)
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
	rep := bridgetest.Within(t, "Report", func(ctx context.Context) (*fleet.Report, error) { return x.f.Report(ctx, time.Time{}) })
	if n := rep.DistinctSessions; n < int64(bound)*97/100 || n > int64(bound)*103/100 {
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
	creds := &bridgetest.Creds{Bearer: []string{key.Mint(t, b, "1", nil)}}
	for i := range 3 {
		bridgetest.Serve(router, bridgetest.RoutePath("/dual/{id}"), bridgetest.KindBearer, creds, i)
		bridgetest.Serve(router, "/jwt", bridgetest.KindAnon, creds, i)
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
		"sessionbridge_conversions_total", "sessionbridge_guest_sessions_total",
		"sessionbridge_handler_session_reads_total", "sessionbridge_rejections_total",
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
		bridgetest.Serve(router, fmt.Sprintf("/random/%d", i), bridgetest.KindAnon, &bridgetest.Creds{}, 0)
	}
	got := gatherMetrics(t, b, nil)
	if v := got[`sessionbridge_requests_total{mode="legacy",route="unmatched",source="anonymous"}`]; v != 20 {
		t.Errorf("unmatched requests = %v, want 20; got %v", v, got)
	}
	if len(got) != 1 {
		t.Errorf("random paths made %d series: %v", len(got), got)
	}
}

// --- an instance of the fleet, serving bridgetest.Traffic ---

// pmInstance is one Bridge with its Fleet and its own router.
type pmInstance struct {
	b *bridge.Bridge
	f *fleet.Fleet
	h http.Handler
}

// newPmInstance builds a Fleet on rdb and a Bridge of tr using it (see
// bridgetest.Traffic.NewBridge). The Fleet does not run (tests flush by
// hand, with their own deadlines), so its intervals and FlushTimeout are
// the defaults.
func newPmInstance(t testing.TB, id string, tr *bridgetest.Traffic, rdb redis.UniversalClient) *pmInstance {
	t.Helper()
	f, err := fleet.New(fleet.Config{Redis: rdb, InstanceID: id})
	if err != nil {
		t.Fatalf("fleet.New: %v", err)
	}
	in := &pmInstance{f: f}
	in.b, in.h, _ = tr.NewBridge(t, f)
	return in
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
