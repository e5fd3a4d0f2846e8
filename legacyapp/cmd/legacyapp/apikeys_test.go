package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"testing"
	"time"

	"github.com/sessionbridge/sessionbridge/legacyapp"
)

// demoReport is the part of /migration/report.json these tests read.
type demoReport struct {
	Routes []demoRoute `json:"routes"`
}

type demoRoute struct {
	Route               string            `json:"route"`
	Counts              map[string]uint64 `json:"counts"`
	GuestSessions       uint64            `json:"guest_sessions"`
	HandlerSessionReads uint64            `json:"handler_session_reads"`
}

// TestDemoAPIKeys replays issue 14's first break on the demo: the app's
// own API keys reach its JSON API in every mode (dual and jwt routes
// included), counted app; the app answers auth_source api_key, and a
// wrong key gets the app's own 401. The handlers' session reads show which
// routes still need the session: the legacy pages, not the migrated API.
func TestDemoAPIKeys(t *testing.T) {
	base := startDemo(t, map[string]string{"BRIDGE_MODES": "/api/me=dual,/api/orders=jwt,/api/orders/{id}=dual,/admin/users=jwt", "BRIDGE_FLUSH_INTERVAL": "50ms"})
	c := &http.Client{Timeout: 10 * time.Second}
	get := func(path, key string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	for _, tc := range []struct {
		path, key string
		status    int
		want      string // a field of the body
	}{
		{"/api/me", legacyapp.AliceAPIKey, 200, "api_key"},
		{"/api/orders", legacyapp.AliceAPIKey, 200, ""},
		{"/admin/users", legacyapp.BobAPIKey, 200, ""},
		{"/admin/users", legacyapp.AliceAPIKey, 403, ""},
		{"/api/me", "ak_alice_wrong", 401, "api_key_invalid"},
		{"/api/orders", "ak_nobody", 401, "api_key_invalid"},
	} {
		status, body := get(tc.path, tc.key)
		if status != tc.status {
			t.Errorf("GET %s with %s: %d %v, want %d", tc.path, tc.key[:6], status, body, tc.status)
		}
		if tc.want == "api_key" && (body["auth_source"] != "api_key" || body["user_id"] != "1") {
			t.Errorf("GET %s with alice's key: %v, want user 1 by api_key", tc.path, body)
		}
		if tc.want == "api_key_invalid" && body["reason"] != "api_key_invalid" {
			t.Errorf("GET %s with a wrong key: %v, want the app's reason api_key_invalid", tc.path, body)
		}
	}

	// A browser user on the legacy pages and the API.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := browser.PostForm(base+"/login", url.Values{"username": {"alice"}, "password": {"alice-password"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, p := range []string{"/profile", "/profile", "/api/me"} {
		resp, err := browser.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	var rep demoReport
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := c.Get(base + "/migration/report.json")
		if err != nil {
			t.Fatal(err)
		}
		rep = demoReport{}
		_ = json.NewDecoder(resp.Body).Decode(&rep)
		resp.Body.Close()
		if routeOf(rep, "/profile").HandlerSessionReads >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for route, want := range map[string]uint64{"/api/me": 2, "/api/orders": 2, "/admin/users": 2} {
		if got := routeOf(rep, route).Counts["app"]; got != want {
			t.Errorf("%s: app %d, want %d", route, got, want)
		}
	}
	if r := routeOf(rep, "/profile"); r.HandlerSessionReads < 2 {
		t.Errorf("/profile: %d handler session reads, want at least 2 (the legacy page reads the session)", r.HandlerSessionReads)
	}
	if r := routeOf(rep, "/api/me"); r.HandlerSessionReads != 0 {
		t.Errorf("/api/me: %d handler session reads, want 0 (the API reads IdentityFrom)", r.HandlerSessionReads)
	}
}

// routeOf is route's line of rep (zero when it has none).
func routeOf(rep demoReport, route string) demoRoute {
	for _, x := range rep.Routes {
		if x.Route == route {
			return x
		}
	}
	return demoRoute{}
}
