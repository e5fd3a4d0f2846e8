package legacyapp_test

import (
	"context"
	"github.com/sessionbridge/sessionbridge/internal/syncbuf"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
	"github.com/sessionbridge/sessionbridge/legacyapp"
)

const testHashKey = "legacyapp-test-hash-key-at-least-32-bytes"

// testEnv is the app on an httptest server, its sessions in a real
// redis-server started for the test.
type testEnv struct {
	redis *redistest.Server
	rdb   *redis.Client
	store *redisstore.Store
	url   string
	logs  *syncbuf.Buffer
}

// newTestEnv starts the app for cfg; a nil cfg.Store means a redisstore on
// the test's redis-server.
func newTestEnv(t *testing.T, cfg legacyapp.Config) *testEnv {
	t.Helper()
	srv := redistest.New(t)
	rdb := srv.Client()
	store, err := redisstore.New(redisstore.Config{
		Client:   rdb,
		KeyPairs: [][]byte{[]byte(testHashKey)},
		Options:  &sessions.Options{Path: "/", MaxAge: 3600, HttpOnly: true, SameSite: http.SameSiteLaxMode},
	})
	if err != nil {
		t.Fatalf("redisstore.New: %v", err)
	}
	if cfg.Store == nil {
		cfg.Store = store
	}
	logs := &syncbuf.Buffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	app, err := legacyapp.New(cfg)
	if err != nil {
		t.Fatalf("legacyapp.New: %v", err)
	}
	ts := httptest.NewServer(app.Router())
	t.Cleanup(ts.Close)
	return &testEnv{redis: srv, rdb: rdb, store: store, url: ts.URL, logs: logs}
}

// newClient returns a client with a cookie jar, like a browser, that does
// not follow redirects.
func newClient(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatalf("cookiejar.New: %v", err)
	}
	return &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// do sends a request (a form body when form is not nil) and returns the
// response with its body read.
func (e *testEnv) do(t *testing.T, c *http.Client, method, path string, form url.Values, header http.Header) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, string(b)
}

func (e *testEnv) get(t *testing.T, c *http.Client, path string) (*http.Response, string) {
	t.Helper()
	return e.do(t, c, http.MethodGet, path, nil, nil)
}

func (e *testEnv) login(t *testing.T, c *http.Client, username, password string) (*http.Response, string) {
	t.Helper()
	return e.do(t, c, http.MethodPost, "/login", url.Values{"username": {username}, "password": {password}}, nil)
}

// mustLogin logs c in and fails the test unless the login succeeds.
func (e *testEnv) mustLogin(t *testing.T, c *http.Client, username, password string) {
	t.Helper()
	resp, _ := e.login(t, c, username, password)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login %s: got status %d, want %d", username, resp.StatusCode, http.StatusSeeOther)
	}
}

// sessionCookie returns c's session cookie, or nil.
func (e *testEnv) sessionCookie(t *testing.T, c *http.Client) *http.Cookie {
	t.Helper()
	u, _ := url.Parse(e.url)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == legacyapp.DefaultSessionName {
			return ck
		}
	}
	return nil
}

// sessionID decodes the session ID out of a session cookie value.
func sessionID(t *testing.T, value string) string {
	t.Helper()
	var id string
	codecs := securecookie.CodecsFromPairs([]byte(testHashKey))
	if err := securecookie.DecodeMulti(legacyapp.DefaultSessionName, value, &id, codecs...); err != nil {
		t.Fatalf("decode session cookie: %v", err)
	}
	return id
}

// keyExists reports whether the session with the given ID is in Redis.
func (e *testEnv) keyExists(t *testing.T, id string) bool {
	t.Helper()
	n, err := e.rdb.Exists(context.Background(), e.store.Key(id)).Result()
	if err != nil {
		t.Fatalf("EXISTS: %v", err)
	}
	return n == 1
}

// setCookie puts a session cookie with the given value into c's jar.
func (e *testEnv) setCookie(t *testing.T, c *http.Client, value string) {
	t.Helper()
	u, _ := url.Parse(e.url)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: legacyapp.DefaultSessionName, Value: value, Path: "/"}})
}

func TestNewValidatesConfig(t *testing.T) {
	store := sessions.NewCookieStore([]byte(testHashKey))
	alice := legacyapp.DemoUsers()[0]
	tests := []struct {
		name string
		cfg  legacyapp.Config
		want string // substring of the error; "" for success
	}{
		{"defaults", legacyapp.Config{Store: store}, ""},
		{"no store", legacyapp.Config{}, "Config.Store"},
		{"empty user ID", legacyapp.Config{Store: store, Users: []legacyapp.User{{Username: "x", PasswordHash: alice.PasswordHash}}}, "Users[0].ID"},
		{"empty username", legacyapp.Config{Store: store, Users: []legacyapp.User{{ID: "9", PasswordHash: alice.PasswordHash}}}, "Users[0].Username"},
		{"duplicate ID", legacyapp.Config{Store: store, Users: []legacyapp.User{alice, {ID: alice.ID, Username: "other", PasswordHash: alice.PasswordHash}}}, "Users[1].ID"},
		{"duplicate username", legacyapp.Config{Store: store, Users: []legacyapp.User{alice, {ID: "9", Username: alice.Username, PasswordHash: alice.PasswordHash}}}, "Users[1].Username"},
		{"not a bcrypt hash", legacyapp.Config{Store: store, Users: []legacyapp.User{{ID: "9", Username: "x", PasswordHash: []byte("secret")}}}, "Users[0].PasswordHash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := legacyapp.New(tt.cfg)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("got error %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got error %v, want one naming %q", err, tt.want)
			}
		})
	}
}

func TestHealthz(t *testing.T) {
	e := newTestEnv(t, legacyapp.Config{})
	resp, body := e.get(t, newClient(t), "/healthz")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("got status %d, want %d", resp.StatusCode, http.StatusOK)
	}
	if body != "ok" {
		t.Fatalf("got body %q, want %q", body, "ok")
	}
}

func TestUnmatchedRequests(t *testing.T) {
	e := newTestEnv(t, legacyapp.Config{})
	tests := []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/nope", http.StatusNotFound},
		{http.MethodDelete, "/api/me", http.StatusMethodNotAllowed},
		{http.MethodGet, "/logout", http.StatusMethodNotAllowed},
		{http.MethodPost, "/healthz", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			resp, _ := e.do(t, newClient(t), tt.method, tt.path, nil, nil)
			if resp.StatusCode != tt.want {
				t.Fatalf("got status %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
	if logs := e.logs.String(); !strings.Contains(logs, "route=unmatched status=404") {
		t.Errorf("got logs %q, want a line with route=unmatched status=404", logs)
	}
}

func TestRouterIsCrossOriginProtected(t *testing.T) {
	e := newTestEnv(t, legacyapp.Config{})
	c := newClient(t)
	form := url.Values{"username": {"alice"}, "password": {"alice-password"}}
	resp, _ := e.do(t, c, http.MethodPost, "/login", form, http.Header{"Sec-Fetch-Site": {"cross-site"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site login: got status %d, want %d", resp.StatusCode, http.StatusForbidden)
	}
	if ck := e.sessionCookie(t, c); ck != nil {
		t.Fatalf("cross-site login: got a session cookie, want none")
	}
}
