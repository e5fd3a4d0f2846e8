package bridgetest

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/sessions"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// The session-source tests that package bridge_test runs on
// bridge.StoreSource and bridge/redisstore runs on its read-only sources
// (BojSource, RbcervillaSource, NewSource): RunSessionSources here,
// RunSessionCookieFaults and RunSessionUndecodable in sources_faults.go.
// Each package passes its own SourceCases.

// SaveFunc stores values as a session living ttl, for the source of a
// SourceCase, and returns its cookie, raw ID and Redis key, the cookie
// value and ID recorded with e.Secret.
type SaveFunc func(t *testing.T, e *Env, values map[any]any, ttl time.Duration) (ck *http.Cookie, id, key string)

// SourceCase is a session source under test and how to save a session it
// reads.
type SourceCase struct {
	Name string
	// New returns the source for the bridge of e.
	New func(t *testing.T, e *Env) (bridge.SessionSource, error)
	// Save saves a session the source reads.
	Save SaveFunc
	// KnowsTTL: the source reads the session's remaining TTL.
	KnowsTTL bool
	// StoreTellsTTL: the source does not read the TTL, but its store
	// tells it at conversion (StoreSource over redisstore.Store): tokens
	// are bounded by it all the same.
	StoreTellsTTL bool
	// Unsigned: the cookie carries the raw session ID (rbcervilla), so the
	// cases that break or rotate the cookie's signature do not apply.
	Unsigned bool
}

// SaveWith saves sessions with a redisstore.Store (boj/redistore's
// format) on e.RDB, changed by mod if not nil.
func SaveWith(mod func(*redisstore.Config)) SaveFunc {
	return func(t *testing.T, e *Env, values map[any]any, ttl time.Duration) (*http.Cookie, string, string) {
		t.Helper()
		s := NewStore(t, e.RDB, func(c *redisstore.Config) {
			c.Options = &sessions.Options{Path: "/", MaxAge: int(ttl / time.Second), HttpOnly: true}
			if mod != nil {
				mod(c)
			}
		})
		ck, id := SaveSession(t, s, values)
		e.Secret(ck.Value, id)
		return ck, id, s.Key(id)
	}
}

// EnvWithSource is an Env on srv whose bridge reads sessions with sc's
// source, returned too.
func EnvWithSource(t *testing.T, srv *redistest.Server, sc SourceCase) (*Env, bridge.SessionSource) {
	t.Helper()
	var src bridge.SessionSource
	e := NewEnvOn(t, srv, func(e *Env, c *bridge.Config) {
		var err error
		if src, err = sc.New(t, e); err != nil {
			t.Fatalf("%s: new source: %v", sc.Name, err)
		}
		c.Sessions = src
	})
	return e, src
}

// RunSessionSources checks each source on its own and behind a Bridge:
// it loads the session (with its remaining TTL when it knows it), decodes
// its format (gob or JSON, any key prefix), never writes to Redis, bounds
// the converted token by the TTL, and deletes the session. sid is the sid
// a bridge puts in the tokens it mints from a session ID.
func RunSessionSources(t *testing.T, sid func(b *bridge.Bridge, id string) string, cases ...SourceCase) {
	srv := redistest.New(t)
	values := func() map[any]any {
		return map[any]any{"user_id": "42", "username": "ada", "roles": []string{"user", "admin"}}
	}
	for _, sc := range cases {
		t.Run(sc.Name, func(t *testing.T) {
			e, src := EnvWithSource(t, srv, sc)
			const ttl = 10 * time.Minute
			ck, id, key := sc.Save(t, e, values(), ttl)
			before, err := e.RDB.PTTL(context.Background(), key).Result()
			if err != nil || before <= 0 {
				t.Fatalf("PTTL %s: got %v (%v), want > 0", key, before, err)
			}

			// The source itself.
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.AddCookie(ck)
			sess, err := src.Load(r)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if sess.ID != id {
				t.Errorf("Load: ID: got %q, want the session's", sess.ID)
			}
			if got := sess.TTL > 0; got != sc.KnowsTTL {
				t.Errorf("Load: TTL %v known: got %v, want %v", sess.TTL, got, sc.KnowsTTL)
			}
			if sess.TTL > ttl {
				t.Errorf("Load: TTL: got %v, want at most %v", sess.TTL, ttl)
			}

			// Through the middleware.
			ResetRedisStats(t, e.Srv)
			resp := Do(t, e.TS.Client(), http.MethodGet, e.URL("/dual"), nil, ck)
			if resp.StatusCode != 200 {
				t.Fatalf("status: got %v, want 200 (%s)", resp.StatusCode, resp.Body)
			}
			id2 := resp.Identity(t)
			if id2.Source != "session" || id2.Subject != "42" || id2.Name != "ada" || strings.Join(id2.Roles, ",") != "user,admin" {
				t.Errorf("identity: got %+v, want session 42/ada/[user admin]", id2)
			}
			if got := e.Srv.CommandCalls("get"); got != 1 {
				t.Errorf("Redis GETs: got %v, want 1", got)
			}
			if c := resp.Cookie(SessionName); c != nil {
				t.Errorf("legacy cookie rewritten: %v", c)
			}
			if got := RedisCalls(t, e.Srv); got["set"]+got["setex"]+got["expire"]+got["pexpire"] != 0 {
				t.Errorf("Redis writes: got %v, want none", got)
			}
			after, _ := e.RDB.PTTL(context.Background(), key).Result()
			if after > before {
				t.Errorf("session TTL extended: %v then %v", before, after)
			}

			tok := resp.Cookie(bridge.DefaultCookieName)
			if tok == nil {
				t.Fatalf("not converted")
			}
			e.Secret(tok.Value)
			claims := TokenClaims(t, tok.Value)
			if claims.Subject != "42" || claims.SID != sid(e.B, id) {
				t.Errorf("claims: got sub %q sid %q, want 42 and the session's sid", claims.Subject, claims.SID)
			}
			limit := bridge.DefaultTokenTTL
			if sc.KnowsTTL || sc.StoreTellsTTL {
				limit = min(ttl, limit)
			}
			if got := time.Duration(tok.MaxAge) * time.Second; got > limit || got < limit-5*time.Second {
				t.Errorf("Max-Age: got %v, want about %v", got, limit)
			}
			resp = Do(t, e.TS.Client(), http.MethodGet, e.URL("/dual"), nil, e.JWTCookie(tok.Value), ck)
			if got := resp.Identity(t).Source; got != "jwt_cookie" {
				t.Errorf("next request: source: got %v, want jwt_cookie", got)
			}

			// Delete removes the session from the store.
			if err := src.Delete(context.Background(), sess); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if n, _ := e.RDB.Exists(context.Background(), key).Result(); n != 0 {
				t.Errorf("after Delete: key exists")
			}
			r = httptest.NewRequest(http.MethodGet, "/", nil) // gorilla caches sessions per request
			r.AddCookie(ck)
			if _, err := src.Load(r); !errors.Is(err, bridge.ErrSessionNotFound) {
				t.Errorf("Load after Delete: got %v, want ErrSessionNotFound", err)
			}
		})
	}
}
