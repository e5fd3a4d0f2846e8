package fleet

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/internal/bridgetest"
)

// TestInstanceReport: an app without a Fleet (no Redis anywhere: sessions
// in a cookie store) serves the report of its in-process counts, the
// Snapshot's, saying they are one instance's (scope "instance") and since
// when; a route's rejections are in it; readiness needs a Fleet and says
// so; ?since= cannot narrow counts that have no hours.
func TestInstanceReport(t *testing.T) {
	clock := bridgetest.NewClock()
	start := clock.Now()
	b, key, store, app := ftNewRoutesApp(t, clock, nil)
	session, _ := bridgetest.SaveSession(t, store, bridgetest.User("1"))
	c := app.Client()
	get := func(path string, want int, hdr http.Header, cookies ...*http.Cookie) {
		t.Helper()
		if resp := bridgetest.Do(t, c, http.MethodGet, app.URL+path, hdr, cookies...); resp.StatusCode != want {
			t.Fatalf("GET %s: got %v, want %v (%s)", path, resp.StatusCode, want, resp.Body)
		}
	}
	clock.Advance(90 * time.Minute)
	get("/api/me", http.StatusOK, nil, session) // converted
	get("/api/me", http.StatusOK, bridgetest.Bearer(key.Mint(t, b, "1", nil)))
	get("/api/me", http.StatusUnauthorized, bridgetest.Bearer("not.a.token"))
	get("/api/orders", http.StatusUnauthorized, nil, session)
	get("/api/orders/7", http.StatusOK, bridgetest.Bearer(key.Mint(t, b, "2", nil)))
	get("/profile", http.StatusOK, nil, session)

	h := InstanceReportHandler(b)
	w := ftGetReport(t, h, "")
	raw := ftRawReport(t, w)
	if raw["scope"] != ScopeInstance || raw["app_name"] != bridgetest.Audience {
		t.Errorf("scope %v, app %v; want %q, the Bridge's audience %q", raw["scope"], raw["app_name"], ScopeInstance, bridgetest.Audience)
	}
	rep := ftDecodeReport(t, w)
	if !rep.Since.Equal(start) || !b.CountsSince().Equal(start) {
		t.Errorf("since %v (CountsSince %v), want the Bridge's start %v", rep.Since, b.CountsSince(), start)
	}
	if !rep.GeneratedAt.Equal(clock.Now()) {
		t.Errorf("generated_at %v, want the Bridge's clock %v", rep.GeneratedAt, clock.Now())
	}

	// The routes are the Snapshot's, with the JSON's rejections.
	snap := map[string]bridge.RouteCounts{}
	for _, rc := range b.Snapshot() {
		snap[rc.Route] = rc
	}
	var total Totals
	var names []string
	for _, r := range rep.Routes {
		names = append(names, r.Route)
		rc, ok := snap[r.Route]
		if !ok {
			t.Errorf("route %s is not in the Snapshot", r.Route)
			continue
		}
		if r.Counts != rc.Requests() || r.Converted != rc.Conversions || r.Rejections != rc.Rejections || r.Mode != rc.Mode.String() {
			t.Errorf("route %s: counts %s converted %d rejections %v mode %s; want the Snapshot's %s %d %v %s", r.Route,
				bridgetest.CountsString(r.Counts), r.Converted, r.Rejections, r.Mode,
				bridgetest.CountsString(rc.Requests()), rc.Conversions, rc.Rejections, rc.Mode)
		}
		if r.ReadyToSwitch {
			t.Errorf("route %s ready to switch on an instance's counts", r.Route)
		}
		want := map[string]string{
			"dual":   "one instance's counts, with no hours: readiness needs a Fleet (Redis)",
			"legacy": "legacy mode: move it to dual first",
			"jwt":    "already in jwt mode",
		}[r.Mode]
		if r.ReadyReason != want {
			t.Errorf("route %s ready_reason %q, want %q", r.Route, r.ReadyReason, want)
		}
		for s, n := range r.Counts.All() {
			total.Add(s, n)
		}
		total.Converted += r.Converted
	}
	if rep.Totals != total {
		t.Errorf("totals %s converted %d, want the routes' sum %s converted %d",
			bridgetest.CountsString(rep.Totals.SourceCounts), rep.Totals.Converted, bridgetest.CountsString(total.SourceCounts), total.Converted)
	}
	wantNames := []string{"/api/me", "/api/orders", "/api/orders/{id}", "/healthz", "/profile"}
	if len(names) != len(wantNames) {
		t.Errorf("routes %v, want %v (unmatched and other are idle: left out)", names, wantNames)
	}
	for i := range min(len(names), len(wantNames)) {
		if names[i] != wantNames[i] {
			t.Errorf("routes %v, want %v, sorted", names, wantNames)
			break
		}
	}
	var me *RouteReport
	for i := range rep.Routes {
		if rep.Routes[i].Route == "/api/me" {
			me = &rep.Routes[i]
		}
	}
	if me == nil || me.Converted != 1 || me.Counts.Of(bridge.SourceSession) != 1 || me.Counts.Of(bridge.SourceJWTBearer) != 1 ||
		me.Rejections.Of(bridge.ReasonBearerInvalid) != 1 || me.SessionShare != 0.5 {
		t.Errorf("/api/me: %+v, want 1 session (converted), 1 bearer, 1 bearer_invalid, share 0.5", me)
	}
	var parsed struct {
		Routes []struct {
			Route      string            `json:"route"`
			Rejections map[string]uint64 `json:"rejections"`
		} `json:"routes"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &parsed); err != nil {
		t.Fatal(err)
	}
	for _, r := range parsed.Routes {
		if r.Route == "/api/orders" && (len(r.Rejections) != 1 || r.Rejections["session_on_jwt_route"] != 1) {
			t.Errorf("/api/orders rejections in the JSON %v, want session_on_jwt_route 1", r.Rejections)
		}
	}

	// ?since=: a window reaching back before the start is the whole of
	// it; a later start cannot be had without hours.
	for _, c := range []struct {
		query string
		code  int
	}{
		{"since=2h", http.StatusOK},
		{"since=" + url.QueryEscape(start.Format(time.RFC3339)), http.StatusOK},
		{"since=1h", http.StatusBadRequest},
		{"since=yesterday", http.StatusBadRequest},
	} {
		w := ftGetReport(t, h, c.query)
		if w.Code != c.code {
			t.Errorf("%s: %d %s, want %d", c.query, w.Code, w.Body, c.code)
		}
		if c.code == http.StatusOK && !ftDecodeReport(t, w).Since.Equal(start) {
			t.Errorf("%s: since is not the Bridge's start", c.query)
		}
	}
}
