package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// getReport serves GET /migration/report.json?query through h.
func getReport(t testing.TB, h http.Handler, query string) *httptest.ResponseRecorder {
	t.Helper()
	target := "https://app.test/migration/report.json"
	if query != "" {
		target += "?" + query
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, target, nil))
	return w
}

// decodeReport decodes a report answer, checking its headers.
func decodeReport(t testing.TB, w *httptest.ResponseRecorder) *Report {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("report: %d %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("report Content-Type %q", ct)
	}
	var rep Report
	if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
		t.Fatalf("decode report: %v\n%s", err, w.Body)
	}
	return &rep
}

// keysOf returns the sorted keys of a JSON object.
func keysOf(t testing.TB, v any, what string) []string {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: %T, want an object", what, v)
	}
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sameKeys(t testing.TB, v any, what string, want ...string) {
	t.Helper()
	sort.Strings(want)
	if got := keysOf(t, v, what); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("%s has keys %v, want exactly %v", what, got, want)
	}
}

// TestReportJSONSchema: the report served by ReportHandler has exactly the
// documented fields, its counts are what was served, totals sum the
// routes, routes are path templates and session_share follows its
// definition.
func TestReportJSONSchema(t *testing.T) {
	srv := redistest.New(t)
	key := newTestKey(t)
	store := sessions.NewCookieStore(testHashKey)
	creds := newFlCreds(t, key, store, 2)
	tally := newFlTally()
	x := newFlInstance(t, "web-0", key, store, srv.Client(), nil)
	x.drive(t, creds, tally, 2)
	// A dual route seen by JWT users only, and one by sessions only.
	for i := range 3 {
		flServe(x.h, "/legacy/app", flBearer, creds, i)
		tally.add("/legacy/app", flBearer)
	}
	if err := x.b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	w := getReport(t, x.b.ReportHandler(), "")
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}

	var raw map[string]any
	dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		t.Fatalf("decode: %v\n%s", err, w.Body)
	}
	sameKeys(t, raw, "report", "generated_at", "scope", "since", "totals", "routes", "distinct_sessions")
	sameKeys(t, raw["totals"], "totals", "session", "jwt_cookie", "jwt_bearer", "anonymous", "rejected", "converted")
	if raw["scope"] != "fleet" {
		t.Errorf("scope %v, want fleet", raw["scope"])
	}
	for _, field := range []string{"generated_at", "since"} {
		s, _ := raw[field].(string)
		if _, err := time.Parse(time.RFC3339, s); err != nil {
			t.Errorf("%s %q is not RFC 3339: %v", field, s, err)
		}
	}
	routes, ok := raw["routes"].([]any)
	if !ok || len(routes) == 0 {
		t.Fatalf("routes: %T %v", raw["routes"], raw["routes"])
	}
	for i, r := range routes {
		sameKeys(t, r, "routes[i]", "route", "mode", "counts", "converted", "session_share")
		sameKeys(t, r.(map[string]any)["counts"], "routes[i].counts", "session", "jwt_cookie", "jwt_bearer", "anonymous", "rejected")
		if name := r.(map[string]any)["route"].(string); strings.Contains(name, "/42") {
			t.Errorf("routes[%d] is a raw path %q, not a template", i, name)
		}
	}

	rep := decodeReport(t, w)
	want := tally.want()
	for _, w := range want {
		w.rejections = nil // not part of the JSON
	}
	flCompare(t, "report JSON vs served", fromReport(t, rep), want)
	if rep.GeneratedAt.Before(before.Add(-time.Second)) || rep.GeneratedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("generated_at %v is not now", rep.GeneratedAt)
	}
	if want := before.UTC().Add(-DefaultRetention).Truncate(time.Hour); !rep.Since.Equal(want) {
		t.Errorf("since %v, want the retention's start %v", rep.Since, want)
	}
	if rep.DistinctSessions != 2 {
		t.Errorf("distinct_sessions %d, want 2", rep.DistinctSessions)
	}
	seen := map[string]bool{}
	for _, r := range rep.Routes {
		seen[r.Route] = true
		want := 0.0
		if a := r.Counts.Session + r.Counts.JWTCookie + r.Counts.JWTBearer; a > 0 {
			want = float64(r.Counts.Session) / float64(a)
		}
		if r.SessionShare != want {
			t.Errorf("route %s session_share %v, want %v", r.Route, r.SessionShare, want)
		}
		if m, ok := testRoutes[r.Route]; ok && r.Mode != m.String() {
			t.Errorf("route %s mode %q, want %q", r.Route, r.Mode, m)
		}
	}
	for route := range testRoutes {
		if !seen[route] {
			t.Errorf("route %s missing from the report", route)
		}
	}
	// The sessions-and-JWTs mix of the driven routes: 1 session in 3
	// authenticated requests on legacy and dual; none on jwt (refused).
	for _, r := range rep.Routes {
		switch r.Route {
		case "/legacy", "/dual", "/dual/{id}":
			if r.SessionShare != 1.0/3 {
				t.Errorf("%s session_share %v, want 1/3", r.Route, r.SessionShare)
			}
		case "/jwt":
			if r.SessionShare != 0 {
				t.Errorf("/jwt session_share %v, want 0", r.SessionShare)
			}
		case RouteUnmatched:
			if r.SessionShare != 0 || r.Counts != (SourceCounts{}) {
				t.Errorf("unmatched: %+v, want nothing and share 0", r)
			}
		}
	}
}

// TestReportSessionShare: session / (session + jwt_cookie + jwt_bearer),
// 0 without authenticated traffic.
func TestReportSessionShare(t *testing.T) {
	for _, c := range []struct {
		counts SourceCounts
		want   float64
	}{
		{SourceCounts{}, 0},
		{SourceCounts{Anonymous: 7, Rejected: 3}, 0},
		{SourceCounts{Session: 5}, 1},
		{SourceCounts{Session: 1, JWTCookie: 2, JWTBearer: 1, Anonymous: 100}, 0.25},
		{SourceCounts{JWTCookie: 2, JWTBearer: 1}, 0},
	} {
		if got := c.counts.SessionShare(); got != c.want {
			t.Errorf("%+v: session share %v, want %v", c.counts, got, c.want)
		}
	}
}

// hinc adds n to field in the hourly bucket of hour, as a flush would.
func hinc(t testing.TB, rdb redis.UniversalClient, hour time.Time, n int64, field ...string) {
	t.Helper()
	k := newKeys("").hour(hour)
	if err := rdb.HIncrBy(context.Background(), k, strings.Join(field, fieldSep), n).Err(); err != nil {
		t.Fatalf("HINCRBY %s: %v", k, err)
	}
}

// TestReportSince: the report sums the retained hours; ?since= (a
// duration or an RFC 3339 time) narrows the window to whole hours; hours
// past the retention never count.
func TestReportSince(t *testing.T) {
	srv := redistest.New(t)
	rdb := srv.Client()
	now := time.Date(2026, 11, 29, 10, 30, 0, 0, time.UTC)
	b := newTestBridge(t, func(c *Config) {
		c.Redis = rdb
		c.Routes = Routes{"/api/me": Dual}
		c.Retention = 6 * time.Hour
		c.Now = func() time.Time { return now }
	})
	h := func(hh int) time.Time { return time.Date(2026, 11, 29, hh, 0, 0, 0, time.UTC) }
	for hh, n := range map[int]int64{3: 1, 5: 2, 8: 4, 10: 8} {
		hinc(t, rdb, h(hh), n, fieldRequest, "/api/me", "dual", "jwt_cookie")
		hinc(t, rdb, h(hh), 16*n, fieldRequest, "/api/me", "dual", "session")
		hinc(t, rdb, h(hh), n, fieldConverted, "/api/me")
		hinc(t, rdb, h(hh), n, fieldRejection, "/api/me", "no_credentials")
	}
	// Fields the report does not know are ignored.
	hinc(t, rdb, h(10), 5, fieldRequest, "/api/me", "dual", "carrier_pigeon")
	hinc(t, rdb, h(10), 5, "x", "/api/me")

	for _, c := range []struct {
		query string
		since time.Time
		n     uint64 // jwt_cookie requests in the window
	}{
		{"", h(4), 2 + 4 + 8},
		{"since=48h", h(4), 2 + 4 + 8}, // clamped to the retention
		{"since=3h", h(7), 4 + 8},
		{"since=1h", h(9), 8},
		{"since=30m", h(10), 8},
		{"since=" + url.QueryEscape("2026-11-29T08:15:00Z"), h(8), 4 + 8},
		{"since=" + url.QueryEscape("2026-11-29T11:15:00+01:00"), h(10), 8},
		{"since=" + url.QueryEscape("2026-11-29T12:00:00Z"), h(12), 0}, // the future: empty
		{"since=" + url.QueryEscape("2026-12-01T00:00:00Z"), h(0).AddDate(0, 0, 2), 0},
	} {
		rep := decodeReport(t, getReport(t, b.ReportHandler(), c.query))
		if !rep.Since.Equal(c.since) {
			t.Errorf("%q: since %v, want %v", c.query, rep.Since, c.since)
		}
		var r *RouteReport
		for i := range rep.Routes {
			if rep.Routes[i].Route == "/api/me" {
				r = &rep.Routes[i]
			}
		}
		if r == nil {
			t.Fatalf("%q: /api/me missing", c.query)
		}
		want := SourceCounts{JWTCookie: c.n, Session: 16 * c.n}
		if r.Counts != want || r.Converted != c.n || rep.Totals.SourceCounts != want || rep.Totals.Converted != c.n {
			t.Errorf("%q: counts %+v converted %d, totals %+v; want %+v and %d", c.query, r.Counts, r.Converted, rep.Totals, want, c.n)
		}
		if r.Mode != "dual" {
			t.Errorf("%q: mode %q", c.query, r.Mode)
		}
	}

	// The Go API keeps rejections by reason and the hourly trend.
	rep, err := b.Report(context.Background(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Routes {
		if r.Route != "/api/me" {
			continue
		}
		if r.Rejections["no_credentials"] != 14 {
			t.Errorf("rejections %v, want no_credentials 14", r.Rejections)
		}
		if len(r.Hourly) != 7 {
			t.Fatalf("%d hourly points, want 7 (04:00 to 10:00)", len(r.Hourly))
		}
		for i, p := range r.Hourly {
			var want uint64
			switch p.Hour.Hour() {
			case 5:
				want = 2
			case 8:
				want = 4
			case 10:
				want = 8
			}
			if !p.Hour.Equal(h(4+i)) || p.Counts.JWTCookie != want {
				t.Errorf("hourly[%d] = %v %+v, want %v with %d jwt_cookie", i, p.Hour, p.Counts, h(4+i), want)
			}
		}
	}

	for _, q := range []string{"since=yesterday", "since=-1h", "since=2026-11-29"} {
		if w := getReport(t, b.ReportHandler(), q); w.Code != http.StatusBadRequest {
			t.Errorf("%q: %d, want 400", q, w.Code)
		}
	}
}

// TestReportReadyToSwitch: a dual route whose authenticated traffic over
// the last ReadyAfter was all JWT is ready to switch; a single session in
// that period, no authenticated traffic, another mode or a window shorter
// than ReadyAfter say not ready.
func TestReportReadyToSwitch(t *testing.T) {
	srv := redistest.New(t)
	rdb := srv.Client()
	now := time.Date(2026, 11, 29, 10, 30, 0, 0, time.UTC)
	b := newTestBridge(t, func(c *Config) {
		c.Redis = rdb
		c.Routes = Routes{"/ready": Dual, "/late": Dual, "/session": Dual, "/anon": Dual, "/legacy": Legacy, "/jwt": JWT, "/quiet": Dual}
		c.ReadyAfter = 3 * time.Hour // from 07:30
		c.Now = func() time.Time { return now }
	})
	h := func(hh int) time.Time { return time.Date(2026, 11, 29, hh, 0, 0, 0, time.UTC) }
	q := func(hh int, route, mode, source string, n int64) {
		hinc(t, rdb, h(hh), n, fieldRequest, route, mode, source)
	}
	q(5, "/ready", "dual", "session", 10) // before the period: forgiven
	q(6, "/ready", "legacy", "session", 10)
	for hh := 7; hh <= 10; hh++ {
		q(hh, "/ready", "dual", "jwt_cookie", 5)
		q(hh, "/ready", "dual", "anonymous", 1)
		q(hh, "/session", "dual", "jwt_cookie", 50)
		q(hh, "/legacy", "legacy", "jwt_bearer", 5)
		q(hh, "/jwt", "jwt", "jwt_bearer", 5)
		q(hh, "/anon", "dual", "anonymous", 5)
	}
	q(9, "/session", "dual", "session", 1) // one session in the period
	q(10, "/late", "dual", "jwt_bearer", 3)

	want := map[string]bool{"/ready": true, "/late": true}
	rep, err := b.Report(context.Background(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Routes {
		if r.ReadyToSwitch != want[r.Route] {
			t.Errorf("%s (%s, %+v): ready %v, want %v", r.Route, r.Mode, r.Counts, r.ReadyToSwitch, want[r.Route])
		}
	}
	if rep.ReadyAfter != 3*time.Hour {
		t.Errorf("ReadyAfter %v", rep.ReadyAfter)
	}
	// A window shorter than ReadyAfter cannot tell.
	rep, err = b.Report(context.Background(), now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Routes {
		if r.ReadyToSwitch {
			t.Errorf("%s ready within a 1h window", r.Route)
		}
	}
	// A session now: not ready any more.
	q(10, "/ready", "dual", "session", 1)
	rep, err = b.Report(context.Background(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Routes {
		if r.Route == "/ready" && r.ReadyToSwitch {
			t.Error("/ready still ready after a session request")
		}
	}
}

// TestReportRedisDown: with Redis hung or gone, ReportHandler answers 503
// within the request's deadline and the client's timeouts.
func TestReportRedisDown(t *testing.T) {
	srv := redistest.New(t)
	b := newTestBridge(t, func(c *Config) { c.Redis = srv.Client() })
	if w := getReport(t, b.ReportHandler(), ""); w.Code != http.StatusOK {
		t.Fatalf("report with Redis up: %d", w.Code)
	}

	srv.Pause()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	w := httptest.NewRecorder()
	b.ReportHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/migration/report.json", nil).WithContext(ctx))
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("report with Redis paused: %d, want 503", w.Code)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("report with Redis paused took %v", d)
	}
	srv.Resume()

	srv.Kill()
	if w := getReport(t, b.ReportHandler(), ""); w.Code != http.StatusServiceUnavailable {
		t.Errorf("report with Redis killed: %d, want 503", w.Code)
	} else if strings.Contains(w.Body.String(), srv.Addr) {
		t.Errorf("503 body names the Redis address: %s", w.Body)
	}

	// No Redis configured: an error, and 503 from the handler.
	nb := newTestBridge(t, nil)
	if _, err := nb.Report(context.Background(), time.Time{}); err == nil {
		t.Error("Report without Config.Redis: no error")
	}
	if w := getReport(t, nb.ReportHandler(), ""); w.Code != http.StatusServiceUnavailable {
		t.Errorf("report without Redis: %d, want 503", w.Code)
	}
	if _, err := (&Fleet{}).Report(context.Background(), time.Now(), time.Time{}, nil); err == nil {
		t.Error("Fleet.Report without Redis: no error")
	}
}

// TestReportFleetModes: Fleet.Report without an instance's modes (as the
// CLI calls it) shows the modes the fleet published, a run-time override
// winning; traffic of a route no running instance knows still counts.
func TestReportFleetModes(t *testing.T) {
	srv := redistest.New(t)
	rdb := srv.Client()
	key := newTestKey(t)
	store := sessions.NewCookieStore(testHashKey)
	creds := newFlCreds(t, key, store, 1)
	tally := newFlTally()
	x := newFlInstance(t, "web-0", key, store, rdb, nil)
	x.drive(t, creds, tally, 1)
	ctx := context.Background()
	if err := x.b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	hinc(t, rdb, time.Now(), 2, fieldRequest, "/gone", "jwt", "jwt_bearer")

	fl := &Fleet{Redis: rdb}
	modes := func() map[string]string {
		rep, err := fl.Report(ctx, time.Now(), time.Time{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, r := range rep.Routes {
			out[r.Route] = r.Mode
		}
		if rep.Totals.JWTBearer == 0 {
			t.Error("no jwt_bearer traffic in the fleet report")
		}
		return out
	}
	m := modes()
	for route, want := range testRoutes {
		if m[route] != want.String() {
			t.Errorf("published mode of %s: %q, want %q", route, m[route], want)
		}
	}
	if _, ok := m["/gone"]; !ok {
		t.Error("a route only in the counts is missing from the report")
	}
	if err := fl.SetMode(ctx, "/dual", JWT); err != nil {
		t.Fatal(err)
	}
	if m := modes(); m["/dual"] != "jwt" {
		t.Errorf("mode of /dual with an override: %q, want jwt", m["/dual"])
	}
	// The instance's own report shows the mode it runs (it has not
	// refreshed yet).
	for _, r := range flReport(t, x.b).Routes {
		if r.Route == "/dual" && r.Mode != "dual" {
			t.Errorf("instance report: /dual mode %q, want dual until refreshed", r.Mode)
		}
	}
}
