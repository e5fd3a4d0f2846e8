package legacyapp_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/gorilla/sessions"

	"github.com/sessionbridge/sessionbridge/legacyapp"
)

func TestAPIMe(t *testing.T) {
	e := newTestEnv(t, legacyapp.Config{})
	tests := []struct {
		username, password, want string
	}{
		{"alice", "alice-password", `{"user_id":"1","username":"alice","roles":["user"],"auth_source":"session"}`},
		{"bob", "bob-password", `{"user_id":"2","username":"bob","roles":["user","admin"],"auth_source":"session"}`},
	}
	for _, tt := range tests {
		t.Run(tt.username, func(t *testing.T) {
			c := newClient(t)
			e.mustLogin(t, c, tt.username, tt.password)
			resp, body := e.get(t, c, "/api/me")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("got status %d, want %d", resp.StatusCode, http.StatusOK)
			}
			if got, want := resp.Header.Get("Content-Type"), "application/json"; got != want {
				t.Errorf("got Content-Type %q, want %q", got, want)
			}
			if got := strings.TrimSpace(body); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

type orderJSON struct {
	ID         string `json:"id"`
	Item       string `json:"item"`
	Quantity   int    `json:"quantity"`
	TotalCents int    `json:"total_cents"`
	Status     string `json:"status"`
	PlacedAt   string `json:"placed_at"`
}

func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return v
}

func TestAPIOrders(t *testing.T) {
	e := newTestEnv(t, legacyapp.Config{})
	tests := []struct {
		username, password string
		want               []string
	}{
		{"alice", "alice-password", []string{"1001", "1002"}},
		{"bob", "bob-password", []string{"2001", "2002"}},
	}
	for _, tt := range tests {
		t.Run(tt.username, func(t *testing.T) {
			c := newClient(t)
			e.mustLogin(t, c, tt.username, tt.password)
			resp, body := e.get(t, c, "/api/orders")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("got status %d, want %d", resp.StatusCode, http.StatusOK)
			}
			got := decode[struct{ Orders []orderJSON }](t, body)
			var ids []string
			for _, o := range got.Orders {
				ids = append(ids, o.ID)
				if o.Item == "" || o.Quantity < 1 || o.TotalCents < 1 || o.Status == "" || o.PlacedAt == "" {
					t.Errorf("got incomplete order %+v, want every field set", o)
				}
			}
			if !slices.Equal(ids, tt.want) {
				t.Errorf("got order IDs %v, want %v", ids, tt.want)
			}
			// Deterministic: the same answer twice.
			if _, again := e.get(t, c, "/api/orders"); again != body {
				t.Errorf("got %s, then %s, want the same", body, again)
			}
		})
	}
}

func TestAPIOrder(t *testing.T) {
	e := newTestEnv(t, legacyapp.Config{})
	alice, bob := newClient(t), newClient(t)
	e.mustLogin(t, alice, "alice", "alice-password")
	e.mustLogin(t, bob, "bob", "bob-password")
	tests := []struct {
		name       string
		client     *http.Client
		id         string
		wantStatus int
	}{
		{"alice's own", alice, "1002", http.StatusOK},
		{"bob's, as alice", alice, "2001", http.StatusNotFound},
		{"missing", alice, "9999", http.StatusNotFound},
		{"bob's own", bob, "2001", http.StatusOK},
		{"alice's, as bob", bob, "1001", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.get(t, tt.client, "/api/orders/"+tt.id)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("got status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if got, want := resp.Header.Get("Content-Type"), "application/json"; got != want {
				t.Errorf("got Content-Type %q, want %q", got, want)
			}
			if tt.wantStatus == http.StatusOK {
				if got := decode[orderJSON](t, body); got.ID != tt.id {
					t.Errorf("got order %q, want %q", got.ID, tt.id)
				}
				return
			}
			want := `{"error":"not_found","reason":"no such order"}`
			if got := strings.TrimSpace(body); got != want {
				t.Errorf("got %s, want %s", got, want)
			}
		})
	}
}

func TestAdminUsers(t *testing.T) {
	e := newTestEnv(t, legacyapp.Config{})
	tests := []struct {
		username, password string
		wantStatus         int
		want               string
	}{
		{"alice", "alice-password", http.StatusForbidden, `{"error":"forbidden","reason":"role admin required"}`},
		{"bob", "bob-password", http.StatusOK, `{"users":[{"id":"1","username":"alice","roles":["user"]},{"id":"2","username":"bob","roles":["user","admin"]}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.username, func(t *testing.T) {
			c := newClient(t)
			e.mustLogin(t, c, tt.username, tt.password)
			resp, body := e.get(t, c, "/admin/users")
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("got status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if got := strings.TrimSpace(body); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestAPIUnauthenticated(t *testing.T) {
	e := newTestEnv(t, legacyapp.Config{})
	gone := newClient(t)
	e.mustLogin(t, gone, "alice", "alice-password")
	goneCookie := e.sessionCookie(t, gone).Value
	e.do(t, gone, http.MethodPost, "/logout", nil, nil)

	credentials := []struct {
		name, cookie, reason string
	}{
		{"no cookie", "", "no_credentials"},
		{"invalid cookie", "garbage", "session_invalid"},
		{"cookie of a deleted session", goneCookie, "session_unknown"},
	}
	for _, path := range []string{"/api/me", "/api/orders", "/api/orders/1001", "/admin/users"} {
		for _, cred := range credentials {
			t.Run(path+"/"+cred.name, func(t *testing.T) {
				c := newClient(t)
				if cred.cookie != "" {
					e.setCookie(t, c, cred.cookie)
				}
				resp, body := e.get(t, c, path)
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("got status %d, want %d", resp.StatusCode, http.StatusUnauthorized)
				}
				if got, want := resp.Header.Get("Content-Type"), "application/json"; got != want {
					t.Errorf("got Content-Type %q, want %q", got, want)
				}
				want := fmt.Sprintf(`{"error":"unauthenticated","reason":%q}`, cred.reason)
				if got := strings.TrimSpace(body); got != want {
					t.Errorf("got %s, want %s", got, want)
				}
			})
		}
	}
}

// TestRedisDown checks that a session that cannot be read is never taken
// for a logged-out user: the answer is 503 with Retry-After, not 401 or a
// redirect to the login page.
func TestRedisDown(t *testing.T) {
	faults := []struct {
		name   string
		inject func(e *testEnv)
	}{
		{"killed", func(e *testEnv) { e.redis.Kill() }},
		{"hung", func(e *testEnv) { e.redis.Pause() }},
	}
	requests := []struct {
		name, method, path string
		form               map[string][]string
		wantJSON           bool
	}{
		{"api me", http.MethodGet, "/api/me", nil, true},
		{"api orders", http.MethodGet, "/api/orders", nil, true},
		{"admin users", http.MethodGet, "/admin/users", nil, true},
		{"profile", http.MethodGet, "/profile", nil, false},
		{"cart", http.MethodGet, "/cart", nil, false},
		{"add to cart", http.MethodPost, "/cart/items", map[string][]string{"item": {"tea"}}, false},
		{"login", http.MethodPost, "/login", map[string][]string{"username": {"alice"}, "password": {"alice-password"}}, false},
		{"logout", http.MethodPost, "/logout", map[string][]string{}, false},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			e := newTestEnv(t, legacyapp.Config{})
			c := newClient(t)
			e.mustLogin(t, c, "bob", "bob-password")
			f.inject(e)
			for _, tt := range requests {
				t.Run(tt.name, func(t *testing.T) {
					resp, body := e.do(t, c, tt.method, tt.path, tt.form, nil)
					if resp.StatusCode != http.StatusServiceUnavailable {
						t.Fatalf("got status %d %s, want %d", resp.StatusCode, body, http.StatusServiceUnavailable)
					}
					if got, want := resp.Header.Get("Retry-After"), "1"; got != want {
						t.Errorf("got Retry-After %q, want %q", got, want)
					}
					if !tt.wantJSON {
						if got := resp.Header.Get("Content-Type"); !strings.HasPrefix(got, "text/plain") {
							t.Errorf("got Content-Type %q, want text/plain", got)
						}
						return
					}
					want := `{"error":"unavailable","reason":"session store unavailable"}`
					if got := strings.TrimSpace(body); got != want {
						t.Errorf("got %s, want %s", got, want)
					}
				})
			}
			// The session survives in the jar: nothing was logged out.
			if e.sessionCookie(t, c) == nil {
				t.Errorf("got the session cookie dropped, want it kept")
			}
		})
	}
}

// refusingStore fails the test when the app touches it.
type refusingStore struct{ t *testing.T }

func (s refusingStore) Get(*http.Request, string) (*sessions.Session, error) {
	s.t.Error("the session store was read, want the API to use only Config.CurrentUser")
	return nil, errors.New("refused")
}

func (s refusingStore) New(*http.Request, string) (*sessions.Session, error) {
	s.t.Error("the session store was read, want the API to use only Config.CurrentUser")
	return nil, errors.New("refused")
}

func (s refusingStore) Save(*http.Request, http.ResponseWriter, *sessions.Session) error {
	s.t.Error("the session store was written, want the API to use only Config.CurrentUser")
	return errors.New("refused")
}

// TestCurrentUserIsPluggable checks that the JSON API identifies its caller
// only through Config.CurrentUser, as a JWT-based replacement will.
func TestCurrentUserIsPluggable(t *testing.T) {
	bob := legacyapp.Principal{UserID: "2", Username: "bob", Roles: []string{"user", "admin"}, Source: "jwt_cookie"}
	tests := []struct {
		name       string
		principal  legacyapp.Principal
		err        error
		path       string
		wantStatus int
		want       string // whole body, or a prefix ending in "…"
	}{
		{"me", bob, nil, "/api/me", http.StatusOK, `{"user_id":"2","username":"bob","roles":["user","admin"],"auth_source":"jwt_cookie"}`},
		{"orders", bob, nil, "/api/orders", http.StatusOK, `{"orders":[{"id":"2001"…`},
		{"order", bob, nil, "/api/orders/2002", http.StatusOK, `{"id":"2002"…`},
		{"admin", bob, nil, "/admin/users", http.StatusOK, `{"users":[…`},
		{"nil roles", legacyapp.Principal{UserID: "7", Username: "idp-user", Source: "jwt_bearer"}, nil, "/api/me", http.StatusOK, `{"user_id":"7","username":"idp-user","roles":[],"auth_source":"jwt_bearer"}`},
		{"unknown user has no orders", legacyapp.Principal{UserID: "7"}, nil, "/api/orders", http.StatusOK, `{"orders":[]}`},
		{"unauthenticated with reason", legacyapp.Principal{}, &legacyapp.UnauthenticatedError{Reason: "token_expired"}, "/api/me", http.StatusUnauthorized, `{"error":"unauthenticated","reason":"token_expired"}`},
		{"unauthenticated wrapped", legacyapp.Principal{}, fmt.Errorf("jwt: %w", legacyapp.ErrUnauthenticated), "/api/orders", http.StatusUnauthorized, `{"error":"unauthenticated","reason":"unauthenticated"}`},
		{"unavailable", legacyapp.Principal{}, fmt.Errorf("jwks: %w", legacyapp.ErrUnavailable), "/api/me", http.StatusServiceUnavailable, `{"error":"unavailable","reason":"session store unavailable"}`},
		{"other error", legacyapp.Principal{}, errors.New("boom"), "/admin/users", http.StatusInternalServerError, `{"error":"internal","reason":"internal error"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t, legacyapp.Config{
				Store: refusingStore{t},
				CurrentUser: func(*http.Request) (legacyapp.Principal, error) {
					return tt.principal, tt.err
				},
			})
			resp, body := e.get(t, newClient(t), tt.path)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("got status %d %s, want %d", resp.StatusCode, body, tt.wantStatus)
			}
			got := strings.TrimSpace(body)
			if prefix, ok := strings.CutSuffix(tt.want, "…"); ok {
				if !strings.HasPrefix(got, prefix) {
					t.Errorf("got %s, want a body starting %s", got, prefix)
				}
			} else if got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}
