package bridge_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/sessions"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
	"github.com/sessionbridge/sessionbridge/internal/bridgetest"
)

// TestStoreSourceTokenNeverOutlivesSession replays issue 13's point 2:
// through StoreSource over bridge/redisstore's store (the demo's wiring),
// a session with 5 s left used to be converted into a cookie living the
// whole TokenTTL. The store tells its remaining life once per conversion:
// the token's exp and the cookie's Max-Age stop with the session.
func TestStoreSourceTokenNeverOutlivesSession(t *testing.T) {
	e := bridgetest.NewEnv(t, nil)
	for _, tc := range []struct {
		name    string
		maxAge  int // the session's life, seconds
		wantMax int // the cookie's Max-Age at most
	}{
		{"5 s left", 5, 5},
		{"2 minutes left", 120, 120},
		{"a day left: TokenTTL", 86400, int(bridge.DefaultTokenTTL / time.Second)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := bridgetest.NewStore(t, e.RDB, func(c *redisstore.Config) {
				c.Options = &sessions.Options{Path: "/", MaxAge: tc.maxAge, HttpOnly: true}
			})
			ck, id := bridgetest.SaveSession(t, store, bridgetest.User("1"))
			e.Secret(ck.Value, id)
			resp := bridgetest.Do(t, e.TS.Client(), http.MethodGet, e.URL("/dual"), nil, ck)
			c := resp.Cookie(e.B.Config().CookieName)
			if c == nil {
				t.Fatalf("no JWT cookie set (status %d)", resp.StatusCode)
			}
			e.Secret(c.Value)
			if c.MaxAge <= 0 || c.MaxAge > tc.wantMax || c.MaxAge < tc.wantMax-2 {
				t.Errorf("cookie Max-Age %d, want at most %d (the session's remaining life) and close to it", c.MaxAge, tc.wantMax)
			}
			claims := bridgetest.TokenClaims(t, c.Value)
			if left := time.Until(claims.ExpiresAt.Time); left > time.Duration(tc.wantMax+1)*time.Second {
				t.Errorf("token exp in %v, past the session's %ds", left, tc.maxAge)
			}
		})
	}

	// A session without expiry in Redis: the token lasts TokenTTL.
	ck, id := e.Session(t, bridgetest.User("2"))
	if err := e.RDB.Persist(t.Context(), e.Store.Key(id)).Err(); err != nil {
		t.Fatal(err)
	}
	resp := bridgetest.Do(t, e.TS.Client(), http.MethodGet, e.URL("/dual"), nil, ck)
	if c := resp.Cookie(e.B.Config().CookieName); c == nil || c.MaxAge < int(bridge.DefaultTokenTTL/time.Second)-2 {
		t.Errorf("session without expiry: cookie %v, want one living TokenTTL", bridgetest.CookiesDesc(c))
	}
}
