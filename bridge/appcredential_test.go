package bridge

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sessionbridge/sessionbridge/internal/webtest"
)

// TestAppCredentials replays issue 14's first break: the app's own API
// keys (a bearer that is no JWT, another Authorization scheme, a header
// the app declares) reach the app untouched in every mode, counted app,
// while a JWT-shaped bearer keeps its strictness and a JWT or session
// still authenticates first.
func TestAppCredentials(t *testing.T) {
	e := newTestEnv(t, func(_ *testEnv, c *Config) {
		c.AppCredential = func(r *http.Request) bool { return r.Header.Get("X-API-Key") != "" || r.URL.Query().Has("api_key") }
	})
	sess, _ := e.session(t, testUser("1"))
	jwt := e.token(t, "2", nil)
	apiKey := "ak_alice_0f1e2d3c4b5a69788796a5b4"
	e.secret(apiKey)
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	tests := []struct {
		name    string
		path    string
		hdr     http.Header
		cookies []*http.Cookie
		status  int
		source  string // the identity the handler sees ("": none)
	}{
		{"bearer API key, dual", "/dual", hdr("Authorization", "Bearer "+apiKey), nil, 200, ""},
		{"bearer API key, jwt", "/jwt", hdr("Authorization", "Bearer "+apiKey), nil, 200, ""},
		{"bearer API key, legacy", "/legacy", hdr("Authorization", "Bearer "+apiKey), nil, 200, ""},
		{"lower-case bearer API key, jwt", "/jwt", hdr("Authorization", "bearer "+apiKey), nil, 200, ""},
		{"Basic, jwt", "/jwt", hdr("Authorization", "Basic YWxpY2U6cHc="), nil, 200, ""},
		{"token scheme, dual", "/dual", hdr("Authorization", "Token "+apiKey), nil, 200, ""},
		{"declared header, jwt", "/jwt", hdr("X-API-Key", apiKey), nil, 200, ""},
		{"declared query parameter, jwt", "/jwt?api_key=" + apiKey, nil, nil, 200, ""},
		{"JWT-shaped garbage, dual", "/dual", hdr("Authorization", "Bearer a.b.c"), nil, 401, ""},
		{"empty bearer, jwt", "/jwt", hdr("Authorization", "Bearer "), nil, 401, ""},
		{"API key and session, dual", "/dual", hdr("Authorization", "Bearer "+apiKey), []*http.Cookie{sess}, 200, "session"},
		{"API key and JWT cookie, jwt", "/jwt", hdr("X-API-Key", apiKey), []*http.Cookie{e.jwtCookie(jwt)}, 200, "jwt_cookie"},
		{"API key and session, jwt", "/jwt", hdr("Authorization", "Bearer "+apiKey), []*http.Cookie{sess}, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+tt.path, tt.hdr, tt.cookies...)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tt.status, resp.Body)
			}
			if id := identityOf(t, resp); tt.status == 200 && id.Source != tt.source {
				t.Errorf("identity source %q, want %q", id.Source, tt.source)
			}
		})
	}
	wantRequests(t, e.b, "/jwt", map[Mode]map[Source]uint64{JWT: {SourceApp: 6, SourceJWTCookie: 1, SourceRejected: 0, SourceAnonymous: 1}})
	wantRequests(t, e.b, "/dual", map[Mode]map[Source]uint64{Dual: {SourceApp: 2, SourceSession: 1, SourceRejected: 1}})
	wantRequests(t, e.b, "/legacy", map[Mode]map[Source]uint64{Legacy: {SourceApp: 1}})
	wantReasons(t, e.b, "/jwt", map[Reason]uint64{ReasonSessionOnJWT: 1, ReasonNoCredentials: 1})
}

// TestGuestSessions: a live session that names no user under the mapping
// (a guest's cart, or a mapping that misses the app's key) is counted per
// route, logged once with its keys and never its values, and authenticates
// nobody; a mapping that fails is a counted rejection.
func TestGuestSessions(t *testing.T) {
	var failing atomic.Bool
	e := newTestEnv(t, func(_ *testEnv, c *Config) {
		c.ClaimsFromSession = func(ctx context.Context, v map[any]any) (LocalUser, error) {
			if failing.Load() {
				return LocalUser{}, errors.New("user lookup: database down")
			}
			return DefaultClaims(ctx, v)
		}
	})
	guest, _ := e.session(t, map[any]any{"cart": []string{"tea"}, "account_no": "secret-value-4711"})
	for range 3 {
		resp := webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/legacy", nil, guest)
		if id := identityOf(t, resp); resp.StatusCode != 200 || id.Has {
			t.Fatalf("guest session on a legacy route: %d %+v", resp.StatusCode, id)
		}
	}
	if resp := webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/dual", nil, guest); resp.StatusCode != 401 {
		t.Errorf("guest session on a dual route: %d, want 401", resp.StatusCode)
	}
	if rc := routeCounts(t, e.b, "/legacy"); rc.Guests != 3 || rc.Requests().Of(SourceAnonymous) != 3 {
		t.Errorf("/legacy: %d guest sessions, %d anonymous, want 3 and 3", rc.Guests, rc.Requests().Of(SourceAnonymous))
	}
	if rc := routeCounts(t, e.b, "/dual"); rc.Guests != 1 {
		t.Errorf("/dual: %d guest sessions, want 1", rc.Guests)
	}
	logs := e.logs.String()
	if n := strings.Count(logs, "names no user"); n != 2 {
		t.Errorf("guest sessions logged %d times, want once per route (2):\n%s", n, logs)
	}
	if !strings.Contains(logs, "account_no") || !strings.Contains(logs, "cart") || strings.Contains(logs, "secret-value-4711") || strings.Contains(logs, "tea") {
		t.Errorf("the log names the session's keys, never their values:\n%s", logs)
	}

	// A mapping that fails: counted with its reason, logged, nobody.
	failing.Store(true)
	user, _ := e.session(t, testUser("1"))
	if resp := webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/legacy", nil, user); resp.StatusCode != 200 || identityOf(t, resp).Has {
		t.Errorf("failing mapping on a legacy route: %d", resp.StatusCode)
	}
	wantReasons(t, e.b, "/legacy", map[Reason]uint64{ReasonSessionClaims: 1})
	if !strings.Contains(e.logs.String(), "database down") {
		t.Errorf("the mapping's error is not logged")
	}
}
