package fleet

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/mux"
	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/internal/bridgetest"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// ftDashboardRoutes are the routes of the dashboard tests.
var ftDashboardRoutes = bridge.Routes{
	"/api/me":          bridge.Dual,
	"/api/orders":      bridge.JWT,
	"/api/orders/{id}": bridge.Dual,
	"/profile":         bridge.Legacy,
}

// ftNewDashboardApp returns a Fleet on a real redis-server and the Bridge
// it serves (with its signing key), reading sessions from a gorilla
// CookieStore, with Now on clock, behind a mux router with
// ftDashboardRoutes.
func ftNewDashboardApp(t *testing.T, clock *bridgetest.Clock) (*Fleet, *bridge.Bridge, *bridgetest.Key, *sessions.CookieStore, *httptest.Server) {
	t.Helper()
	srv := redistest.New(t)
	f := ftNewFleet(t, Config{Redis: srv.Client()})
	b, key, store, app := ftNewRoutesApp(t, clock, f)
	return f, b, key, store, app
}

// ftNewRoutesApp is the app of ftNewDashboardApp with the Fleet f, or
// with none (nil): all of its state in the process.
func ftNewRoutesApp(t *testing.T, clock *bridgetest.Clock, f *Fleet) (*bridge.Bridge, *bridgetest.Key, *sessions.CookieStore, *httptest.Server) {
	t.Helper()
	store := sessions.NewCookieStore(bridgetest.HashKey)
	router := mux.NewRouter()
	for tmpl := range ftDashboardRoutes {
		router.HandleFunc(tmpl, bridgetest.IdentityHandler)
	}
	b, key, _ := bridgetest.NewBridge(t, func(c *bridge.Config) {
		if f != nil {
			c.Fleet = f
		}
		c.Sessions = bridge.StoreSource(store, bridgetest.SessionName)
		c.Routes = ftDashboardRoutes
		c.Router = router
		c.InsecureDevCookies = true
		c.Now = clock.Now
	})
	router.Use(b.Middleware)
	app := httptest.NewServer(router)
	t.Cleanup(app.Close)
	return b, key, store, app
}

// ftDashboardPage is what the browser reads off the dashboard.
type ftDashboardPage struct {
	Title      string            `json:"title"`
	Totals     map[string]string `json:"totals"`
	FleetShare string            `json:"fleetShare"`
	BarColor   string            `json:"barColor"`
	Rows       []struct {
		Route      string            `json:"route"`
		Mode       string            `json:"mode"`
		Badge      string            `json:"badge"`
		Share      string            `json:"share"`
		StyleWidth string            `json:"styleWidth"`
		Ratio      float64           `json:"ratio"`
		Pct        string            `json:"pct"`
		Counts     map[string]string `json:"counts"`
		Converted  string            `json:"converted"`
		Reasons    []string          `json:"reasons"`
		Ready      bool              `json:"ready"`
		ReadyTitle string            `json:"readyTitle"`
		NotReady   string            `json:"notReady"`
		Trend      struct {
			Hours     string  `json:"hours"`
			Polylines int     `json:"polylines"`
			Points    int     `json:"points"`
			Width     float64 `json:"width"`
			Session   string  `json:"session"`
			JWT       string  `json:"jwt"`
		} `json:"trend"`
	} `json:"rows"`
}

// ftDashboardProbe reads ftDashboardPage off the page.
const ftDashboardProbe = `(() => {
  const text = (el) => el ? el.textContent.trim() : "";
  const rows = [...document.querySelectorAll("tr.route")].map((tr) => {
    const bar = tr.querySelector(".bar"), track = tr.querySelector(".track");
    const svg = tr.querySelector("svg.trend");
    const lines = svg ? svg.querySelectorAll("polyline") : [];
    const ready = tr.querySelector(".ready");
    return {
      route: tr.dataset.route, mode: tr.dataset.mode, badge: text(tr.querySelector(".badge")),
      share: bar.dataset.share, styleWidth: bar.style.width,
      ratio: bar.getBoundingClientRect().width / track.getBoundingClientRect().width,
      pct: text(tr.querySelector(".pct")),
      counts: Object.fromEntries([...tr.querySelectorAll("[data-source]")].map((td) => [td.dataset.source, text(td)])),
      converted: text(tr.querySelector(".converted")),
      reasons: [...tr.querySelectorAll("[data-reason]")].map((li) => li.dataset.reason),
      ready: !!ready, readyTitle: ready ? ready.title : "", notReady: text(tr.querySelector(".not-ready")),
      trend: svg ? {
        hours: svg.dataset.hours, polylines: lines.length,
        points: lines.length ? lines[0].points.numberOfItems : 0,
        width: svg.getBoundingClientRect().width,
        session: svg.dataset.session, jwt: svg.dataset.jwt,
      } : {},
    };
  });
  const totals = Object.fromEntries([...document.querySelectorAll("[data-total]")].map((d) => [d.dataset.total, text(d.querySelector(".v"))]));
  const fleet = document.querySelector("#fleet-share .bar");
  return {
    title: document.title, totals, rows,
    fleetShare: fleet ? fleet.dataset.share : "",
    barColor: fleet ? getComputedStyle(fleet).backgroundColor : "",
  };
})()`

// TestDashboardBrowser renders the dashboard in headless Chromium and
// reads it as a user sees it: totals, per route the mode, counts, share
// bar, conversions, rejections, ready hint and hourly trend, with the
// inline CSS applied under the strict CSP. Chromium is required: a missing
// one fails the test (never a skip), in CI and elsewhere.
//
// It takes a screenshot; with SCREENSHOT_DIR set it also writes
// dashboard.png there. A relative SCREENSHOT_DIR is relative to this
// package's directory (bridge/fleet), so the README's docs/dashboard.png
// is regenerated with
//
//	SCREENSHOT_DIR=../../docs go test -run '^TestDashboardBrowser$' ./bridge/fleet/
func TestDashboardBrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("chromium is required for this test: run `apt-get install -y chromium` (%v)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	clock := bridgetest.NewClock()
	clock.Advance(-29 * time.Hour)
	f, b, key, store, app := ftNewDashboardApp(t, clock)
	session, _ := bridgetest.SaveSession(t, store, bridgetest.User("1"))
	c := app.Client()
	mint := func(sub string) string { return key.Mint(t, b, sub, nil) }
	get := func(path string, want int, hdr http.Header, cookies ...*http.Cookie) {
		t.Helper()
		if resp := bridgetest.Do(t, c, http.MethodGet, app.URL+path, hdr, cookies...); resp.StatusCode != want {
			t.Fatalf("GET %s: got %v, want %v (%s)", path, resp.StatusCode, want, resp.Body)
		}
	}
	flush := func() {
		t.Helper()
		if err := f.Flush(ctx); err != nil {
			t.Fatalf("Flush: %v", err)
		}
	}

	// 29 hours ago: the legacy app, sessions only.
	get("/profile", 200, nil, session)
	get("/profile", 200, nil, session)
	get("/profile", 200, nil)
	get("/api/me", 200, nil, session)
	get("/api/me", 200, nil, session)
	flush()

	// 27 hours ago: clients moving to JWTs.
	clock.Advance(2 * time.Hour)
	get("/api/me", 200, nil, session)
	get("/api/me", 200, nil, &http.Cookie{Name: b.Config().CookieName, Value: mint("1")})
	get("/api/me", 200, bridgetest.Bearer(mint("1")))
	get("/api/me", 401, nil)
	get("/api/orders", 200, bridgetest.Bearer(mint("1")))
	get("/api/orders", 200, bridgetest.Bearer(mint("2")))
	get("/api/orders", 401, nil, session)
	get("/api/orders", 401, bridgetest.Bearer("not-a-token"))
	get("/api/orders/7", 200, bridgetest.Bearer(mint("1")))
	get("/api/orders/8", 200, bridgetest.Bearer(mint("2")))
	flush()

	// Now: the dual routes have been dual for 29 hours.
	clock.Advance(27 * time.Hour)
	get("/api/orders/9", 200, bridgetest.Bearer(mint("1")))
	flush()

	dash := httptest.NewServer(f.DashboardHandler())
	defer dash.Close()

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox,
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(t.TempDir()),
	)...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()

	if err := chromedp.Do(browser, chromedp.EmulateViewport(1360, 640)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	resp, err := chromedp.RunResponse(browser, chromedp.Navigate(dash.URL+"/"))
	if err != nil {
		t.Fatalf("navigate: %v", err)
	}
	if resp.Status != http.StatusOK {
		t.Fatalf("dashboard status: got %v, want %v", resp.Status, http.StatusOK)
	}
	if err := chromedp.Do(browser, chromedp.WaitVisible(chromedp.CSS("table#routes"))); err != nil {
		t.Fatalf("wait for the table: %v", err)
	}
	page, err := chromedp.Run(browser, chromedp.Evaluate[ftDashboardPage](ftDashboardProbe))
	if err != nil {
		t.Fatalf("read the page: %v", err)
	}

	wantTotals := map[string]string{
		"session": "5", "jwt_cookie": "1", "jwt_bearer": "6", "anonymous": "2", "rejected": "2",
		"converted": "3", "distinct_sessions": "1",
	}
	for k, want := range wantTotals {
		if got := page.Totals[k]; got != want {
			t.Errorf("total %s: got %q, want %q", k, got, want)
		}
	}
	if got, want := page.FleetShare, "0.4166666666666667"; got != want {
		t.Errorf("fleet session share: got %v, want %v", got, want)
	}
	if got, want := page.BarColor, "rgb(217, 119, 6)"; got != want {
		t.Errorf("bar colour (inline CSS applied under the CSP): got %v, want %v", got, want)
	}

	type wantRow struct {
		mode      string
		share     float64
		pct       string
		counts    map[string]string
		converted string
		reasons   []string
		ready     bool
		notReady  string // the reason shown under a dual route not ready
		session   string // session requests in the trend
		jwt       string // JWT requests in the trend
	}
	want := map[string]wantRow{
		"/api/me": {
			mode: "dual", share: 0.6, pct: "60%",
			counts:    map[string]string{"session": "3", "jwt_cookie": "1", "jwt_bearer": "1", "anonymous": "1", "rejected": "0"},
			converted: "3", reasons: []string{"no_credentials"}, session: "3", jwt: "2",
			notReady: "no authenticated traffic in the last 24h",
		},
		"/api/orders": {
			mode: "jwt", share: 0, pct: "0%",
			counts:    map[string]string{"session": "0", "jwt_cookie": "0", "jwt_bearer": "2", "anonymous": "0", "rejected": "2"},
			converted: "0", reasons: []string{"bearer_invalid", "session_on_jwt_route"}, session: "0", jwt: "2",
		},
		"/api/orders/{id}": {
			mode: "dual", share: 0, pct: "0%",
			counts:    map[string]string{"session": "0", "jwt_cookie": "0", "jwt_bearer": "3", "anonymous": "0", "rejected": "0"},
			converted: "0", ready: true, session: "0", jwt: "3",
		},
		"/profile": {
			mode: "legacy", share: 1, pct: "100%",
			counts:    map[string]string{"session": "2", "jwt_cookie": "0", "jwt_bearer": "0", "anonymous": "1", "rejected": "0"},
			converted: "0", session: "2", jwt: "0",
		},
	}
	if len(page.Rows) != len(want) {
		t.Errorf("rows: got %d, want %d (unmatched and other are hidden while idle)", len(page.Rows), len(want))
	}
	for _, row := range page.Rows {
		w, ok := want[row.Route]
		if !ok {
			t.Errorf("unexpected route row %q", row.Route)
			continue
		}
		delete(want, row.Route)
		if row.Mode != w.mode || row.Badge != w.mode {
			t.Errorf("%s mode: got %q (badge %q), want %q", row.Route, row.Mode, row.Badge, w.mode)
		}
		if math.Abs(row.Ratio-w.share) > 0.01 {
			t.Errorf("%s bar width: got %.3f of the track, want %v", row.Route, row.Ratio, w.share)
		}
		if row.Pct != w.pct {
			t.Errorf("%s share text: got %q, want %q", row.Route, row.Pct, w.pct)
		}
		for k, v := range w.counts {
			if row.Counts[k] != v {
				t.Errorf("%s %s: got %q, want %q", row.Route, k, row.Counts[k], v)
			}
		}
		if row.Converted != w.converted {
			t.Errorf("%s converted: got %q, want %q", row.Route, row.Converted, w.converted)
		}
		if strings.Join(row.Reasons, ",") != strings.Join(w.reasons, ",") {
			t.Errorf("%s reasons: got %v, want %v", row.Route, row.Reasons, w.reasons)
		}
		if row.Ready != w.ready {
			t.Errorf("%s ready to switch: got %v, want %v", row.Route, row.Ready, w.ready)
		}
		if w.ready && (!strings.Contains(row.ReadyTitle, "24h") || !strings.HasPrefix(row.ReadyTitle, "ready: in dual for 29h")) {
			t.Errorf("%s ready hint title: got %q, want the reason and the 24h ReadyAfter period", row.Route, row.ReadyTitle)
		}
		if row.NotReady != w.notReady {
			t.Errorf("%s not-ready reason: got %q, want %q", row.Route, row.NotReady, w.notReady)
		}
		tr := row.Trend
		if tr.Hours != "48" || tr.Polylines != 2 || tr.Points != 48 || tr.Width < 100 {
			t.Errorf("%s trend: got %+v, want an SVG of 2 polylines of 48 points", row.Route, tr)
		}
		if tr.Session != w.session || tr.JWT != w.jwt {
			t.Errorf("%s trend sums: got session %s, jwt %s, want %s, %s", row.Route, tr.Session, tr.JWT, w.session, w.jwt)
		}
	}
	for route := range want {
		t.Errorf("route %s missing from the dashboard", route)
	}

	// The screenshot the README shows is docs/dashboard.png, two levels
	// up from this package: the path SCREENSHOT_DIR=../../docs writes.
	if _, err := os.Stat(filepath.Join("..", "..", "docs", "dashboard.png")); err != nil {
		t.Errorf("the README's screenshot, relative to bridge/fleet: %v", err)
	}
	png, err := chromedp.Run(browser, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatalf("write screenshot: %v", err)
	}
	if dir := os.Getenv("SCREENSHOT_DIR"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("SCREENSHOT_DIR: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "dashboard.png"), png, 0o644); err != nil {
			t.Fatalf("SCREENSHOT_DIR: %v", err)
		}
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))
}

func TestDashboardEscapesRoutes(t *testing.T) {
	const evil = `/x/<script>alert(1)</script>/"onmouseover="alert(2)`
	srv := redistest.New(t)
	f, _ := ftNewFleetBridge(t, srv.Client(), nil, func(c *bridge.Config) {
		c.Routes = bridge.Routes{evil: bridge.Dual}
	})
	w := httptest.NewRecorder()
	f.DashboardHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/migration/", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("status: got %v, want %v: %s", w.Code, http.StatusOK, w.Body)
	}
	ftCheckDashboardHeaders(t, w)
	body := w.Body.String()
	for _, bad := range []string{"<script>", `"onmouseover="`} {
		if strings.Contains(body, bad) {
			t.Errorf("body contains %q unescaped", bad)
		}
	}
	if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("body does not show the escaped route name")
	}
	if !strings.Contains(body, `data-mode="dual"`) {
		t.Errorf("body has no dual route row")
	}
}

// TestDashboardErrors: Redis down (for a Fleet serving a Bridge or not),
// a bad ?since= and a POST answer a short HTML error page under the same
// headers. (A Fleet without Redis, the old "no redis" case, cannot be
// built: fleet.New refuses it.)
func TestDashboardErrors(t *testing.T) {
	up := redistest.New(t)
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = down.Close() })
	tests := []struct {
		name       string
		rdb        redis.UniversalClient
		unattached bool
		method     string
		target     string
		status     int
		wantBody   string
	}{
		{"redis down", down, false, http.MethodGet, "/migration/", http.StatusServiceUnavailable, "Redis did not answer"},
		{"redis down, unattached", down, true, http.MethodGet, "/migration/", http.StatusServiceUnavailable, "Redis did not answer"},
		{"bad since", up.Client(), false, http.MethodGet, "/migration/?since=%3Cb%3Eyesterday", http.StatusBadRequest, "&lt;b&gt;yesterday"},
		{"post", up.Client(), false, http.MethodPost, "/migration/", http.StatusMethodNotAllowed, "Use GET."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f *Fleet
			if tt.unattached {
				var err error
				if f, err = New(Config{Redis: tt.rdb, App: bridgetest.Audience}); err != nil {
					t.Fatal(err)
				}
			} else {
				f, _ = ftNewFleetBridge(t, tt.rdb, nil, nil)
			}
			w := httptest.NewRecorder()
			f.DashboardHandler().ServeHTTP(w, httptest.NewRequest(tt.method, tt.target, nil))
			if w.Code != tt.status {
				t.Fatalf("status: got %v, want %v", w.Code, tt.status)
			}
			ftCheckDashboardHeaders(t, w)
			if body := w.Body.String(); !strings.Contains(body, tt.wantBody) || !strings.Contains(body, `id="error"`) {
				t.Errorf("body: got %q, want an error page containing %q", body, tt.wantBody)
			}
		})
	}
}

func ftCheckDashboardHeaders(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	for k, want := range map[string]string{
		"Content-Type":            "text/html; charset=utf-8",
		"Cache-Control":           "no-store",
		"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:",
	} {
		if got := w.Header().Get(k); got != want {
			t.Errorf("%s: got %q, want %q", k, got, want)
		}
	}
}
