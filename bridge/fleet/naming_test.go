package fleet

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/internal/bridgetest"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
	"github.com/sessionbridge/sessionbridge/internal/syncbuf"
)

// ftAudienceApp is one app on a shared Redis: a Bridge with the audience
// it is named for, /api/me in dual, and its Fleet.
type ftAudienceApp struct {
	f      *Fleet
	b      *bridge.Bridge
	logs   *syncbuf.Buffer
	bearer http.Header
	h      http.Handler
}

func ftNewAudienceApp(t *testing.T, rdb redis.UniversalClient, audience string, cfg Config) *ftAudienceApp {
	t.Helper()
	cfg.Redis = rdb
	f := ftNewFleet(t, cfg)
	router := mux.NewRouter()
	router.HandleFunc("/api/me", bridgetest.IdentityHandler)
	b, key, logs := bridgetest.NewBridge(t, func(c *bridge.Config) {
		c.Audience = audience
		c.Routes = bridge.Routes{"/api/me": bridge.Dual}
		c.Router = router
		c.Fleet = f
	})
	router.Use(b.Middleware)
	return &ftAudienceApp{f: f, b: b, logs: logs, bearer: bridgetest.Bearer(key.Mint(t, b, "1", nil)), h: router}
}

// serve sends n bearer requests to /api/me and flushes.
func (a *ftAudienceApp) serve(t *testing.T, n int) {
	t.Helper()
	for range n {
		r := httptest.NewRequest(http.MethodGet, "https://app.test/api/me", nil)
		r.Header = a.bearer.Clone()
		w := httptest.NewRecorder()
		a.h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			t.Fatalf("GET /api/me: %d %s", w.Code, w.Body)
		}
	}
	if err := a.f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (a *ftAudienceApp) bearers(t *testing.T, rep *Report) uint64 {
	t.Helper()
	for _, r := range rep.Routes {
		if r.Route == "/api/me" {
			return r.Counts.Of(bridge.SourceJWTBearer)
		}
	}
	t.Fatalf("report of %s has no /api/me", rep.App)
	return 0
}

// TestReportSeparateApps: two apps on one redis-server, each with the
// default fleet configuration, never merge: their keys are per app (the
// Bridge's audience names them), each report names its app and holds its
// own counts, and a run-time mode set for one does not reach the other.
// bridgectl reads either by its app.
func TestReportSeparateApps(t *testing.T) {
	srv := redistest.New(t)
	rdb := srv.Client()
	shop := ftNewAudienceApp(t, rdb, "shop", Config{})
	blog := ftNewAudienceApp(t, rdb, "blog", Config{})
	shop.serve(t, 3)
	blog.serve(t, 5)

	for _, c := range []struct {
		app  *ftAudienceApp
		name string
		want uint64
	}{{shop, "shop", 3}, {blog, "blog", 5}} {
		if got := c.app.f.Config().Prefix; got != "sessionbridge:"+c.name {
			t.Errorf("%s: prefix %q, want sessionbridge:%s", c.name, got, c.name)
		}
		rep := ftReport(t, c.app.f)
		if rep.App != c.name || len(rep.SharedWith) != 0 {
			t.Errorf("%s: report of app %q shared with %v, want %q alone", c.name, rep.App, rep.SharedWith, c.name)
		}
		if got := c.app.bearers(t, rep); got != c.want || rep.Totals.Total() != c.want {
			t.Errorf("%s: %d bearer requests on /api/me, %d in all; want %d, its own", c.name, got, rep.Totals.Total(), c.want)
		}
		// An operator's tool names the app (bridgectl --app).
		ctl := ftNewFleet(t, Config{Redis: rdb, App: c.name})
		if rep := ftReport(t, ctl); rep.App != c.name || c.app.bearers(t, rep) != c.want {
			t.Errorf("%s read by its app name: app %q, %d bearer requests; want %d", c.name, rep.App, c.app.bearers(t, rep), c.want)
		}
	}

	ctx := context.Background()
	if err := shop.f.SetMode(ctx, "/api/me", bridge.JWT); err != nil {
		t.Fatal(err)
	}
	if m, err := blog.f.Modes(ctx); err != nil || len(m) != 0 {
		t.Errorf("blog's run-time modes after shop's mode set: %v (%v), want none", m, err)
	}
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "{sessionbridge:shop}:") && !strings.HasPrefix(k, "{sessionbridge:blog}:") {
			t.Errorf("key %q is neither app's", k)
		}
	}
}

// TestReportSharedPrefix: two apps given one Prefix (as after an upgrade
// that kept the old default for both) merge their counts; the report says
// with whom, and each instance logs it once.
func TestReportSharedPrefix(t *testing.T) {
	srv := redistest.New(t)
	rdb := srv.Client()
	shop := ftNewAudienceApp(t, rdb, "shop", Config{Prefix: DefaultPrefix})
	blog := ftNewAudienceApp(t, rdb, "blog", Config{Prefix: DefaultPrefix})
	shop.serve(t, 3)
	blog.serve(t, 5)
	shop.serve(t, 1)

	rep := ftReport(t, shop.f)
	if rep.App != "shop" || !slices.Equal(rep.SharedWith, []string{"blog"}) {
		t.Errorf("shop's report: app %q shared with %v, want shop, shared with [blog]", rep.App, rep.SharedWith)
	}
	if got := shop.bearers(t, rep); got != 9 {
		t.Errorf("shop's report: %d bearer requests, want the merged 9", got)
	}
	// bridgectl --prefix: the app that flushed last, and the other.
	ctl := ftNewFleet(t, Config{Redis: rdb, Prefix: DefaultPrefix})
	if rep := ftReport(t, ctl); rep.App == "" || len(rep.SharedWith) != 1 || rep.App == rep.SharedWith[0] {
		t.Errorf("report by prefix: app %q shared with %v, want one of shop and blog each", rep.App, rep.SharedWith)
	}
	// Only apps that flushed in the window share it, the latest first.
	now := time.Now()
	flushed := map[string]string{"a": "100", "b": "300", "c": "200", "d": "300", "bad": "x"}
	if got := appsSince(flushed, time.Unix(150, 0)); !slices.Equal(got, []string{"b", "d", "c"}) {
		t.Errorf("appsSince 150: %v, want b, d (300), c (200)", got)
	}
	if got := appsSince(flushed, now); len(got) != 0 {
		t.Errorf("appsSince now: %v, want none", got)
	}
	for _, a := range []*ftAudienceApp{shop, blog} {
		if n := strings.Count(a.logs.String(), "other apps flush their counts under this fleet's prefix"); n != 1 {
			t.Errorf("%s logged the shared prefix %d times, want once:\n%s", a.b.Config().Audience, n, a.logs)
		}
	}
	// The single app of a prefix is not warned.
	solo := ftNewAudienceApp(t, srv.Client(), "solo", Config{Prefix: "solo-prefix"})
	solo.serve(t, 1)
	if strings.Contains(solo.logs.String(), "other apps") {
		t.Errorf("solo warned of other apps:\n%s", solo.logs)
	}
}

// TestFleetWarnsOfOldKeys: keys an older release wrote under the old
// default prefix are not read by a fleet with the per-app default; Run
// says so, and how to keep them. A fleet given that prefix reads them,
// silently.
func TestFleetWarnsOfOldKeys(t *testing.T) {
	srv := redistest.New(t)
	rdb := srv.Client()
	old := newKeys(DefaultPrefix)
	if err := rdb.HSet(context.Background(), old.modes(), "/api/me", "jwt").Err(); err != nil {
		t.Fatal(err)
	}
	upgraded := ftNewAudienceApp(t, rdb, "shop", Config{})
	kept := ftNewAudienceApp(t, rdb, "blog", Config{Prefix: DefaultPrefix, ModeRefreshInterval: 10 * time.Millisecond})
	ftRun(t, upgraded.f)
	ftRun(t, kept.f)
	bridgetest.Eventually(t, 5*time.Second, "the warning of old keys", func() bool {
		return strings.Contains(upgraded.logs.String(), "keys under the prefix of older releases are not this fleet's")
	})
	if !strings.Contains(upgraded.logs.String(), "fleet.Config.Prefix to fleet.DefaultPrefix") {
		t.Errorf("the warning does not say how to keep the keys:\n%s", upgraded.logs)
	}
	bridgetest.Eventually(t, 5*time.Second, "the old override applied where the prefix was kept", func() bool {
		return kept.b.Mode("/api/me") == bridge.JWT
	})
	if upgraded.b.Mode("/api/me") != bridge.Dual {
		t.Errorf("the upgraded app applied the old keys' override: %v", upgraded.b.Mode("/api/me"))
	}
	if strings.Contains(kept.logs.String(), "older releases") {
		t.Errorf("the fleet that kept the old prefix was warned:\n%s", kept.logs)
	}
}
