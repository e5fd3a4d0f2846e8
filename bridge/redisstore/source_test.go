package redisstore_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/gob"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
	"github.com/sessionbridge/sessionbridge/internal/bridgetest"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// The read-only session sources (BojSource, RbcervillaSource, NewSource)
// on their own and behind a Bridge. bridge/session_test.go tests the
// app's own store through bridge.StoreSource the same way.

// mSourceCase builds a session source on e and saves a session for it.
type mSourceCase struct {
	name string
	// source returns the source for the bridge.
	source func(t *testing.T, e *bridgetest.Env) bridge.SessionSource
	// save stores values as a session living ttl and returns its cookie,
	// raw ID and Redis key.
	save func(t *testing.T, e *bridgetest.Env, values map[any]any, ttl time.Duration) (*http.Cookie, string, string)
	// knowsTTL: the source reads the session's remaining TTL.
	knowsTTL bool
}

// mSaveWith saves sessions with a Store (boj/redistore's format) changed
// by mod.
func mSaveWith(mod func(*redisstore.Config)) func(t *testing.T, e *bridgetest.Env, values map[any]any, ttl time.Duration) (*http.Cookie, string, string) {
	return func(t *testing.T, e *bridgetest.Env, values map[any]any, ttl time.Duration) (*http.Cookie, string, string) {
		t.Helper()
		s := bridgetest.NewStore(t, e.RDB, func(c *redisstore.Config) {
			c.Options = &sessions.Options{Path: "/", MaxAge: int(ttl / time.Second), HttpOnly: true}
			if mod != nil {
				mod(c)
			}
		})
		ck, id := bridgetest.SaveSession(t, s, values)
		e.Secret(ck.Value, id)
		return ck, id, s.Key(id)
	}
}

// mSaveRbcervilla saves a session in rbcervilla/redisstore's format.
func mSaveRbcervilla(t *testing.T, e *bridgetest.Env, values map[any]any, ttl time.Duration) (*http.Cookie, string, string) {
	t.Helper()
	ck, id := bridgetest.SaveRbcervillaSession(t, e.RDB, values, ttl)
	e.Secret(ck.Value, id)
	return ck, id, "session:" + id
}

func mJSONStore(c *redisstore.Config) { c.Serializer = redisstore.JSONSerializer{} }

func mPrefixStore(c *redisstore.Config) { c.KeyPrefix = "app:sess:" }

var (
	mBoj = mSourceCase{
		name: "boj",
		source: func(t *testing.T, e *bridgetest.Env) bridge.SessionSource {
			s, err := redisstore.BojSource(e.RDB, bridgetest.SessionName, bridgetest.KeyPairs()...)
			if err != nil {
				t.Fatalf("BojSource: %v", err)
			}
			return s
		},
		save:     mSaveWith(nil),
		knowsTTL: true,
	}
	mRedisJSON = mSourceCase{
		name: "redis json",
		source: func(t *testing.T, e *bridgetest.Env) bridge.SessionSource {
			s, err := redisstore.NewSource(redisstore.SourceConfig{Client: e.RDB, CookieName: bridgetest.SessionName, KeyPrefix: "session_",
				KeyPairs: bridgetest.KeyPairs(), Serializer: redisstore.JSONSerializer{}})
			if err != nil {
				t.Fatalf("NewSource: %v", err)
			}
			return s
		},
		save:     mSaveWith(mJSONStore),
		knowsTTL: true,
	}
	mRedisPrefix = mSourceCase{
		name: "redis prefix",
		source: func(t *testing.T, e *bridgetest.Env) bridge.SessionSource {
			s, err := redisstore.NewSource(redisstore.SourceConfig{Client: e.RDB, CookieName: bridgetest.SessionName, KeyPrefix: "app:sess:",
				KeyPairs: bridgetest.KeyPairs()})
			if err != nil {
				t.Fatalf("NewSource: %v", err)
			}
			return s
		},
		save:     mSaveWith(mPrefixStore),
		knowsTTL: true,
	}
	mRbcervilla = mSourceCase{
		name: "rbcervilla",
		source: func(t *testing.T, e *bridgetest.Env) bridge.SessionSource {
			s, err := redisstore.RbcervillaSource(e.RDB, bridgetest.SessionName)
			if err != nil {
				t.Fatalf("RbcervillaSource: %v", err)
			}
			return s
		},
		save:     mSaveRbcervilla,
		knowsTTL: true,
	}
)

// mEnvWithSource is a test environment on srv whose bridge reads sessions
// with sc's source, returned too.
func mEnvWithSource(t *testing.T, srv *redistest.Server, sc mSourceCase) (*bridgetest.Env, bridge.SessionSource) {
	t.Helper()
	var src bridge.SessionSource
	e := bridgetest.NewEnvOn(t, srv, func(e *bridgetest.Env, c *bridge.Config) {
		src = sc.source(t, e)
		c.Sessions = src
	})
	return e, src
}

// mTamper changes one character in the middle of a cookie value.
func mTamper(v string) string {
	i := len(v) / 2
	ch := byte('A')
	if v[i] == 'A' {
		ch = 'B'
	}
	return v[:i] + string(ch) + v[i+1:]
}

// mExpiredToken is a token of e's key for "1" that expired 5 minutes ago.
func mExpiredToken(t *testing.T, e *bridgetest.Env) string {
	t.Helper()
	now := e.Clock.Now()
	return e.Token(t, "1", func(c *bridge.Claims) {
		c.IssuedAt = jwt.NewNumericDate(now.Add(-20 * time.Minute))
		c.NotBefore = c.IssuedAt
		c.ExpiresAt = jwt.NewNumericDate(now.Add(-5 * time.Minute))
	})
}

// mSID is the sid of the tokens minted from session id by a Bridge whose
// Config().SIDKey is key: the first 18 bytes of the ID's HMAC-SHA256,
// base64url (the bridge's sidHash, which package bridge_test reaches
// through bridge.MSIDHash; this package cannot).
func mSID(key []byte, id string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

// TestSessionSources: each source loads the session with its remaining
// TTL, decodes its format (gob or JSON, any key prefix), never writes to
// Redis, bounds the converted token by the TTL, and deletes the session.
func TestSessionSources(t *testing.T) {
	srv := redistest.New(t)
	values := func() map[any]any {
		return map[any]any{"user_id": "42", "username": "ada", "roles": []string{"user", "admin"}}
	}
	for _, sc := range []mSourceCase{mBoj, mRedisJSON, mRedisPrefix, mRbcervilla} {
		t.Run(sc.name, func(t *testing.T) {
			e, src := mEnvWithSource(t, srv, sc)
			const ttl = 10 * time.Minute
			ck, id, key := sc.save(t, e, values(), ttl)
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
			if got := sess.TTL > 0; got != sc.knowsTTL {
				t.Errorf("Load: TTL %v known: got %v, want %v", sess.TTL, got, sc.knowsTTL)
			}
			if sess.TTL > ttl {
				t.Errorf("Load: TTL: got %v, want at most %v", sess.TTL, ttl)
			}

			// Through the middleware.
			bridgetest.ResetRedisStats(t, e.Srv)
			resp := bridgetest.Do(t, e.TS.Client(), http.MethodGet, e.URL("/dual"), nil, ck)
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
			if c := resp.Cookie(bridgetest.SessionName); c != nil {
				t.Errorf("legacy cookie rewritten: %v", c)
			}
			if got := bridgetest.RedisCalls(t, e.Srv); got["set"]+got["setex"]+got["expire"]+got["pexpire"] != 0 {
				t.Errorf("Redis writes: got %v, want none", got)
			}
			after, _ := e.RDB.PTTL(context.Background(), key).Result()
			if after > before {
				t.Errorf("session TTL extended: %v then %v", before, after)
			}

			tok := resp.Cookie("id_token")
			if tok == nil {
				t.Fatalf("not converted")
			}
			e.Secret(tok.Value)
			claims := bridgetest.TokenClaims(t, tok.Value)
			if claims.Subject != "42" || claims.SID != mSID(e.B.Config().SIDKey, id) {
				t.Errorf("claims: got sub %q sid %q, want 42 and the session's sid", claims.Subject, claims.SID)
			}
			limit := bridge.DefaultTokenTTL
			if sc.knowsTTL {
				limit = ttl
			}
			if got := time.Duration(tok.MaxAge) * time.Second; got > limit || got < limit-5*time.Second {
				t.Errorf("Max-Age: got %v, want about %v", got, limit)
			}
			resp = bridgetest.Do(t, e.TS.Client(), http.MethodGet, e.URL("/dual"), nil, e.JWTCookie(tok.Value), ck)
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
			r = httptest.NewRequest(http.MethodGet, "/", nil)
			r.AddCookie(ck)
			if _, err := src.Load(r); !errors.Is(err, bridge.ErrSessionNotFound) {
				t.Errorf("Load after Delete: got %v, want ErrSessionNotFound", err)
			}
		})
	}
}

// TestSessionCookieFaults: legacy cookies that fail verification or name
// no session are refused (401 where auth is needed) and never converted;
// a cookie signed with a previous key pair still loads (key rotation).
func TestSessionCookieFaults(t *testing.T) {
	srv := redistest.New(t)
	signed := func(keyPairs ...[]byte) func(t *testing.T, id string) string {
		return func(t *testing.T, id string) string {
			v, err := securecookie.EncodeMulti(bridgetest.SessionName, id, securecookie.CodecsFromPairs(keyPairs...)...)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			return v
		}
	}
	tests := []struct {
		name string
		// value returns the cookie value for the live session id (the
		// session's own cookie value is ck).
		value  func(t *testing.T, id, ck string) string
		raw    bool // send the value as a raw Cookie header
		delete bool // delete the session's key first
		jwt    bool // also send an expired JWT cookie
		signed bool // only for sources with signed cookies
		status int
		reason bridge.Reason
	}{
		{name: "valid", value: func(_ *testing.T, _, ck string) string { return ck }, status: 200},
		{name: "bad MAC", signed: true, value: func(_ *testing.T, _, ck string) string { return mTamper(ck) },
			status: 401, reason: bridge.ReasonSessionInvalid},
		{name: "unknown key", signed: true, value: func(t *testing.T, id, _ string) string {
			return signed(bridgetest.UnknownHashKey, nil)(t, id)
		}, status: 401, reason: bridge.ReasonSessionInvalid},
		{name: "previous key", signed: true, value: func(t *testing.T, id, _ string) string {
			return signed(bridgetest.OldHashKey, nil)(t, id)
		}, status: 200},
		{name: "over 4096 bytes", value: func(_ *testing.T, _, ck string) string {
			return ck + strings.Repeat("A", 4097-len(ck))
		}, status: 401, reason: bridge.ReasonSessionInvalid},
		{name: "unparsable", raw: true, value: func(_ *testing.T, _, ck string) string { return ck[:4] + `\` + ck[4:] },
			status: 401, reason: bridge.ReasonSessionInvalid},
		{name: "key gone", delete: true, jwt: true, value: func(_ *testing.T, _, ck string) string { return ck },
			status: 401, reason: bridge.ReasonSessionUnknown},
		{name: "unknown id", value: func(t *testing.T, id, ck string) string {
			if ck == id { // rbcervilla: the raw ID
				return redisstore.NewID()
			}
			return signed(bridgetest.HashKey, bridgetest.BlockKey)(t, redisstore.NewID())
		}, status: 401, reason: bridge.ReasonSessionUnknown},
	}
	for _, sc := range []mSourceCase{mBoj, mRbcervilla} {
		for _, tt := range tests {
			if tt.signed && sc.name == "rbcervilla" {
				continue
			}
			t.Run(sc.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				e, _ := mEnvWithSource(t, srv, sc)
				ck, id, key := sc.save(t, e, bridgetest.User("1"), 10*time.Minute)
				if tt.delete {
					if err := e.RDB.Del(context.Background(), key).Err(); err != nil {
						t.Fatal(err)
					}
				}
				v := tt.value(t, id, ck.Value)
				e.Secret(v)
				hdr := http.Header{}
				var cookies []*http.Cookie
				if tt.raw {
					hdr.Set("Cookie", bridgetest.SessionName+"="+v)
				} else {
					cookies = append(cookies, &http.Cookie{Name: bridgetest.SessionName, Value: v})
				}
				if tt.jwt {
					cookies = append(cookies, e.JWTCookie(mExpiredToken(t, e)))
				}

				for _, route := range []string{"/legacy", "/dual"} {
					resp := bridgetest.Do(t, e.TS.Client(), http.MethodGet, e.URL(route), hdr, cookies...)
					status := tt.status
					if route == "/legacy" {
						status = 200
					}
					if resp.StatusCode != status {
						t.Errorf("%s: status: got %v, want %v (%s)", route, resp.StatusCode, status, resp.Body)
						continue
					}
					var set []*http.Cookie
					for _, c := range resp.Cookies() {
						e.Secret(c.Value)
						if c.Name == "id_token" {
							set = append(set, c)
						}
					}
					switch {
					case route == "/legacy":
						if len(resp.Cookies()) != 0 {
							t.Errorf("%s: Set-Cookie: got %v, want none", route, bridgetest.CookiesDesc(resp.Cookies()...))
						}
					case tt.status == 200:
						if len(set) != 1 || set[0].MaxAge <= 0 {
							t.Errorf("%s: id_token: got %v, want a minted cookie", route, bridgetest.CookiesDesc(set...))
						}
					case tt.jwt:
						if len(set) != 1 || set[0].MaxAge >= 0 {
							t.Errorf("%s: id_token: got %v, want one clearing Set-Cookie", route, bridgetest.CookiesDesc(set...))
						}
					default:
						if len(resp.Cookies()) != 0 {
							t.Errorf("%s: Set-Cookie: got %v, want none", route, bridgetest.CookiesDesc(resp.Cookies()...))
						}
					}
					if resp.StatusCode == 401 {
						if got := resp.Reason(); got != tt.reason.String() {
							t.Errorf("%s: reason: got %q, want %q", route, got, tt.reason)
						}
					}
					mode := bridgetest.Routes[route]
					source := bridge.SourceSession
					reasons := map[bridge.Reason]uint64{}
					if tt.status != 200 {
						source = bridge.SourceRejected
						reasons[tt.reason] = 1
					}
					if tt.jwt {
						reasons[bridge.ReasonCookieExpired] = 1
					}
					bridgetest.WantRequests(t, e.B, route, map[bridge.Mode]map[bridge.Source]uint64{mode: {source: 1}})
					bridgetest.WantReasons(t, e.B, route, reasons)
				}
				// The session (when it was there) is left alone.
				if !tt.delete {
					if n, _ := e.RDB.Exists(context.Background(), key).Result(); n != 1 {
						t.Errorf("session key: got %v, want it kept", n)
					}
				}
			})
		}
	}
}

// mGhostCart is gob-encoded under a registered name that is then changed
// in the bytes, giving a session value of a type nobody registered.
type mGhostCart struct{ Items []string }

var mRegisterGhost sync.Once

// mUnregisteredGob returns gob of values plus a value of the unregistered
// type "sbtest.GhostZ".
func mUnregisteredGob(t *testing.T, values map[any]any) []byte {
	t.Helper()
	mRegisterGhost.Do(func() { gob.RegisterName("sbtest.GhostA", mGhostCart{}) })
	values["cart"] = mGhostCart{Items: []string{"book"}}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(values); err != nil {
		t.Fatalf("gob: %v", err)
	}
	return bytes.ReplaceAll(buf.Bytes(), []byte("sbtest.GhostA"), []byte("sbtest.GhostZ"))
}

// TestSessionUndecodable: stored values that cannot be decoded answer 500
// on dual with session_undecodable, and the logs name the missing type.
func TestSessionUndecodable(t *testing.T) {
	srv := redistest.New(t)
	tests := []struct {
		sc       mSourceCase
		data     func(t *testing.T) []byte
		wantLogs []string
	}{
		{sc: mBoj, data: func(t *testing.T) []byte { return mUnregisteredGob(t, bridgetest.User("1")) },
			wantLogs: []string{"sbtest.GhostZ", "gob.Register"}},
		{sc: mRbcervilla, data: func(t *testing.T) []byte { return mUnregisteredGob(t, bridgetest.User("1")) },
			wantLogs: []string{"sbtest.GhostZ", "gob.Register"}},
		{sc: mRedisJSON, data: func(*testing.T) []byte { return []byte("{not json") },
			wantLogs: []string{"JSON decode"}},
	}
	for _, tt := range tests {
		name := tt.sc.name + "/" + strings.ReplaceAll(tt.wantLogs[0], " ", "_")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e, _ := mEnvWithSource(t, srv, tt.sc)
			ck, _, key := tt.sc.save(t, e, bridgetest.User("1"), 10*time.Minute)
			if err := e.RDB.Set(context.Background(), key, tt.data(t), 10*time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			routes := []struct {
				route  string
				status int
				source bridge.Source
				reason bridge.Reason
			}{
				{"/dual", 500, bridge.SourceRejected, bridge.ReasonSessionUndecodable},
				{"/legacy", 200, bridge.SourceRejected, bridge.ReasonSessionUndecodable},
				{"/jwt", 401, bridge.SourceRejected, bridge.ReasonSessionOnJWT},
			}
			for _, r := range routes {
				resp := bridgetest.Do(t, e.TS.Client(), http.MethodGet, e.URL(r.route), nil, ck)
				if resp.StatusCode != r.status {
					t.Errorf("%s: status: got %v, want %v (%s)", r.route, resp.StatusCode, r.status, resp.Body)
				}
				if r.status != 200 {
					if got := resp.Reason(); got != r.reason.String() {
						t.Errorf("%s: reason: got %q, want %q", r.route, got, r.reason)
					}
				}
				if c := resp.Cookie("id_token"); c != nil {
					t.Errorf("%s: id_token set: %v", r.route, c)
				}
				bridgetest.WantRequests(t, e.B, r.route, map[bridge.Mode]map[bridge.Source]uint64{bridgetest.Routes[r.route]: {r.source: 1}})
				bridgetest.WantReasons(t, e.B, r.route, map[bridge.Reason]uint64{r.reason: 1})
			}
			logs := e.Logs.String()
			for _, want := range tt.wantLogs {
				if !strings.Contains(logs, want) {
					t.Errorf("logs lack %q:\n%s", want, logs)
				}
			}
			if n, _ := e.RDB.Exists(context.Background(), key).Result(); n != 1 {
				t.Errorf("session key: got %v, want it kept", n)
			}
		})
	}
}

// TestSourceConfigErrors: the constructors name what is missing.
func TestSourceConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  redisstore.SourceConfig
		want string
	}{
		{name: "no client", cfg: redisstore.SourceConfig{CookieName: "s"}, want: "Client"},
		{name: "no cookie", cfg: redisstore.SourceConfig{Client: redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})}, want: "CookieName"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := redisstore.NewSource(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error naming %s", err, tt.want)
			}
		})
	}
}
