package fleet

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/internal/bridgetest"
)

// ftReadyApp is the dashboard tests' app (ftDashboardRoutes) on a clock
// set to a fixed half hour, for readiness over days.
type ftReadyApp struct {
	t       *testing.T
	f       *Fleet
	b       *bridge.Bridge
	clock   *bridgetest.Clock
	get     func(path string, want int, hdr http.Header, cookies ...*http.Cookie)
	bearer  http.Header
	session *http.Cookie
}

var ftReadyStart = time.Date(2026, 11, 2, 10, 30, 0, 0, time.UTC)

func ftNewReadyApp(t *testing.T) *ftReadyApp {
	t.Helper()
	clock := bridgetest.NewClock()
	clock.Advance(ftReadyStart.Sub(clock.Now()))
	f, b, key, store, app := ftNewDashboardApp(t, clock)
	session, _ := bridgetest.SaveSession(t, store, bridgetest.User("1"))
	a := &ftReadyApp{t: t, f: f, b: b, clock: clock, session: session}
	c := app.Client()
	a.get = func(path string, want int, hdr http.Header, cookies ...*http.Cookie) {
		t.Helper()
		if resp := bridgetest.Do(t, c, http.MethodGet, app.URL+path, hdr, cookies...); resp.StatusCode != want {
			t.Fatalf("GET %s: got %v, want %v (%s)", path, resp.StatusCode, want, resp.Body)
		}
	}
	// Minted for the whole test: the clock moves days, and expiry is not
	// what these tests are about.
	a.bearer = bridgetest.Bearer(key.Mint(t, b, "1", func(c *bridge.Claims) {
		c.ExpiresAt.Time = c.IssuedAt.Add(30 * 24 * time.Hour)
	}))
	return a
}

// at moves the clock to start + d.
func (a *ftReadyApp) at(d time.Duration) { a.clock.Advance(ftReadyStart.Add(d).Sub(a.clock.Now())) }

// bearerAt moves the clock to start + d, sends a bearer request to
// /api/orders/{id} and flushes.
func (a *ftReadyApp) bearerAt(d time.Duration) {
	a.t.Helper()
	a.at(d)
	a.get("/api/orders/7", http.StatusOK, a.bearer)
	a.flush()
}

func (a *ftReadyApp) flush() {
	a.t.Helper()
	if err := a.f.Flush(context.Background()); err != nil {
		a.t.Fatalf("Flush: %v", err)
	}
}

// ready returns the readiness of route in the report of the whole
// retention (since = the zero time) or from since.
func (a *ftReadyApp) ready(route string, since time.Time) (bool, string) {
	a.t.Helper()
	rep, err := a.f.Report(context.Background(), since)
	if err != nil {
		a.t.Fatalf("Report: %v", err)
	}
	for _, r := range rep.Routes {
		if r.Route == route {
			return r.ReadyToSwitch, r.ReadyReason
		}
	}
	a.t.Fatalf("route %s not in the report", route)
	return false, ""
}

func (a *ftReadyApp) want(route string, ready bool, reason string) {
	a.t.Helper()
	got, why := a.ready(route, time.Time{})
	if got != ready || why != reason {
		a.t.Errorf("%s: ready %v (%q), want %v (%q)", route, got, why, ready, reason)
	}
}

// TestReportReadiness: a dual route is ready to switch to jwt only on
// what the fleet observed of it in dual mode over the whole ReadyAfter
// period (24h): hours before the bridge saw it, or saw it in another
// mode, are not evidence that nobody uses a session. The report says
// why, for every route.
func TestReportReadiness(t *testing.T) {
	t.Run("fresh deploy, one bearer request", func(t *testing.T) {
		a := ftNewReadyApp(t)
		a.flush() // the instance's first flush, right after the deploy
		a.bearerAt(40 * time.Second)
		a.want("/api/orders/{id}", false, "observed in dual for only 40s of 24h")
		a.want("/api/me", false, "observed in dual for only 40s of 24h")
		a.want("/profile", false, "legacy mode: move it to dual first")
		a.want("/api/orders", false, "already in jwt mode")
	})

	t.Run("24h in dual, no session", func(t *testing.T) {
		a := ftNewReadyApp(t)
		a.flush()
		a.bearerAt(time.Hour)
		a.at(24 * time.Hour)
		a.get("/api/orders/7", http.StatusOK, a.bearer)
		a.get("/api/me", http.StatusUnauthorized, nil) // anonymous: no evidence either way
		a.flush()
		a.want("/api/orders/{id}", true, "ready: in dual for 24h, no session request in the last 24h")
		a.want("/api/me", false, "no authenticated traffic in the last 24h")
		// A window shorter than the period cannot tell.
		if ready, why := a.ready("/api/orders/{id}", a.clock.Now().Add(-time.Hour)); ready || why != "the report's window is shorter than 24h" {
			t.Errorf("1h window: ready %v (%q), want not ready: the window is too short", ready, why)
		}
	})

	t.Run("session request inside the window", func(t *testing.T) {
		a := ftNewReadyApp(t)
		a.flush()
		a.at(2 * time.Hour)
		a.get("/api/me", http.StatusOK, nil, a.session) // before the last 24h: forgiven below
		a.get("/api/orders/7", http.StatusOK, a.bearer)
		a.flush()
		a.at(12 * time.Hour)
		a.get("/api/orders/7", http.StatusOK, nil, a.session)
		a.get("/api/orders/8", http.StatusOK, nil, a.session)
		a.flush()
		a.at(30 * time.Hour)
		a.get("/api/me", http.StatusOK, a.bearer)
		a.get("/api/orders/9", http.StatusOK, a.bearer)
		a.flush()
		a.want("/api/orders/{id}", false, "2 session requests in the last 24h")
		a.want("/api/me", true, "ready: in dual for 30h, no session request in the last 24h")
		// Counts are hourly: the session requests' hour (22:00) counts
		// while any of it is in the period...
		a.at(36*time.Hour + 30*time.Minute)
		a.get("/api/orders/9", http.StatusOK, a.bearer)
		a.flush()
		a.want("/api/orders/{id}", false, "2 session requests in the last 24h")
		// ...and is forgiven once all of it is out.
		a.at(37 * time.Hour)
		a.flush()
		a.want("/api/orders/{id}", true, "ready: in dual for 37h, no session request in the last 24h")
	})

	t.Run("legacy for 23h, then dual for 1h", func(t *testing.T) {
		a := ftNewReadyApp(t)
		if err := a.b.SetMode("/api/orders/{id}", bridge.Legacy); err != nil {
			t.Fatal(err)
		}
		a.flush()
		for h := range 23 {
			a.bearerAt(time.Duration(h) * time.Hour)
		}
		a.at(23 * time.Hour)
		a.b.ResetMode("/api/orders/{id}") // back to its configured dual
		a.flush()
		a.get("/api/orders/7", http.StatusOK, a.bearer)
		a.bearerAt(24 * time.Hour)
		a.want("/api/orders/{id}", false, "observed in dual for only 1h of 24h")
		a.bearerAt(47 * time.Hour)
		a.want("/api/orders/{id}", true, "ready: in dual for 24h, no session request in the last 24h")
		// A rollback to legacy stops the clock; dual again starts it anew.
		if err := a.b.SetMode("/api/orders/{id}", bridge.Legacy); err != nil {
			t.Fatal(err)
		}
		a.flush()
		a.want("/api/orders/{id}", false, "legacy mode: move it to dual first")
		a.b.ResetMode("/api/orders/{id}")
		a.at(48 * time.Hour)
		a.flush()
		a.want("/api/orders/{id}", false, "observed in dual for only 0s of 24h")
	})

	t.Run("an instance running the route in legacy holds the clock", func(t *testing.T) {
		a := ftNewReadyApp(t)
		a.flush()
		// An instance of the previous release, with /api/orders/{id} in
		// legacy, flushes into the same fleet for 10 hours.
		old, _ := ftNewFleetBridge(t, a.f.Config().Redis, nil, func(c *bridge.Config) {
			c.Routes = bridge.Routes{"/api/orders/{id}": bridge.Legacy}
			c.Now = a.clock.Now
		})
		for h := range 11 {
			a.at(time.Duration(h) * time.Hour)
			if err := old.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			a.want("/api/orders/{id}", false, "not observed in dual mode yet")
			a.flush() // the new release starts the clock again, and again
			a.want("/api/orders/{id}", false, "observed in dual for only 0s of 24h")
		}
		// It is gone: the clock starts at the next flush.
		a.bearerAt(25 * time.Hour)
		a.want("/api/orders/{id}", false, "observed in dual for only 15h of 24h")
		a.bearerAt(34 * time.Hour)
		a.want("/api/orders/{id}", true, "ready: in dual for 24h, no session request in the last 24h")
	})
}

func TestReadinessReasons(t *testing.T) {
	now := ftReadyStart
	hours := func(n int, c bridge.SourceCounts) []HourCounts {
		out := make([]HourCounts, n)
		for i := range out {
			out[i] = HourCounts{Hour: now.Truncate(time.Hour).Add(time.Duration(i-n+1) * time.Hour), Counts: c}
		}
		return out
	}
	var jwt, session bridge.SourceCounts
	jwt.Add(bridge.SourceJWTCookie, 3)
	session.Add(bridge.SourceSession, 1)
	for _, c := range []struct {
		name      string
		mode      bridge.Mode
		hourly    []HourCounts
		dualSince time.Time
		ready     bool
		reason    string
	}{
		{"legacy", bridge.Legacy, hours(30, jwt), now.Add(-48 * time.Hour), false, "legacy mode: move it to dual first"},
		{"jwt", bridge.JWT, hours(30, jwt), now.Add(-48 * time.Hour), false, "already in jwt mode"},
		{"never flushed in dual", bridge.Dual, hours(30, jwt), time.Time{}, false, "not observed in dual mode yet"},
		{"40 seconds", bridge.Dual, hours(30, jwt), now.Add(-40 * time.Second), false, "observed in dual for only 40s of 24h"},
		{"3 hours", bridge.Dual, hours(30, jwt), now.Add(-3 * time.Hour), false, "observed in dual for only 3h of 24h"},
		{"window of 5 hours", bridge.Dual, hours(5, jwt), now.Add(-48 * time.Hour), false, "the report's window is shorter than 24h"},
		{"12 sessions", bridge.Dual, append(hours(30, jwt)[:18], hours(12, session)...), now.Add(-48 * time.Hour), false, "12 session requests in the last 24h"},
		{"sessions", bridge.Dual, append(hours(30, jwt), HourCounts{Hour: now.Truncate(time.Hour).Add(time.Hour), Counts: session}), now.Add(-48 * time.Hour), false, "1 session request in the last 24h"},
		{"nobody", bridge.Dual, hours(30, bridge.SourceCounts{}), now.Add(-48 * time.Hour), false, "no authenticated traffic in the last 24h"},
		{"ready", bridge.Dual, hours(30, jwt), now.Add(-50 * time.Hour), true, "ready: in dual for 2d 2h, no session request in the last 24h"},
	} {
		ready, reason := readiness(c.mode, c.hourly, c.dualSince, now, 24*time.Hour)
		if ready != c.ready || reason != c.reason {
			t.Errorf("%s: ready %v (%q), want %v (%q)", c.name, ready, reason, c.ready, c.reason)
		}
		if ready != strings.HasPrefix(reason, "ready:") {
			t.Errorf("%s: reason %q disagrees with ready %v", c.name, reason, ready)
		}
	}
}
