package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/internal/bridgetest"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// ftGetReport serves GET /migration/report.json?query through h.
func ftGetReport(t testing.TB, h http.Handler, query string) *httptest.ResponseRecorder {
	t.Helper()
	target := "https://app.test/migration/report.json"
	if query != "" {
		target += "?" + query
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, target, nil))
	return w
}

// ftDecodeReport decodes a report answer, checking its headers.
func ftDecodeReport(t testing.TB, w *httptest.ResponseRecorder) *Report {
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

// ftKeysOf returns the sorted keys of a JSON object.
func ftKeysOf(t testing.TB, v any, what string) []string {
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

func ftSameKeys(t testing.TB, v any, what string, want ...string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want)) // a copy: the caller's order stays
	if got := ftKeysOf(t, v, what); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("%s has keys %v, want exactly %v", what, got, want)
	}
}

// ftKeyOrder returns the keys of the JSON object data, in their order.
func ftKeyOrder(t testing.TB, data []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("%s: not a JSON object (%v, %v)", data, tok, err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("%s: %v", data, err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatalf("%s: %v", data, err)
		}
	}
	return keys
}

// ftRawReport decodes a report answer as JSON values (numbers as
// json.Number), checking that it has exactly the report's keys.
func ftRawReport(t testing.TB, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var raw map[string]any
	dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		t.Fatalf("decode: %v\n%s", err, w.Body)
	}
	ftSameKeys(t, raw, "report", "generated_at", "scope", "app_name", "since", "totals", "routes", "distinct_sessions")
	return raw
}

// ftTotalsKeys are the keys of the report's totals (plus "retired" when
// sessions were retired).
var ftTotalsKeys = []string{"session", "jwt_cookie", "jwt_bearer", "app", "anonymous", "rejected", "converted"}

// TestReportJSONSchema: the report served by ReportHandler has exactly the
// documented fields, its counts are what was served, totals sum the
// routes, routes are path templates and session_share follows its
// definition; each route's rejections name the reasons seen, and only
// those.
func TestReportJSONSchema(t *testing.T) {
	srv := redistest.New(t)
	tr := bridgetest.NewTraffic(t, 2)
	x := ftNewInstance(t, "web-0", tr, srv.Client(), nil)
	tr.Drive(t, x.h, 2)
	// A dual route seen by JWT users only, and one by sessions only.
	for i := range 3 {
		bridgetest.Serve(x.h, "/legacy/app", bridgetest.KindBearer, tr.Creds, i)
		tr.Tally.Add("/legacy/app", bridgetest.KindBearer)
	}
	if err := x.f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	w := ftGetReport(t, x.f.ReportHandler(), "")
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}

	raw := ftRawReport(t, w)
	ftSameKeys(t, raw["totals"], "totals", ftTotalsKeys...)
	var parts struct {
		Totals json.RawMessage
		Routes []struct{ Counts json.RawMessage }
	}
	if err := json.Unmarshal(w.Body.Bytes(), &parts); err != nil {
		t.Fatal(err)
	}
	if got := ftKeyOrder(t, parts.Totals); strings.Join(got, ",") != strings.Join(ftTotalsKeys, ",") {
		t.Errorf("totals keys in the order %v, want %v", got, ftTotalsKeys)
	}
	for _, r := range parts.Routes {
		if got, want := ftKeyOrder(t, r.Counts), ftTotalsKeys[:6]; strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("route counts keys in the order %v, want %v", got, want)
		}
	}
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
	want := tr.Tally.Want()
	for i, r := range routes {
		ftSameKeys(t, r, "routes[i]", "route", "mode", "counts", "converted", "session_share", "guest_sessions", "handler_session_reads", "rejections", "ready_to_switch", "ready_reason")
		ftSameKeys(t, r.(map[string]any)["counts"], "routes[i].counts", ftTotalsKeys[:6]...)
		name := r.(map[string]any)["route"].(string)
		if strings.Contains(name, "/42") {
			t.Errorf("routes[%d] is a raw path %q, not a template", i, name)
		}
		// Rejections: exactly the reasons seen on the route, each with
		// its count.
		wantRej := map[string]uint64{}
		if rw := want[name]; rw != nil {
			wantRej = rw.Rejections
		}
		var wantReasons []string
		for reason, n := range wantRej {
			if n > 0 {
				wantReasons = append(wantReasons, reason)
			}
		}
		rej := r.(map[string]any)["rejections"]
		ftSameKeys(t, rej, "routes["+name+"].rejections", wantReasons...)
		for reason, v := range rej.(map[string]any) {
			n, err := v.(json.Number).Int64()
			if err != nil || n <= 0 || uint64(n) != wantRej[reason] {
				t.Errorf("routes[%s].rejections[%s] = %v, want %d", name, reason, v, wantRej[reason])
			}
		}
	}
	for _, route := range []string{"/dual", "/jwt"} {
		if len(want[route].Rejections) == 0 {
			t.Errorf("%s: the traffic should have had rejections", route)
		}
	}

	rep := ftDecodeReport(t, w)
	ftCompare(t, "report JSON vs served", ftFromReport(t, rep), want)
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
		c := r.Counts
		if a := c.Of(bridge.SourceSession) + c.Of(bridge.SourceJWTCookie) + c.Of(bridge.SourceJWTBearer); a > 0 {
			want = float64(c.Of(bridge.SourceSession)) / float64(a)
		}
		if r.SessionShare != want {
			t.Errorf("route %s session_share %v, want %v", r.Route, r.SessionShare, want)
		}
		if m, ok := bridgetest.Routes[r.Route]; ok && r.Mode != m.String() {
			t.Errorf("route %s mode %q, want %q", r.Route, r.Mode, m)
		}
	}
	for route := range bridgetest.Routes {
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
		case bridge.RouteUnmatched:
			if r.SessionShare != 0 || r.Counts != (bridge.SourceCounts{}) {
				t.Errorf("unmatched: %+v, want nothing and share 0", r)
			}
		}
	}
}

// TestReportTotalsJSON: the totals are the counts by source, converted,
// and retired only when some session was retired; the report decodes back
// into what was encoded.
func TestReportTotalsJSON(t *testing.T) {
	for _, retired := range []uint64{0, 2} {
		var tot Totals
		tot.Add(bridge.SourceSession, 5)
		tot.Add(bridge.SourceJWTBearer, 3)
		tot.Add(bridge.SourceRejected, 1)
		tot.Converted = 4
		tot.Retired = retired
		data, err := json.Marshal(tot)
		if err != nil {
			t.Fatal(err)
		}
		var raw any
		if err := json.Unmarshal(data, &raw); err != nil {
			t.Fatalf("totals %s: %v", data, err)
		}
		keys := ftTotalsKeys
		if retired > 0 {
			keys = append(keys[:len(keys):len(keys)], "retired")
		}
		ftSameKeys(t, raw, "totals "+string(data), keys...)
		// In the order of the report before the split, too.
		if got := ftKeyOrder(t, data); strings.Join(got, ",") != strings.Join(keys, ",") {
			t.Errorf("totals keys in the order %v, want %v", got, keys)
		}
		for k, v := range map[string]float64{"session": 5, "jwt_bearer": 3, "rejected": 1, "jwt_cookie": 0, "anonymous": 0, "converted": 4} {
			if got := raw.(map[string]any)[k]; got != v {
				t.Errorf("totals %s: %s = %v, want %v", data, k, got, v)
			}
		}
		if retired > 0 && raw.(map[string]any)["retired"] != float64(retired) {
			t.Errorf("totals %s: retired, want %d", data, retired)
		}

		// A client decoding the report gets the same totals back.
		var back Totals
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatalf("decode totals %s: %v", data, err)
		}
		if back != tot {
			t.Errorf("totals %s decode to %s converted %d retired %d, want converted %d retired %d",
				data, bridgetest.CountsString(back.SourceCounts), back.Converted, back.Retired, tot.Converted, tot.Retired)
		}
	}
}

// TestReportSessionShare: session / (session + jwt_cookie + jwt_bearer),
// 0 without authenticated traffic.
func TestReportSessionShare(t *testing.T) {
	counts := func(kv ...any) bridge.SourceCounts {
		var c bridge.SourceCounts
		for i := 0; i < len(kv); i += 2 {
			c.Add(kv[i].(bridge.Source), uint64(kv[i+1].(int)))
		}
		return c
	}
	for _, c := range []struct {
		counts bridge.SourceCounts
		want   float64
	}{
		{counts(), 0},
		{counts(bridge.SourceAnonymous, 7, bridge.SourceRejected, 3), 0},
		{counts(bridge.SourceSession, 5), 1},
		{counts(bridge.SourceSession, 1, bridge.SourceJWTCookie, 2, bridge.SourceJWTBearer, 1, bridge.SourceAnonymous, 100), 0.25},
		{counts(bridge.SourceJWTCookie, 2, bridge.SourceJWTBearer, 1), 0},
	} {
		if got := c.counts.SessionShare(); got != c.want {
			t.Errorf("%s: session share %v, want %v", bridgetest.CountsString(c.counts), got, c.want)
		}
	}
}

// ftHinc adds n to field in the hourly bucket of hour (ftDefaultKeys),
// as a flush would.
func ftHinc(t testing.TB, rdb redis.UniversalClient, hour time.Time, n int64, field ...string) {
	t.Helper()
	k := ftDefaultKeys.hour(hour)
	if err := rdb.HIncrBy(context.Background(), k, strings.Join(field, fieldSep), n).Err(); err != nil {
		t.Fatalf("HINCRBY %s: %v", k, err)
	}
}

// ftNewFleetBridge returns a Fleet on rdb (mod may change its
// configuration) attached to a Bridge configured by bmod.
func ftNewFleetBridge(t testing.TB, rdb redis.UniversalClient, mod func(*Config), bmod func(*bridge.Config)) (*Fleet, *bridge.Bridge) {
	t.Helper()
	cfg := Config{Redis: rdb}
	if mod != nil {
		mod(&cfg)
	}
	f := ftNewFleet(t, cfg)
	b, _, _ := bridgetest.NewBridge(t, func(c *bridge.Config) {
		c.Fleet = f
		if bmod != nil {
			bmod(c)
		}
	})
	return f, b
}

// TestReportSince: the report sums the retained hours; ?since= (a
// duration or an RFC 3339 time) narrows the window to whole hours; hours
// past the retention never count.
func TestReportSince(t *testing.T) {
	srv := redistest.New(t)
	rdb := srv.Client()
	now := time.Date(2026, 11, 29, 10, 30, 0, 0, time.UTC)
	f, _ := ftNewFleetBridge(t, rdb, func(c *Config) { c.Retention = 6 * time.Hour }, func(c *bridge.Config) {
		c.Routes = bridge.Routes{"/api/me": bridge.Dual}
		c.Now = func() time.Time { return now }
	})
	h := func(hh int) time.Time { return time.Date(2026, 11, 29, hh, 0, 0, 0, time.UTC) }
	for hh, n := range map[int]int64{3: 1, 5: 2, 8: 4, 10: 8} {
		ftHinc(t, rdb, h(hh), n, fieldRequest, "/api/me", "dual", "jwt_cookie")
		ftHinc(t, rdb, h(hh), 16*n, fieldRequest, "/api/me", "dual", "session")
		ftHinc(t, rdb, h(hh), n, fieldConverted, "/api/me")
		ftHinc(t, rdb, h(hh), n, fieldRejection, "/api/me", "no_credentials")
	}
	// Fields the report does not know are ignored.
	ftHinc(t, rdb, h(10), 5, fieldRequest, "/api/me", "dual", "carrier_pigeon")
	ftHinc(t, rdb, h(10), 5, "x", "/api/me")
	ftHinc(t, rdb, h(10), 5, fieldRejection, "/api/me", "carrier_pigeon_lost")

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
		w := ftGetReport(t, f.ReportHandler(), c.query)
		rep := ftDecodeReport(t, w)
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
		var want bridge.SourceCounts
		want.Add(bridge.SourceJWTCookie, c.n)
		want.Add(bridge.SourceSession, 16*c.n)
		if r.Counts != want || r.Converted != c.n || rep.Totals.SourceCounts != want || rep.Totals.Converted != c.n {
			t.Errorf("%q: counts %s converted %d, totals %s converted %d; want %s and %d", c.query,
				bridgetest.CountsString(r.Counts), r.Converted, bridgetest.CountsString(rep.Totals.SourceCounts), rep.Totals.Converted, bridgetest.CountsString(want), c.n)
		}
		if r.Mode != "dual" {
			t.Errorf("%q: mode %q", c.query, r.Mode)
		}
		// The JSON's rejections follow the window too, and name only the
		// reasons seen (an unknown one is ignored).
		if got := r.Rejections.Of(bridge.ReasonNoCredentials); got != c.n {
			t.Errorf("%q: rejections no_credentials %d, want %d", c.query, got, c.n)
		}
		var raw struct {
			Routes []struct {
				Route      string                     `json:"route"`
				Rejections map[string]json.RawMessage `json:"rejections"`
			} `json:"routes"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil {
			t.Fatal(err)
		}
		for _, rr := range raw.Routes {
			if rr.Route != "/api/me" {
				continue
			}
			var reasons []string
			for k := range rr.Rejections {
				reasons = append(reasons, k)
			}
			if wantN := c.n; (wantN == 0 && len(reasons) != 0) || (wantN > 0 && strings.Join(reasons, ",") != "no_credentials") {
				t.Errorf("%q: rejections in the JSON %v, want only no_credentials when counted", c.query, reasons)
			}
		}
	}

	// The Go API keeps rejections by reason and the hourly trend.
	rep, err := f.Report(context.Background(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Routes {
		if r.Route != "/api/me" {
			continue
		}
		if r.Rejections.Of(bridge.ReasonNoCredentials) != 14 {
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
			if !p.Hour.Equal(h(4+i)) || p.Counts.Of(bridge.SourceJWTCookie) != want {
				t.Errorf("hourly[%d] = %v %s, want %v with %d jwt_cookie", i, p.Hour, bridgetest.CountsString(p.Counts), h(4+i), want)
			}
		}
	}

	for _, q := range []string{"since=yesterday", "since=-1h", "since=2026-11-29"} {
		if w := ftGetReport(t, f.ReportHandler(), q); w.Code != http.StatusBadRequest {
			t.Errorf("%q: %d, want 400", q, w.Code)
		}
	}
}

// TestReportRedisDown: with Redis hung or gone, ReportHandler answers 503
// within the request's deadline and the client's timeouts, whether the
// Fleet serves a Bridge or not (bridgectl's). A Fleet without Redis
// cannot be built.
func TestReportRedisDown(t *testing.T) {
	srv := redistest.New(t)
	f, _ := ftNewFleetBridge(t, srv.Client(), nil, nil)
	unattached, err := New(Config{Redis: srv.Client(), App: bridgetest.Audience})
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]*Fleet{"attached": f, "unattached": unattached} {
		if w := ftGetReport(t, f.ReportHandler(), ""); w.Code != http.StatusOK {
			t.Fatalf("%s: report with Redis up: %d", name, w.Code)
		}
	}

	srv.Pause()
	for name, f := range map[string]*Fleet{"attached": f, "unattached": unattached} {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		start := time.Now()
		w := httptest.NewRecorder()
		f.ReportHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/migration/report.json", nil).WithContext(ctx))
		cancel()
		if w.Code != http.StatusServiceUnavailable {
			t.Errorf("%s: report with Redis paused: %d, want 503", name, w.Code)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: report with Redis paused took %v", name, d)
		}
	}
	srv.Resume()

	srv.Kill()
	for name, f := range map[string]*Fleet{"attached": f, "unattached": unattached} {
		if w := ftGetReport(t, f.ReportHandler(), ""); w.Code != http.StatusServiceUnavailable {
			t.Errorf("%s: report with Redis killed: %d, want 503", name, w.Code)
		} else if strings.Contains(w.Body.String(), srv.Addr) {
			t.Errorf("%s: 503 body names the Redis address: %s", name, w.Body)
		}
		if _, err := f.Report(context.Background(), time.Time{}); err == nil || !strings.HasPrefix(err.Error(), "fleet: ") {
			t.Errorf("%s: Report with Redis killed: %v, want a fleet: error", name, err)
		}
	}

	// No Redis configured: no Fleet (the old Bridge answered 503); the
	// app serves InstanceReportHandler (TestInstanceReport).
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "Config.Redis") {
		t.Errorf("fleet.New without Redis: %v, want an error naming Config.Redis", err)
	}
}

// TestReportFleetModes: the report of a Fleet no Bridge uses (as the CLI
// calls it) shows the modes the fleet published, a run-time override
// winning; traffic of a route no running instance knows still counts.
func TestReportFleetModes(t *testing.T) {
	srv := redistest.New(t)
	rdb := srv.Client()
	tr := bridgetest.NewTraffic(t, 1)
	x := ftNewInstance(t, "web-0", tr, rdb, nil)
	tr.Drive(t, x.h, 1)
	ctx := context.Background()
	if err := x.f.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	ftHinc(t, rdb, time.Now(), 2, fieldRequest, "/gone", "jwt", "jwt_bearer")

	fl, err := New(Config{Redis: rdb, App: bridgetest.Audience})
	if err != nil {
		t.Fatal(err)
	}
	modes := func() map[string]string {
		rep, err := fl.Report(ctx, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, r := range rep.Routes {
			out[r.Route] = r.Mode
		}
		if rep.Totals.Of(bridge.SourceJWTBearer) == 0 {
			t.Error("no jwt_bearer traffic in the fleet report")
		}
		return out
	}
	m := modes()
	for route, want := range bridgetest.Routes {
		if m[route] != want.String() {
			t.Errorf("published mode of %s: %q, want %q", route, m[route], want)
		}
	}
	if _, ok := m["/gone"]; !ok {
		t.Error("a route only in the counts is missing from the report")
	}
	if err := fl.SetMode(ctx, "/dual", bridge.JWT); err != nil {
		t.Fatal(err)
	}
	if m := modes(); m["/dual"] != "jwt" {
		t.Errorf("mode of /dual with an override: %q, want jwt", m["/dual"])
	}
	// A route only published (no traffic in the window) is listed with
	// its published mode; an override of it wins there too.
	if err := rdb.HSet(ctx, ftKeys(t, fl).effective(), "/published/only", "dual").Err(); err != nil {
		t.Fatal(err)
	}
	if m := modes(); m["/published/only"] != "dual" {
		t.Errorf("mode of a published route without traffic: %q, want dual", m["/published/only"])
	}
	if err := fl.SetMode(ctx, "/published/only", bridge.JWT); err != nil {
		t.Fatal(err)
	}
	if m := modes(); m["/published/only"] != "jwt" {
		t.Errorf("mode of a published route with an override: %q, want jwt", m["/published/only"])
	}
	if err := fl.ResetMode(ctx, "/dual"); err != nil {
		t.Fatal(err)
	}
	if m := modes(); m["/dual"] != "dual" {
		t.Errorf("mode of /dual after ResetMode: %q, want the published dual", m["/dual"])
	}
	if err := fl.SetMode(ctx, "/dual", bridge.JWT); err != nil {
		t.Fatal(err)
	}
	// The instance's own report shows the mode it runs (it has not
	// refreshed yet).
	for _, r := range ftReport(t, x.f).Routes {
		if r.Route == "/dual" && r.Mode != "dual" {
			t.Errorf("instance report: /dual mode %q, want dual until refreshed", r.Mode)
		}
	}
	// Through the handler too, as bridgectl and the dashboard read it.
	rep := ftDecodeReport(t, ftGetReport(t, fl.ReportHandler(), ""))
	for _, r := range rep.Routes {
		if r.Route == "/dual" && r.Mode != "jwt" {
			t.Errorf("unattached ReportHandler: /dual mode %q, want the override jwt", r.Mode)
		}
	}
}

// TestReportPublic: a route of the attached Bridge's PublicRoutes is
// "public": true in the JSON, under the legacy mode it is folded into;
// other routes carry no "public" key; a Fleet no Bridge uses does not
// know which routes are public.
func TestReportPublic(t *testing.T) {
	srv := redistest.New(t)
	rdb := srv.Client()
	f, _ := ftNewFleetBridge(t, rdb, nil, func(c *bridge.Config) {
		c.Routes = bridge.Routes{"/api/me": bridge.Dual, "/profile": bridge.Legacy}
		c.PublicRoutes = []string{"/healthz"}
	})
	ftHinc(t, rdb, time.Now(), 3, fieldRequest, "/healthz", "legacy", "anonymous")
	ftHinc(t, rdb, time.Now(), 2, fieldRequest, "/profile", "legacy", "session")

	w := ftGetReport(t, f.ReportHandler(), "")
	var raw struct {
		Routes []map[string]any `json:"routes"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil {
		t.Fatalf("decode: %v\n%s", err, w.Body)
	}
	seen := map[string]bool{}
	for _, r := range raw.Routes {
		name, _ := r["route"].(string)
		seen[name] = true
		public, has := r["public"]
		switch name {
		case "/healthz":
			if public != true || r["mode"] != "legacy" {
				t.Errorf("%s: public %v, mode %v, want true, legacy", name, public, r["mode"])
			}
		default:
			if has {
				t.Errorf("%s: public %v, want no public key", name, public)
			}
		}
	}
	for _, route := range []string{"/healthz", "/api/me", "/profile"} {
		if !seen[route] {
			t.Errorf("route %s missing from the report", route)
		}
	}

	unattached, err := New(Config{Redis: rdb, Prefix: f.Config().Prefix})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range ftReport(t, unattached).Routes {
		if r.Public {
			t.Errorf("unattached report: %s public, want no route public", r.Route)
		}
	}
}

// TestReportClock: the report is as of the Fleet's Config.Now, else its
// Bridge's clock, else the time.
func TestReportClock(t *testing.T) {
	srv := redistest.New(t)
	rdb := srv.Client()
	fleetNow := time.Date(2026, 11, 29, 10, 30, 0, 0, time.UTC)
	bridgeNow := time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)
	ctx := context.Background()
	for _, c := range []struct {
		name     string
		fleetNow func() time.Time
		attach   bool
		want     time.Time // zero: now
	}{
		{"unattached, Config.Now", func() time.Time { return fleetNow }, false, fleetNow},
		{"unattached, no clock", nil, false, time.Time{}},
		{"attached, Config.Now wins", func() time.Time { return fleetNow }, true, fleetNow},
		{"attached, the Bridge's clock", nil, true, bridgeNow},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := New(Config{Redis: rdb, App: bridgetest.Audience, Now: c.fleetNow})
			if err != nil {
				t.Fatal(err)
			}
			if c.attach {
				bridgetest.NewBridge(t, func(bc *bridge.Config) {
					bc.Fleet = f
					bc.Now = func() time.Time { return bridgeNow }
				})
			}
			before := time.Now()
			rep, err := f.Report(ctx, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if c.want.IsZero() {
				if rep.GeneratedAt.Before(before.Add(-time.Second)) || rep.GeneratedAt.After(time.Now().Add(time.Second)) {
					t.Errorf("generated_at %v, want now", rep.GeneratedAt)
				}
				return
			}
			if !rep.GeneratedAt.Equal(c.want) {
				t.Errorf("generated_at %v, want %v", rep.GeneratedAt, c.want)
			}
			if want := c.want.Add(-DefaultRetention).Truncate(time.Hour); !rep.Since.Equal(want) {
				t.Errorf("since %v, want %v", rep.Since, want)
			}
		})
	}
}
