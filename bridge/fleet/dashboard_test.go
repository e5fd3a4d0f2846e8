package fleet

import (
	"cmp"
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
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

// ftDashboardPublic are the public routes of the dashboard tests.
var ftDashboardPublic = []string{"/healthz"}

// ftNewDashboardApp returns a Fleet on a real redis-server and the Bridge
// it serves (with its signing key), reading sessions from a gorilla
// CookieStore, with Now on clock, behind a mux router with
// ftDashboardRoutes and ftDashboardPublic.
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
	for _, tmpl := range ftDashboardPublic {
		router.HandleFunc(tmpl, bridgetest.IdentityHandler)
	}
	b, key, _ := bridgetest.NewBridge(t, func(c *bridge.Config) {
		if f != nil {
			c.Fleet = f
		}
		c.Sessions = bridge.StoreSource(store, bridgetest.SessionName)
		c.Routes = ftDashboardRoutes
		c.PublicRoutes = ftDashboardPublic
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
	// Layout: the page's and the viewport's widths, and how far any
	// table's wrapper scrolls sideways.
	ScrollWidth  float64 `json:"scrollWidth"`
	ViewWidth    float64 `json:"viewWidth"`
	WrapOverflow float64 `json:"wrapOverflow"`
	// PublicFolded: the public routes' section is there and closed;
	// PublicSummary is its summary line.
	PublicFolded  bool             `json:"publicFolded"`
	PublicSummary string           `json:"publicSummary"`
	Rows          []ftDashboardRow `json:"rows"`
}

// ftDashboardRow is one route's row, as the browser reads it.
type ftDashboardRow struct {
	Route      string            `json:"route"`
	Name       string            `json:"name"`  // the route as the page shows it
	Group      string            `json:"group"` // attention, quiet or public
	Attention  string            `json:"attention"`
	InPublic   bool              `json:"inPublic"` // inside the public routes' section
	Visible    bool              `json:"visible"`  // not folded away
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
	NotReady   string            `json:"notReady"` // why a dual route is not ready
	// Warn lists the row's warnings (guests); HandlerReads and App the
	// counts shown under the route and the anonymous count.
	Warn         string `json:"warn"`
	HandlerReads string `json:"handlerReads"`
	App          string `json:"app"`
	Trend        struct {
		Hours     string  `json:"hours"`
		Polylines int     `json:"polylines"`
		Points    int     `json:"points"`
		Width     float64 `json:"width"`
		Session   string  `json:"session"`
		JWT       string  `json:"jwt"`
	} `json:"trend"`
	// TrendCell is the trend cell's box in the viewport (zero while
	// folded away).
	TrendCell struct {
		Left  float64 `json:"left"`
		Right float64 `json:"right"`
		Width float64 `json:"width"`
	} `json:"trendCell"`
}

// ftDashboardProbe reads ftDashboardPage off the page, rows in page order.
const ftDashboardProbe = `(() => {
  const text = (el) => el ? el.textContent.trim() : "";
  const rows = [...document.querySelectorAll("tr.route")].map((tr) => {
    const bar = tr.querySelector(".bar"), track = tr.querySelector(".track");
    const svg = tr.querySelector("svg.trend");
    const lines = svg ? svg.querySelectorAll("polyline") : [];
    const ready = tr.querySelector(".ready");
    const cell = tr.querySelector("td.trend-cell").getBoundingClientRect();
    return {
      route: tr.dataset.route, name: text(tr.querySelector("td.name code")),
      group: ["attention", "quiet", "public"].find((c) => tr.classList.contains(c)) || "",
      attention: tr.dataset.attention, inPublic: !!tr.closest("details#public-routes"), visible: tr.checkVisibility(),
      mode: tr.dataset.mode, badge: text(tr.querySelector(".badge")),
      share: bar.dataset.share, styleWidth: bar.style.width,
      ratio: bar.getBoundingClientRect().width / track.getBoundingClientRect().width,
      pct: text(tr.querySelector(".pct")),
      counts: Object.fromEntries([...tr.querySelectorAll("[data-source]")].map((td) => [td.dataset.source, text(td)])),
      converted: text(tr.querySelector(".converted")),
      reasons: [...tr.querySelectorAll("[data-reason]")].map((li) => li.dataset.reason),
      ready: !!ready, readyTitle: ready ? ready.title : "", notReady: text(tr.querySelector(".not-ready")),
      warn: [...tr.querySelectorAll("[data-warn]")].map((el) => el.dataset.warn).join(","),
      handlerReads: (tr.querySelector("[data-handler-reads]") || {dataset: {}}).dataset.handlerReads || "",
      app: (tr.querySelector("[data-app]") || {dataset: {}}).dataset.app || "",
      trend: svg ? {
        hours: svg.dataset.hours, polylines: lines.length,
        points: lines.length ? lines[0].points.numberOfItems : 0,
        width: svg.getBoundingClientRect().width,
        session: svg.dataset.session, jwt: svg.dataset.jwt,
      } : {},
      trendCell: {left: cell.left, right: cell.right, width: cell.width},
    };
  });
  const totals = Object.fromEntries([...document.querySelectorAll("[data-total]")].map((d) => [d.dataset.total, text(d.querySelector(".v"))]));
  const fleet = document.querySelector("#fleet-share .bar");
  const pub = document.querySelector("details#public-routes");
  return {
    title: document.title, totals, rows,
    fleetShare: fleet ? fleet.dataset.share : "",
    barColor: fleet ? getComputedStyle(fleet).backgroundColor : "",
    scrollWidth: document.documentElement.scrollWidth, viewWidth: window.innerWidth,
    wrapOverflow: Math.max(0, ...[...document.querySelectorAll(".table-wrap")].map((w) => w.scrollWidth - w.clientWidth)),
    publicFolded: !!pub && !pub.open, publicSummary: pub ? text(pub.querySelector("summary")) : "",
  };
})()`

// ftChromium starts headless Chromium with a width×height viewport for
// the rest of the test (30 s at the most). Chromium is required: a missing
// one fails the test (never a skip), in CI and elsewhere.
func ftChromium(t *testing.T, width, height int64) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("chromium is required for this test: run `apt-get install -y chromium` (%v)", err)
	}
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
	t.Cleanup(cancelAlloc)
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	if err := chromedp.Do(browser, chromedp.EmulateViewport(width, height)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return browser
}

// ftOpenDashboard loads the dashboard at url in browser and reads it.
func ftOpenDashboard(t *testing.T, browser context.Context, url string) ftDashboardPage {
	t.Helper()
	resp, err := chromedp.RunResponse(browser, chromedp.Navigate(url))
	if err != nil {
		t.Fatalf("navigate: %v", err)
	}
	if resp.Status != http.StatusOK {
		t.Fatalf("dashboard status: got %v, want %v", resp.Status, http.StatusOK)
	}
	if err := chromedp.Do(browser, chromedp.WaitVisible(chromedp.CSS("table#routes"))); err != nil {
		t.Fatalf("wait for the table: %v", err)
	}
	return ftReadDashboard(t, browser)
}

// ftReadDashboard reads the page browser shows.
func ftReadDashboard(t *testing.T, browser context.Context) ftDashboardPage {
	t.Helper()
	page, err := chromedp.Run(browser, chromedp.Evaluate[ftDashboardPage](ftDashboardProbe))
	if err != nil {
		t.Fatalf("read the page: %v", err)
	}
	return page
}

// TestDashboardBrowser renders the dashboard in headless Chromium on a
// 1280×800 laptop screen and reads it as a user sees it: totals, per route
// the mode, counts, share bar, conversions, rejections, ready hint and
// hourly trend, with the inline CSS applied under the strict CSP; the
// routes needing attention first, the quiet one after, the public one
// folded away; nothing wider than the screen. Chromium is required: a
// missing one fails the test (never a skip), in CI and elsewhere.
//
// It takes a screenshot; with SCREENSHOT_DIR set it also writes
// dashboard.png there. A relative SCREENSHOT_DIR is relative to this
// package's directory (bridge/fleet), so the README's docs/dashboard.png
// is regenerated with
//
//	SCREENSHOT_DIR=../../docs go test -run '^TestDashboardBrowser$' ./bridge/fleet/
func TestDashboardBrowser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	browser := ftChromium(t, 1280, 800)

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
	get("/healthz", 200, nil)
	get("/healthz", 200, nil, session)
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
	get("/api/orders", 401, bridgetest.Bearer("not.a.token"))
	get("/api/orders/7", 200, bridgetest.Bearer(mint("1")))
	get("/api/orders/8", 200, bridgetest.Bearer(mint("2")))
	flush()

	// Now: the dual routes have been dual for 29 hours.
	clock.Advance(27 * time.Hour)
	get("/api/orders/9", 200, bridgetest.Bearer(mint("1")))
	get("/healthz", 200, nil)
	flush()

	dash := httptest.NewServer(f.DashboardHandler())
	defer dash.Close()

	page := ftOpenDashboard(t, browser, dash.URL+"/")
	ftCheckFits(t, page, "1280×800")

	wantTotals := map[string]string{
		"session": "6", "jwt_cookie": "1", "jwt_bearer": "6", "anonymous": "4", "rejected": "2",
		"converted": "3", "distinct_sessions": "1",
	}
	for k, want := range wantTotals {
		if got := page.Totals[k]; got != want {
			t.Errorf("total %s: got %q, want %q", k, got, want)
		}
	}
	if got, want := page.FleetShare, "0.46153846153846156"; got != want {
		t.Errorf("fleet session share: got %v, want %v", got, want)
	}
	if got, want := page.BarColor, "rgb(217, 119, 6)"; got != want {
		t.Errorf("bar colour (inline CSS applied under the CSP): got %v, want %v", got, want)
	}

	type wantRow struct {
		mode      string
		badge     string // "": the mode
		group     string // attention, quiet or public
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
			mode: "dual", group: "attention", share: 0.6, pct: "60%",
			counts:    map[string]string{"session": "3", "jwt_cookie": "1", "jwt_bearer": "1", "anonymous": "1", "rejected": "0"},
			converted: "3", reasons: []string{"no_credentials"}, session: "3", jwt: "2",
			notReady: "no authenticated traffic in the last 24h",
		},
		"/api/orders": {
			mode: "jwt", group: "attention", share: 0, pct: "0%",
			counts:    map[string]string{"session": "0", "jwt_cookie": "0", "jwt_bearer": "2", "anonymous": "0", "rejected": "2"},
			converted: "0", reasons: []string{"bearer_invalid", "session_on_jwt_route"}, session: "0", jwt: "2",
		},
		"/api/orders/{id}": {
			mode: "dual", group: "quiet", share: 0, pct: "0%",
			counts:    map[string]string{"session": "0", "jwt_cookie": "0", "jwt_bearer": "3", "anonymous": "0", "rejected": "0"},
			converted: "0", ready: true, session: "0", jwt: "3",
		},
		"/profile": {
			mode: "legacy", group: "attention", share: 1, pct: "100%",
			counts:    map[string]string{"session": "2", "jwt_cookie": "0", "jwt_bearer": "0", "anonymous": "1", "rejected": "0"},
			converted: "0", session: "2", jwt: "0",
		},
		"/healthz": { // public: folded away, whatever its traffic
			mode: "legacy", badge: "public", group: "public", share: 1, pct: "100%",
			counts:    map[string]string{"session": "1", "jwt_cookie": "0", "jwt_bearer": "0", "anonymous": "2", "rejected": "0"},
			converted: "0", session: "1", jwt: "0",
		},
	}
	// Attention first, most first (ties by route), then quiet, then the
	// public routes in their folded section.
	wantOrder := []string{"/api/me", "/api/orders", "/profile", "/api/orders/{id}", "/healthz"}
	var order []string
	for _, row := range page.Rows {
		order = append(order, row.Route)
	}
	if strings.Join(order, " ") != strings.Join(wantOrder, " ") {
		t.Errorf("row order: got %v, want %v", order, wantOrder)
	}
	if !page.PublicFolded || !strings.HasPrefix(page.PublicSummary, "1 public route ") {
		t.Errorf("public section: folded %v, summary %q, want folded, \"1 public route …\"", page.PublicFolded, page.PublicSummary)
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
		if w.badge == "" {
			w.badge = w.mode
		}
		if row.Mode != w.mode || row.Badge != w.badge {
			t.Errorf("%s mode: got %q (badge %q), want %q (badge %q)", row.Route, row.Mode, row.Badge, w.mode, w.badge)
		}
		if row.Group != w.group || row.InPublic != (w.group == "public") || row.Visible == (w.group == "public") {
			t.Errorf("%s: got group %q (in the public section: %v, visible: %v), want %q, visible unless public", row.Route, row.Group, row.InPublic, row.Visible, w.group)
		}
		if row.Name != row.Route {
			t.Errorf("%s: shown as %q", row.Route, row.Name)
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
	png := ftScreenshot(t, browser, "dashboard.png")
	if png == nil {
		t.Fatal("no screenshot")
	}
	if dir := os.Getenv("SCREENSHOT_DIR"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("SCREENSHOT_DIR: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "dashboard.png"), png, 0o644); err != nil {
			t.Fatalf("SCREENSHOT_DIR: %v", err)
		}
	}
}

// ftLaptopRoutes are the 34 routes of a real app, long templates among
// them, that TestDashboardLaptop shows beside its public routes.
var ftLaptopRoutes = []string{
	"/api/v1/organizations/{orgID}/projects/{projectID}/members/{memberID}",
	"/api/v1/organizations/{orgID}/projects/{projectID}/environments/{environmentID}/variables/{variableID}",
	"/api/v1/organizations/{orgID}/projects/{projectID}/members",
	"/api/v1/organizations/{orgID}/projects/{projectID}",
	"/api/v1/organizations/{orgID}/projects",
	"/api/v1/organizations/{orgID}/billing/invoices/{invoiceID}/line-items",
	"/api/v1/organizations/{orgID}/billing/invoices",
	"/api/v1/organizations/{orgID}",
	"/api/v1/organizations",
	"/api/v1/webhooks/{webhookID}/deliveries/{deliveryID}/redeliver",
	"/api/v1/webhooks/{webhookID}",
	"/api/v1/users/{userID}/notification-preferences",
	"/api/v1/users/{userID}",
	"/api/v1/me",
	"/api/v1/search",
	"/admin/organizations/{orgID}/audit-log/exports/{exportID}",
	"/admin/organizations/{orgID}",
	"/admin/users",
	"/admin/feature-flags/{flag}",
	"/dashboard",
	"/settings",
	"/settings/security/two-factor",
	"/settings/api-keys/{keyID}",
	"/cart",
	"/cart/items",
	"/checkout",
	"/orders",
	"/orders/{orderID}",
	"/orders/{orderID}/receipt.pdf",
	"/profile",
	"/reports/{year}/{month}",
	"/uploads",
	"/uploads/{uploadID}",
	"/inbox",
}

// ftLaptopPublic are the public routes of TestDashboardLaptop.
var ftLaptopPublic = []string{"/login", "/logout", "/healthz", "/.well-known/jwks.json", "/metrics", "/status/{component}"}

// TestDashboardLaptop renders the dashboard of an app with 40 routes, long
// templates and counts in the millions among them, in headless Chromium on
// a 1280×800 laptop screen. The page does not scroll sideways (the page's
// scrollWidth is at most 1280 and no table scrolls in its wrapper), and
// every trend cell lies within the viewport's width. The rows needing
// attention come first, by attention(r) (session + rejected requests),
// highest first, ties by route; then the quiet ones, by route, including
// one whose only rejections are no_credentials. The public routes are
// folded away in their closed section, and fit too once it is opened.
func TestDashboardLaptop(t *testing.T) {
	const width, height = 1280, 800
	srv := redistest.New(t)
	rdb := srv.Client()
	routes := bridge.Routes{}
	modes := []bridge.Mode{bridge.Dual, bridge.JWT, bridge.Legacy}
	for i, r := range ftLaptopRoutes {
		routes[r] = modes[i%len(modes)]
	}
	f, _ := ftNewFleetBridge(t, rdb, nil, func(c *bridge.Config) {
		c.Routes = routes
		c.PublicRoutes = ftLaptopPublic
	})

	// Counts in three hours of the trend: sessions on a third of the
	// routes, refused credentials (four reasons, so "+1 more") on a
	// fifth, no_credentials alone on one more, JWTs in the millions on
	// every route, anonymous traffic and some sessions on the public ones.
	now := time.Now()
	hours := []time.Time{now.Add(-30 * time.Hour), now.Add(-2 * time.Hour), now}
	wantAttention := map[string]uint64{}
	count := func(route, mode, source string, n int64) {
		for _, h := range hours {
			ftHinc(t, rdb, h, n, fieldRequest, route, mode, source)
		}
		if source == "session" || source == "rejected" {
			wantAttention[route] += uint64(n) * uint64(len(hours))
		}
	}
	for i, r := range ftLaptopRoutes {
		mode := routes[r].String()
		wantAttention[r] += 0 // every route has an entry, quiet ones too
		count(r, mode, "jwt_cookie", int64(3_456_789+i))
		count(r, mode, "jwt_bearer", int64(1_234_567*(i%3)))
		if i%3 == 0 {
			count(r, mode, "session", int64(4_000_000/(i+1)))
		}
		if i%5 == 1 {
			count(r, mode, "rejected", int64(10+i))
			for _, reason := range []string{"session_on_jwt_route", "session_store_unavailable", "jwt_cookie_other_session", "bearer_invalid"} {
				ftHinc(t, rdb, now, int64(i), fieldRejection, r, reason)
			}
		}
		if i == 4 {
			ftHinc(t, rdb, now, 77, fieldRejection, r, "no_credentials")
			count(r, mode, "anonymous", 77)
		}
		// Guest sessions (as many as sessions: a mapping to check),
		// handler session reads, the app's own credentials.
		if i%7 == 2 {
			ftHinc(t, rdb, now, 500, fieldGuests, r)
			wantAttention[r] += 500
		}
		if i%7 == 3 {
			ftHinc(t, rdb, now, 120, fieldReads, r)
			wantAttention[r] += 120
		}
		if i%4 == 1 {
			count(r, mode, "app", 9)
		}
	}
	for i, r := range ftLaptopPublic {
		count(r, "legacy", "anonymous", int64(2_345_678*(i+1)))
		count(r, "legacy", "session", int64(i))
	}
	var quiet []string
	for r, n := range wantAttention {
		if n == 0 && !slices.Contains(ftLaptopPublic, r) {
			quiet = append(quiet, r)
		}
	}
	if len(quiet) == 0 || len(quiet) == len(ftLaptopRoutes) || wantAttention[ftLaptopRoutes[4]] != 0 {
		t.Fatalf("the test's traffic should leave some routes quiet, some not, and %s quiet", ftLaptopRoutes[4])
	}
	wantOrder := slices.Clone(ftLaptopRoutes)
	slices.SortFunc(wantOrder, func(a, b string) int {
		return cmp.Or(cmp.Compare(wantAttention[b], wantAttention[a]), strings.Compare(a, b))
	})

	dash := httptest.NewServer(f.DashboardHandler())
	defer dash.Close()
	browser := ftChromium(t, width, height)
	page := ftOpenDashboard(t, browser, dash.URL+"/")
	defer func() {
		if t.Failed() {
			ftScreenshot(t, browser, "dashboard-laptop.png")
		}
	}()

	ftCheckFits(t, page, "folded")
	var order []string
	sawQuiet := false
	for _, row := range page.Rows {
		if row.InPublic {
			continue
		}
		order = append(order, row.Route)
		want := wantAttention[row.Route]
		if row.Attention != strconv.FormatUint(want, 10) {
			t.Errorf("%s attention: got %s, want %d", row.Route, row.Attention, want)
		}
		if wantGroup := map[bool]string{true: "attention", false: "quiet"}[want > 0]; row.Group != wantGroup {
			t.Errorf("%s: got group %q, want %q", row.Route, row.Group, wantGroup)
		}
		if row.Group == "quiet" {
			sawQuiet = true
		} else if sawQuiet {
			t.Errorf("%s needs attention but comes after a quiet route", row.Route)
		}
		if row.Name != row.Route {
			t.Errorf("%s: shown as %q", row.Route, row.Name)
		}
		i := slices.Index(ftLaptopRoutes, row.Route)
		// Guests warn where they are as many as the session requests.
		if want := map[bool]string{true: "guests"}[i%7 == 2 && i%3 != 0]; row.Warn != want {
			t.Errorf("%s: warnings %q, want %q", row.Route, row.Warn, want)
		}
		if want := map[bool]string{true: "120"}[i%7 == 3]; row.HandlerReads != want {
			t.Errorf("%s: handler reads %q, want %q", row.Route, row.HandlerReads, want)
		}
		if want := map[bool]string{true: "27"}[i%4 == 1]; row.App != want {
			t.Errorf("%s: app %q, want %q", row.Route, row.App, want)
		}
	}
	if strings.Join(order, "\n") != strings.Join(wantOrder, "\n") {
		t.Errorf("row order:\ngot  %q\nwant %q", order, wantOrder)
	}

	var public []string
	for _, row := range page.Rows {
		if row.Group == "public" || row.InPublic {
			public = append(public, row.Route)
			if !row.InPublic || row.Group != "public" || row.Visible || row.Badge != "public" || row.Mode != "legacy" {
				t.Errorf("%s: in the public section %v, group %q, visible %v, badge %q, mode %q; want in the folded section, public, hidden, public, legacy",
					row.Route, row.InPublic, row.Group, row.Visible, row.Badge, row.Mode)
			}
		}
	}
	if got, want := slices.Sorted(slices.Values(public)), slices.Sorted(slices.Values(ftLaptopPublic)); !slices.Equal(got, want) {
		t.Errorf("public rows: got %v, want %v", got, want)
	}
	if !page.PublicFolded || !strings.HasPrefix(page.PublicSummary, "6 public routes ") {
		t.Errorf("public section: folded %v, summary %q, want folded, \"6 public routes …\"", page.PublicFolded, page.PublicSummary)
	}

	// Unfolded, the public routes fit too.
	if err := chromedp.Do(browser, chromedp.Click(chromedp.CSS("details#public-routes > summary"))); err != nil {
		t.Fatalf("open the public routes: %v", err)
	}
	page = ftReadDashboard(t, browser)
	if page.PublicFolded {
		t.Fatal("the public routes' section did not open")
	}
	ftCheckFits(t, page, "unfolded")
}

// ftCheckFits fails unless page fits its viewport's width: no sideways
// scrolling, and every visible trend cell (the last column) within it.
func ftCheckFits(t *testing.T, page ftDashboardPage, what string) {
	t.Helper()
	if page.ScrollWidth > page.ViewWidth {
		t.Errorf("%s: document scrollWidth %v, want at most the viewport's %v", what, page.ScrollWidth, page.ViewWidth)
	}
	if page.WrapOverflow > 0 {
		t.Errorf("%s: a table scrolls %vpx sideways in its wrapper, want 0", what, page.WrapOverflow)
	}
	visible, bad := 0, 0
	for _, row := range page.Rows {
		if !row.Visible {
			continue
		}
		visible++
		c := row.TrendCell
		if c.Left >= 0 && c.Right <= page.ViewWidth && c.Width >= row.Trend.Width && row.Trend.Width >= 100 {
			continue
		}
		if bad++; bad == 1 {
			t.Errorf("%s: %s trend cell spans %v..%v (%v wide, chart %v), want within 0..%v with a chart of at least 100 inside",
				what, row.Route, c.Left, c.Right, c.Width, row.Trend.Width, page.ViewWidth)
		}
	}
	if bad > 1 {
		t.Errorf("%s: and %d more rows whose trend cell is not within the viewport", what, bad-1)
	}
	if visible == 0 {
		t.Errorf("%s: no visible row", what)
	}
}

// ftScreenshot takes a PNG of the whole page browser shows, writes it to
// name in the test's artifact directory (kept with go test -artifacts)
// and returns it; nil, with the error logged, when it could not.
func ftScreenshot(t *testing.T, browser context.Context, name string) []byte {
	t.Helper()
	png, err := chromedp.Run(browser, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot: %v", err)
		return nil
	}
	path := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Logf("screenshot: %v", err)
		return png
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
	return png
}

// TestShortCount: the routes' table writes counts below 100,000 exactly,
// larger ones in three significant digits, cut (never rounded up), with
// the exact count beside.
func TestShortCount(t *testing.T) {
	for _, tt := range []struct {
		n          uint64
		text, full string
	}{
		{0, "0", ""},
		{7, "7", ""},
		{12_345, "12,345", ""},
		{99_999, "99,999", ""},
		{100_000, "100k", "100,000"},
		{123_456, "123k", "123,456"},
		{999_999, "999k", "999,999"},
		{1_000_000, "1M", "1,000,000"},
		{1_205_000, "1.2M", "1,205,000"},
		{1_234_567, "1.23M", "1,234,567"},
		{1_999_999, "1.99M", "1,999,999"},
		{10_050_000, "10M", "10,050,000"},
		{12_345_678, "12.3M", "12,345,678"},
		{123_456_789, "123M", "123,456,789"},
		{4_560_000_000, "4.56B", "4,560,000,000"},
		{70_000_000_000_000, "70T", "70,000,000,000,000"},
		{1_234_567_000_000_000, "1,234T", "1,234,567,000,000,000"},
		{math.MaxUint64, "18,446,744T", "18,446,744,073,709,551,615"},
	} {
		if got, want := newShortCount(tt.n), (shortCount{tt.text, tt.full}); got != want {
			t.Errorf("newShortCount(%d): got %+v, want %+v", tt.n, got, want)
		}
	}
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
