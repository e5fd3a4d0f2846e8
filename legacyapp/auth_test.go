package legacyapp_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/sessionbridge/sessionbridge/legacyapp"
)

func TestLoginPage(t *testing.T) {
	e := newTestEnv(t, legacyapp.Config{})
	resp, body := e.get(t, newClient(t), "/login")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("got status %d, want %d", resp.StatusCode, http.StatusOK)
	}
	if got, want := resp.Header.Get("Content-Type"), "text/html; charset=utf-8"; got != want {
		t.Errorf("got Content-Type %q, want %q", got, want)
	}
	for _, want := range []string{`<form method="post" action="/login">`, `name="username"`, `name="password"`, `type="password"`} {
		if !strings.Contains(body, want) {
			t.Errorf("got body without %q, want it:\n%s", want, body)
		}
	}
}

func TestLogin(t *testing.T) {
	e := newTestEnv(t, legacyapp.Config{})
	tests := []struct {
		name, username, password string
		wantStatus               int
		wantBody                 string // substring, for failures
	}{
		{"alice", "alice", "alice-password", http.StatusSeeOther, ""},
		{"bob", "bob", "bob-password", http.StatusSeeOther, ""},
		{"wrong password", "alice", "bob-password", http.StatusUnauthorized, "Invalid username or password."},
		{"unknown user", "carol", "alice-password", http.StatusUnauthorized, "Invalid username or password."},
		{"empty", "", "", http.StatusUnauthorized, "Invalid username or password."},
		{"username echoed escaped", "<b>x</b>", "x", http.StatusUnauthorized, `value="&lt;b&gt;x&lt;/b&gt;"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t)
			resp, body := e.login(t, c, tt.username, tt.password)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("got status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			ck := e.sessionCookie(t, c)
			if tt.wantStatus != http.StatusSeeOther {
				if !strings.Contains(body, tt.wantBody) {
					t.Errorf("got body without %q, want it:\n%s", tt.wantBody, body)
				}
				if !strings.Contains(body, `name="password"`) {
					t.Errorf("got body without the login form, want it")
				}
				if ck != nil {
					t.Errorf("got a session cookie, want none")
				}
				return
			}
			if got, want := resp.Header.Get("Location"), "/profile"; got != want {
				t.Errorf("got Location %q, want %q", got, want)
			}
			if ck == nil {
				t.Fatalf("got no session cookie, want one")
			}
			if id := sessionID(t, ck.Value); !e.keyExists(t, id) {
				t.Errorf("got no Redis key for the session, want one")
			}
			set := resp.Cookies()
			if len(set) != 1 {
				t.Fatalf("got %d Set-Cookie, want 1", len(set))
			}
			if got := set[0]; !got.HttpOnly || got.SameSite != http.SameSiteLaxMode || got.Path != "/" {
				t.Errorf("got cookie HttpOnly=%v SameSite=%v Path=%q, want true, Lax, /", got.HttpOnly, got.SameSite, got.Path)
			}
		})
	}
}

// TestLoginIssuesFreshSession checks that logging in never reuses the
// session the request already had.
func TestLoginIssuesFreshSession(t *testing.T) {
	e := newTestEnv(t, legacyapp.Config{})
	tests := []struct {
		name, username, password, wantMe string
	}{
		{"same user again", "alice", "alice-password", `"username":"alice"`},
		{"other user", "bob", "bob-password", `"username":"bob"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t)
			e.mustLogin(t, c, "alice", "alice-password")
			before := e.sessionCookie(t, c)
			oldID := sessionID(t, before.Value)

			e.mustLogin(t, c, tt.username, tt.password)
			after := e.sessionCookie(t, c)
			newID := sessionID(t, after.Value)

			if after.Value == before.Value {
				t.Errorf("got the same cookie value after login, want a new one")
			}
			if newID == oldID {
				t.Errorf("got session ID unchanged after login, want a new one")
			}
			if e.keyExists(t, oldID) {
				t.Errorf("got the old session key still in Redis, want it deleted")
			}
			if !e.keyExists(t, newID) {
				t.Errorf("got no key for the new session, want one")
			}
			if _, body := e.get(t, c, "/api/me"); !strings.Contains(body, tt.wantMe) {
				t.Errorf("got /api/me %s, want %s", body, tt.wantMe)
			}
		})
	}
}

// TestLoginDefeatsSessionFixation plants an attacker's session cookie in the
// victim's browser: after the victim logs in, the attacker's cookie is
// worthless.
func TestLoginDefeatsSessionFixation(t *testing.T) {
	e := newTestEnv(t, legacyapp.Config{})
	attacker := newClient(t)
	e.mustLogin(t, attacker, "bob", "bob-password")
	planted := e.sessionCookie(t, attacker).Value

	victim := newClient(t)
	e.setCookie(t, victim, planted)
	e.mustLogin(t, victim, "alice", "alice-password")
	if got := e.sessionCookie(t, victim).Value; got == planted {
		t.Fatalf("got the planted cookie after login, want a fresh one")
	}
	resp, body := e.get(t, attacker, "/api/me")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("attacker after victim's login: got %d %s, want %d", resp.StatusCode, body, http.StatusUnauthorized)
	}
	if _, body := e.get(t, victim, "/api/me"); !strings.Contains(body, `"username":"alice"`) {
		t.Errorf("victim: got /api/me %s, want alice", body)
	}
}

func TestLoginWithInvalidCookie(t *testing.T) {
	e := newTestEnv(t, legacyapp.Config{})
	c := newClient(t)
	e.setCookie(t, c, "garbage")
	e.mustLogin(t, c, "alice", "alice-password")
	if _, body := e.get(t, c, "/api/me"); !strings.Contains(body, `"username":"alice"`) {
		t.Errorf("got /api/me %s, want alice", body)
	}
}

func TestLogout(t *testing.T) {
	e := newTestEnv(t, legacyapp.Config{})
	tests := []struct {
		name         string
		header       http.Header
		wantStatus   int
		wantLocation string
	}{
		{"browser", nil, http.StatusSeeOther, "/login"},
		{"json client", http.Header{"Accept": {"application/json"}}, http.StatusNoContent, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t)
			e.mustLogin(t, c, "alice", "alice-password")
			old := e.sessionCookie(t, c).Value
			id := sessionID(t, old)

			resp, _ := e.do(t, c, http.MethodPost, "/logout", url.Values{}, tt.header)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("got status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if got := resp.Header.Get("Location"); got != tt.wantLocation {
				t.Errorf("got Location %q, want %q", got, tt.wantLocation)
			}
			if e.keyExists(t, id) {
				t.Errorf("got the session key still in Redis, want it deleted")
			}
			if ck := e.sessionCookie(t, c); ck != nil {
				t.Errorf("got the session cookie still in the jar, want it expired")
			}

			resp, body := e.get(t, c, "/api/me")
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `"reason":"no_credentials"`) {
				t.Errorf("after logout: got %d %s, want 401 no_credentials", resp.StatusCode, body)
			}
			// The old cookie, replayed, names a session that is gone.
			e.setCookie(t, c, old)
			resp, body = e.get(t, c, "/api/me")
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `"reason":"session_unknown"`) {
				t.Errorf("old cookie replayed: got %d %s, want 401 session_unknown", resp.StatusCode, body)
			}
		})
	}
}

func TestLogoutWithoutSession(t *testing.T) {
	e := newTestEnv(t, legacyapp.Config{})
	resp, _ := e.do(t, newClient(t), http.MethodPost, "/logout", nil, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("got status %d, want %d", resp.StatusCode, http.StatusSeeOther)
	}
}
