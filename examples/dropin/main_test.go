package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
)

// testServer starts the app over TLS (so cookies keep their Secure
// attribute, as in production) and returns it, a browser-like client with
// a cookie jar, and the in-memory Redis behind the session store.
func testServer(t *testing.T) (*httptest.Server, *http.Client, *miniredis.Miniredis) {
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
	h, err := newServer(options{Store: store, SigningKey: key, Issuer: "https://dropin.example"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	c := srv.Client()
	c.Jar, err = cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return srv, c, m
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
	srv, c, m := testServer(t)

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
	if jarCookie(c, srv.URL, "id_token") != nil {
		t.Fatal("id_token set on a legacy route")
	}

	// First /api/me: authenticated by the session, converted.
	code, got := getMe(t, c, srv.URL)
	want := me{UserID: "1", Username: "alice", Roles: []string{"user"}, AuthSource: "session"}
	if code != http.StatusOK || !sameMe(got, want) {
		t.Fatalf("/api/me by session: got %d %+v, want 200 %+v", code, got, want)
	}
	tok := jarCookie(c, srv.URL, "id_token")
	if tok == nil {
		t.Fatal("no id_token cookie after the session was converted")
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

	// Logout deletes the session from Redis and revokes the JWT: replaying
	// the old cookie is refused.
	resp, err = c.Post(srv.URL+"/logout", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if keys := m.Keys(); len(keys) != 0 {
		t.Errorf("redis keys after logout: got %v, want none", keys)
	}
	if jarCookie(c, srv.URL, "session") != nil || jarCookie(c, srv.URL, "id_token") != nil {
		t.Error("cookies left in the jar after logout")
	}
	if code, _ := getMe(t, c, srv.URL, &http.Cookie{Name: tok.Name, Value: tok.Value}); code != http.StatusUnauthorized {
		t.Errorf("/api/me with the revoked JWT: got %d, want 401", code)
	}
}

func sameMe(a, b me) bool {
	return a.UserID == b.UserID && a.Username == b.Username && a.AuthSource == b.AuthSource &&
		strings.Join(a.Roles, ",") == strings.Join(b.Roles, ",")
}

// TestLoginFormAndLegacyPage checks the parts of the app the bridge only
// observes.
func TestLoginFormAndLegacyPage(t *testing.T) {
	srv, c, _ := testServer(t)
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
