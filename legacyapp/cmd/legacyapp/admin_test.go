package main

import (
	"context"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// startDemo runs the demo on a free loopback port and a redis-server of its
// own, plain http, with env added, until the test ends; it returns the
// base URL once the demo serves.
func startDemo(t *testing.T, env map[string]string) string {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(redistest.FreePort(t)))
	e := map[string]string{"ADDR": addr, "REDIS_URL": redistest.New(t).URL(), "BRIDGE_INSECURE_COOKIES": "1"}
	maps.Copy(e, env)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, envFunc(e), io.Discard) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	base := "http://" + addr
	waitHealthy(t, base, done)
	return base
}

// TestAdminPagesBehindAdminAuthentication replays issue 13's point 8: with
// ADMIN_PAGES=admin (the production setting), the operators' pages answer
// the app's admins only, whatever the connecting address (behind a
// reverse proxy every client is loopback, as here).
func TestAdminPagesBehindAdminAuthentication(t *testing.T) {
	base := startDemo(t, map[string]string{"ADMIN_PAGES": "admin"})

	client := func(user string) *http.Client {
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
		if user != "" {
			resp, err := c.PostForm(base+"/login", url.Values{"username": {user}, "password": {user + "-password"}})
			if err != nil {
				t.Fatalf("login %s: %v", user, err)
			}
			resp.Body.Close()
		}
		return c
	}
	for _, tc := range []struct {
		user string
		want int
	}{{"", http.StatusUnauthorized}, {"alice", http.StatusForbidden}, {"bob", http.StatusOK}} {
		c := client(tc.user)
		for _, path := range []string{"/migration/", "/migration/report.json", "/metrics"} {
			resp, err := c.Get(base + path)
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("GET %s as %q from loopback: %d, want %d", path, tc.user, resp.StatusCode, tc.want)
			}
		}
	}

	// A wrong setting is refused at start.
	bad := map[string]string{"ADMIN_PAGES": "open"}
	if err := run(context.Background(), envFunc(bad), io.Discard); err == nil {
		t.Error("ADMIN_PAGES=open accepted, want an error")
	}
}
