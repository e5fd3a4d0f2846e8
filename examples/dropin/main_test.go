package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/fleet"
	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
)

// testServer starts the app over TLS (so cookies keep their Secure
// attribute, as in production) and returns it, a browser-like client with
// a cookie jar, the in-memory Redis behind the session store and the
// fleet, and the app. The fleet's Run is not started: tests flush its
// counts with a.fleet.Flush.
func testServer(t *testing.T) (*httptest.Server, *http.Client, *miniredis.Miniredis, *app) {
	t.Helper()
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	store, err := redisstore.New(redisstore.Config{Client: rdb, KeyPairs: [][]byte{[]byte(devHashKey)}})
	if err != nil {
		t.Fatal(err)
	}
	key, err := bridge.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	sid, err := sidKey([]byte(devHashKey))
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(options{Store: store, Redis: rdb, SigningKey: key, SIDKey: sid, Issuer: "https://dropin.example"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(a)
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		if err := a.fleet.Close(); err != nil {
			t.Errorf("fleet.Close: %v", err)
		}
	})
	c := srv.Client()
	c.Jar, err = cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return srv, c, m, a
}

type me struct {
	UserID     string   `json:"user_id"`
	Username   string   `json:"username"`
	Roles      []string `json:"roles"`
	AuthSource string   `json:"auth_source"`
}

func getMe(t *testing.T, c *http.Client, base string, cookies ...*http.Cookie) (int, me) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/api/me", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ck := range cookies {
		req.AddCookie(ck)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m me
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, m
}

func jarCookie(c *http.Client, base, name string) *http.Cookie {
	u, _ := url.Parse(base)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == name {
			return ck
		}
	}
	return nil
}

// TestDropIn walks a user through the migration: legacy login, /api/me by
// the session (converted to a JWT cookie), then /api/me by the JWT cookie
// without touching Redis, the legacy page still on the session, and
// logout revoking the JWT.
func TestDropIn(t *testing.T) {
	srv, c, m, _ := testServer(t)

	if code, _ := getMe(t, c, srv.URL); code != http.StatusUnauthorized {
		t.Fatalf("anonymous /api/me: got %d, want 401", code)
	}

	resp, err := c.PostForm(srv.URL+"/login", url.Values{"username": {"alice"}, "password": {"wrong"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("login with a wrong password: got %d, want 401", resp.StatusCode)
	}

	// The legacy login; the redirect lands on the legacy page.
	resp, err = c.PostForm(srv.URL+"/login", url.Values{"username": {"alice"}, "password": {"alice-password"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "alice") {
		t.Fatalf("login → /profile: got %d %q, want 200 with the user's name", resp.StatusCode, body)
	}
	if jarCookie(c, srv.URL, "session") == nil {
		t.Fatal("no session cookie after login")
	}
	if jarCookie(c, srv.URL, bridge.DefaultCookieName) != nil {
		t.Fatal("id_token set on a legacy route")
	}

	// First /api/me: authenticated by the session, converted.
	code, got := getMe(t, c, srv.URL)
	want := me{UserID: "1", Username: "alice", Roles: []string{"user"}, AuthSource: "session"}
	if code != http.StatusOK || !sameMe(got, want) {
		t.Fatalf("/api/me by session: got %d %+v, want 200 %+v", code, got, want)
	}
	tok := jarCookie(c, srv.URL, bridge.DefaultCookieName)
	if tok == nil {
		t.Fatal("no JWT cookie after the session was converted")
	}

	// Next /api/me: by the JWT cookie, and Redis is not read.
	before := m.CommandCount()
	code, got = getMe(t, c, srv.URL)
	want.AuthSource = "jwt_cookie"
	if code != http.StatusOK || !sameMe(got, want) {
		t.Fatalf("/api/me by JWT cookie: got %d %+v, want 200 %+v", code, got, want)
	}
	if n := m.CommandCount() - before; n != 0 {
		t.Errorf("redis commands during a jwt_cookie request: got %d, want 0", n)
	}

	// The legacy page still works from the session.
	resp, err = c.Get(srv.URL + "/profile")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "alice") {
		t.Fatalf("/profile: got %d %q, want 200 with the user's name", resp.StatusCode, body)
	}

	// The JWKS is published for downstream services.
	resp, err = c.Get(srv.URL + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	var jwks struct {
		Keys []struct {
			KID string `json:"kid"`
			ALG string `json:"alg"`
		} `json:"keys"`
	}
	err = json.NewDecoder(resp.Body).Decode(&jwks)
	resp.Body.Close()
	if err != nil || len(jwks.Keys) != 1 || jwks.Keys[0].ALG != "ES256" || jwks.Keys[0].KID == "" {
		t.Fatalf("jwks: got %+v (%v), want one ES256 key with a kid", jwks, err)
	}

	// Logout deletes the session from Redis and revokes the JWT, on every
	// instance through the fleet: replaying the old cookie is refused.
	resp, err = c.Post(srv.URL+"/logout", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if keys := m.Keys(); !slices.Equal(keys, []string{revocationsKey, revokedKey}) {
		t.Errorf("redis keys after logout: got %v, want only the fleet's revocations %s and %s", keys, revokedKey, revocationsKey)
	}
	if members, err := m.ZMembers(revokedKey); err != nil || len(members) != 1 || !strings.HasPrefix(members[0], "sid:") {
		t.Errorf("fleet revocations after logout: got %v (%v), want the session's sid (which covers the JWT)", members, err)
	}
	if jarCookie(c, srv.URL, "session") != nil || jarCookie(c, srv.URL, bridge.DefaultCookieName) != nil {
		t.Error("cookies left in the jar after logout")
	}
	if code, _ := getMe(t, c, srv.URL, &http.Cookie{Name: tok.Name, Value: tok.Value}); code != http.StatusUnauthorized {
		t.Errorf("/api/me with the revoked JWT: got %d, want 401", code)
	}
}

// revokedKey and revocationsKey are the fleet's set and stream of
// revocations (the default prefix of the app, named by its audience).
const (
	revokedKey     = "{" + fleet.DefaultPrefix + ":dropin}:revoked"
	revocationsKey = "{" + fleet.DefaultPrefix + ":dropin}:revocations"
)

func sameMe(a, b me) bool {
	return a.UserID == b.UserID && a.Username == b.Username && a.AuthSource == b.AuthSource &&
		strings.Join(a.Roles, ",") == strings.Join(b.Roles, ",")
}

// TestLoginFormAndLegacyPage checks the parts of the app the bridge only
// observes.
func TestLoginFormAndLegacyPage(t *testing.T) {
	srv, c, _, _ := testServer(t)
	resp, err := c.Get(srv.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `name="password"`) {
		t.Fatalf("GET /login: got %d, want 200 with a form", resp.StatusCode)
	}
	// Without a session the legacy page sends the user to the login page.
	resp, err = c.Get(srv.URL + "/profile")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/login" {
		t.Fatalf("/profile without a session: got %d at %s, want 200 at /login", resp.StatusCode, resp.Request.URL.Path)
	}
}

// login logs user in with c (a client of srv with its own jar).
func login(t *testing.T, c *http.Client, base, user, password string) {
	t.Helper()
	resp, err := c.PostForm(base+"/login", url.Values{"username": {user}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login as %s: got %d, want 200", user, resp.StatusCode)
	}
}

// newJarClient returns a client of srv with a cookie jar of its own
// (srv.Client() is one client, shared).
func newJarClient(t *testing.T, srv *httptest.Server) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := *srv.Client()
	c.Jar = jar
	return &c
}

// TestMigrationReport: the fleet-wide report, as JSON and as the
// dashboard, is for admins only, and counts what the instances flushed.
func TestMigrationReport(t *testing.T) {
	srv, alice, _, a := testServer(t)
	login(t, alice, srv.URL, "alice", "alice-password")
	if code, _ := getMe(t, alice, srv.URL); code != http.StatusOK { // converted
		t.Fatalf("/api/me by session: got %d, want 200", code)
	}
	if code, _ := getMe(t, alice, srv.URL); code != http.StatusOK { // by the JWT cookie
		t.Fatalf("/api/me by JWT cookie: got %d, want 200", code)
	}
	if code, _ := getMe(t, newJarClient(t, srv), srv.URL); code != http.StatusUnauthorized {
		t.Fatalf("anonymous /api/me: got %d, want 401", code)
	}
	if err := a.fleet.Flush(context.Background()); err != nil {
		t.Fatalf("fleet.Flush: %v", err)
	}
	bob := newJarClient(t, srv)
	login(t, bob, srv.URL, "bob", "bob-password")

	for _, path := range []string{"/migration/report.json", "/migration"} {
		t.Run(path, func(t *testing.T) {
			anonymous := newJarClient(t, srv)
			anonymous.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			resp, err := anonymous.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
				t.Errorf("anonymous: got %d to %q, want 303 to /login", resp.StatusCode, resp.Header.Get("Location"))
			}
			resp, err = alice.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("alice (no admin role): got %d, want 403", resp.StatusCode)
			}
			resp, err = bob.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "/api/me") {
				t.Errorf("bob (admin): got %d %q, want 200 with /api/me", resp.StatusCode, body)
			}
		})
	}

	resp, err := bob.Get(srv.URL + "/migration/report.json")
	if err != nil {
		t.Fatal(err)
	}
	var rep fleet.Report
	err = json.NewDecoder(resp.Body).Decode(&rep)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var me *fleet.RouteReport
	for i := range rep.Routes {
		if rep.Routes[i].Route == "/api/me" {
			me = &rep.Routes[i]
		}
	}
	if me == nil {
		t.Fatalf("report: no /api/me in %+v", rep.Routes)
	}
	want := map[bridge.Source]uint64{bridge.SourceSession: 1, bridge.SourceJWTCookie: 1, bridge.SourceAnonymous: 1}
	for s, n := range me.Counts.All() {
		if n != want[s] {
			t.Errorf("report /api/me %v: got %d, want %d", s, n, want[s])
		}
	}
	if me.Mode != "dual" || me.Converted != 1 || me.Rejections.Of(bridge.ReasonNoCredentials) != 1 {
		t.Errorf("report /api/me: got mode %s, converted %d, no_credentials %d; want dual, 1, 1",
			me.Mode, me.Converted, me.Rejections.Of(bridge.ReasonNoCredentials))
	}
	if rep.DistinctSessions != 1 {
		t.Errorf("report: distinct sessions got %d, want 1", rep.DistinctSessions)
	}
}

// TestRun runs the command as main does, on a Redis of the test's: it
// serves, and when its context ends it shuts the server down and the
// fleet's final flush puts the counts in Redis.
func TestRun(t *testing.T) {
	m := miniredis.RunT(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	t.Setenv("ADDR", addr)
	t.Setenv("REDIS_URL", "redis://"+m.Addr())
	t.Setenv("SESSION_HASH_KEY", "")
	t.Setenv("BRIDGE_SIGNING_KEY_FILE", "")
	t.Setenv("BRIDGE_INSECURE_COOKIES", "1") // plain http

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	base := "http://" + addr
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar, Timeout: 5 * time.Second}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := c.Get(base + "/login")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server did not answer: %v", err)
		}
	}
	login(t, c, base, "alice", "alice-password")
	if code, _ := getMe(t, c, base); code != http.StatusOK {
		t.Fatalf("/api/me by session: got %d, want 200", code)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
	// The request was counted, and flushed at the latest by Close: the
	// fleet-wide report, read as bridgectl does, has it.
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	f, err := fleet.New(fleet.Config{Redis: rdb, App: "dropin"}) // the app's audience
	if err != nil {
		t.Fatal(err)
	}
	rep, err := f.Report(context.Background(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var sessions uint64
	for _, r := range rep.Routes {
		if r.Route == "/api/me" {
			sessions = r.Counts.Of(bridge.SourceSession)
		}
	}
	if sessions != 1 || rep.Totals.Converted != 1 {
		t.Errorf("report after run: /api/me by session %d, converted %d; want 1 and 1", sessions, rep.Totals.Converted)
	}
}
