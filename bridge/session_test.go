package bridge

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// TestStoreSourceOneRedisGet: the bridge and a legacy handler reading
// store.Get later in the same request share one Redis GET.
func TestStoreSourceOneRedisGet(t *testing.T) {
	srv := redistest.New(t)
	tests := []struct {
		name    string
		mode    Mode
		rollout int
		convert bool
	}{
		{name: "legacy", mode: Legacy, rollout: 100},
		{name: "dual unconverted", mode: Dual, rollout: 0},
		{name: "dual converted", mode: Dual, rollout: 100, convert: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnvOn(t, srv, nil)
			if err := e.b.SetMode("/legacy/app", tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := e.b.SetRolloutPercent(tt.rollout); err != nil {
				t.Fatal(err)
			}
			ck, _ := e.session(t, testUser("1"))
			resetRedisStats(t, e.srv)
			resp := do(t, e.ts.Client(), http.MethodGet, e.url("/legacy/app"), nil, ck)
			if resp.StatusCode != 200 {
				t.Fatalf("status: got %v, want 200 (%s)", resp.StatusCode, resp.Body)
			}
			if got := resp.Header.Get("X-Session-User"); got != "1" {
				t.Errorf("legacy handler's session user: got %q, want 1", got)
			}
			if got := resp.identity(t); got.Source != "session" || got.Subject != "1" {
				t.Errorf("identity: got %s/%s, want 1/session", got.Subject, got.Source)
			}
			if got := e.srv.CommandCalls("get"); got != 1 {
				t.Errorf("Redis GETs: got %v, want 1", got)
			}
			if got := redisCalls(t, e.srv); len(got) != 1 {
				t.Errorf("Redis commands: got %v, want one GET", got)
			}
			if got := resp.cookie("id_token") != nil; got != tt.convert {
				t.Errorf("converted: got %v, want %v", got, tt.convert)
			}
			if c := resp.cookie(testSessionName); c != nil {
				t.Errorf("legacy cookie rewritten: %v", c)
			}
		})
	}
}

// sourceCase builds a session source on e and saves a session for it.
type sourceCase struct {
	name string
	// source returns the source for the bridge.
	source func(t *testing.T, e *testEnv) SessionSource
	// save stores values as a session living ttl and returns its cookie,
	// raw ID and Redis key.
	save func(t *testing.T, e *testEnv, values map[any]any, ttl time.Duration) (*http.Cookie, string, string)
	// knowsTTL: the source reads the session's remaining TTL.
	knowsTTL bool
}

func saveWith(mod func(*redisstore.Config)) func(t *testing.T, e *testEnv, values map[any]any, ttl time.Duration) (*http.Cookie, string, string) {
	return func(t *testing.T, e *testEnv, values map[any]any, ttl time.Duration) (*http.Cookie, string, string) {
		t.Helper()
		s := newTestStore(t, e.rdb, func(c *redisstore.Config) {
			c.Options = &sessions.Options{Path: "/", MaxAge: int(ttl / time.Second), HttpOnly: true}
			if mod != nil {
				mod(c)
			}
		})
		ck, id := saveSession(t, s, values)
		e.secret(ck.Value, id)
		return ck, id, s.Key(id)
	}
}

func saveRbcervilla(t *testing.T, e *testEnv, values map[any]any, ttl time.Duration) (*http.Cookie, string, string) {
	t.Helper()
	ck, id := saveRbcervillaSession(t, e.rdb, values, ttl)
	e.secret(ck.Value, id)
	return ck, id, "session:" + id
}

func jsonStore(c *redisstore.Config) { c.Serializer = redisstore.JSONSerializer{} }

func prefixStore(c *redisstore.Config) { c.KeyPrefix = "app:sess:" }

var sourceCases = []sourceCase{
	{
		name:   "store gob",
		source: func(t *testing.T, e *testEnv) SessionSource { return StoreSource(e.store, testSessionName) },
		save:   saveWith(nil),
	},
	{
		name: "store json",
		source: func(t *testing.T, e *testEnv) SessionSource {
			return StoreSource(newTestStore(t, e.rdb, jsonStore), testSessionName)
		},
		save: saveWith(jsonStore),
	},
	{
		name: "boj",
		source: func(t *testing.T, e *testEnv) SessionSource {
			s, err := BojSource(e.rdb, testSessionName, testKeyPairs()...)
			if err != nil {
				t.Fatalf("BojSource: %v", err)
			}
			return s
		},
		save:     saveWith(nil),
		knowsTTL: true,
	},
	{
		name: "redis json",
		source: func(t *testing.T, e *testEnv) SessionSource {
			s, err := RedisSource(RedisSourceConfig{Client: e.rdb, CookieName: testSessionName, KeyPrefix: "session_",
				KeyPairs: testKeyPairs(), Serializer: redisstore.JSONSerializer{}})
			if err != nil {
				t.Fatalf("RedisSource: %v", err)
			}
			return s
		},
		save:     saveWith(jsonStore),
		knowsTTL: true,
	},
	{
		name: "redis prefix",
		source: func(t *testing.T, e *testEnv) SessionSource {
			s, err := RedisSource(RedisSourceConfig{Client: e.rdb, CookieName: testSessionName, KeyPrefix: "app:sess:",
				KeyPairs: testKeyPairs()})
			if err != nil {
				t.Fatalf("RedisSource: %v", err)
			}
			return s
		},
		save:     saveWith(prefixStore),
		knowsTTL: true,
	},
	{
		name: "rbcervilla",
		source: func(t *testing.T, e *testEnv) SessionSource {
			s, err := RbcervillaSource(e.rdb, testSessionName)
			if err != nil {
				t.Fatalf("RbcervillaSource: %v", err)
			}
			return s
		},
		save:     saveRbcervilla,
		knowsTTL: true,
	},
}

// envWithSource is a test environment on srv whose bridge reads sessions
// with sc's source.
func envWithSource(t *testing.T, srv *redistest.Server, sc sourceCase, mod func(*Config)) *testEnv {
	t.Helper()
	return newTestEnvOn(t, srv, func(e *testEnv, c *Config) {
		c.Sessions = sc.source(t, e)
		if mod != nil {
			mod(c)
		}
	})
}

func TestSessionSources(t *testing.T) {
	srv := redistest.New(t)
	values := func() map[any]any {
		return map[any]any{"user_id": "42", "username": "ada", "roles": []string{"user", "admin"}}
	}
	for _, sc := range sourceCases {
		t.Run(sc.name, func(t *testing.T) {
			e := envWithSource(t, srv, sc, nil)
			const ttl = 10 * time.Minute
			ck, id, key := sc.save(t, e, values(), ttl)
			before, err := e.rdb.PTTL(context.Background(), key).Result()
			if err != nil || before <= 0 {
				t.Fatalf("PTTL %s: got %v (%v), want > 0", key, before, err)
			}

			// The source itself.
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.AddCookie(ck)
			sess, err := e.b.cfg.Sessions.Load(r)
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
			resetRedisStats(t, e.srv)
			resp := do(t, e.ts.Client(), http.MethodGet, e.url("/dual"), nil, ck)
			if resp.StatusCode != 200 {
				t.Fatalf("status: got %v, want 200 (%s)", resp.StatusCode, resp.Body)
			}
			id2 := resp.identity(t)
			if id2.Source != "session" || id2.Subject != "42" || id2.Name != "ada" || strings.Join(id2.Roles, ",") != "user,admin" {
				t.Errorf("identity: got %+v, want session 42/ada/[user admin]", id2)
			}
			if got := e.srv.CommandCalls("get"); got != 1 {
				t.Errorf("Redis GETs: got %v, want 1", got)
			}
			if c := resp.cookie(testSessionName); c != nil {
				t.Errorf("legacy cookie rewritten: %v", c)
			}
			if got := redisCalls(t, e.srv); got["set"]+got["setex"]+got["expire"]+got["pexpire"] != 0 {
				t.Errorf("Redis writes: got %v, want none", got)
			}
			after, _ := e.rdb.PTTL(context.Background(), key).Result()
			if after > before {
				t.Errorf("session TTL extended: %v then %v", before, after)
			}

			tok := resp.cookie("id_token")
			if tok == nil {
				t.Fatalf("not converted")
			}
			e.secret(tok.Value)
			claims := tokenClaims(t, tok.Value)
			if claims.Subject != "42" || claims.SID != e.b.sids.sid(id) {
				t.Errorf("claims: got sub %q sid %q, want 42 and the session's sid", claims.Subject, claims.SID)
			}
			limit := DefaultTokenTTL
			if sc.knowsTTL {
				limit = ttl
			}
			if got := time.Duration(tok.MaxAge) * time.Second; got > limit || got < limit-5*time.Second {
				t.Errorf("Max-Age: got %v, want about %v", got, limit)
			}
			resp = do(t, e.ts.Client(), http.MethodGet, e.url("/dual"), nil, e.jwtCookie(tok.Value), ck)
			if got := resp.identity(t).Source; got != "jwt_cookie" {
				t.Errorf("next request: source: got %v, want jwt_cookie", got)
			}

			// Delete removes the session from the store.
			if err := e.b.cfg.Sessions.Delete(context.Background(), sess); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if n, _ := e.rdb.Exists(context.Background(), key).Result(); n != 0 {
				t.Errorf("after Delete: key exists")
			}
			r = httptest.NewRequest(http.MethodGet, "/", nil) // gorilla caches sessions per request
			r.AddCookie(ck)
			if _, err := e.b.cfg.Sessions.Load(r); !errors.Is(err, ErrSessionNotFound) {
				t.Errorf("Load after Delete: got %v, want ErrSessionNotFound", err)
			}
		})
	}
}

// TestSessionCookieFaults: legacy cookies that fail verification or name
// no session are refused (401 where auth is needed) and never converted.
func TestSessionCookieFaults(t *testing.T) {
	srv := redistest.New(t)
	signed := func(keyPairs ...[]byte) func(t *testing.T, e *testEnv, id string) string {
		return func(t *testing.T, e *testEnv, id string) string {
			v, err := securecookie.EncodeMulti(testSessionName, id, securecookie.CodecsFromPairs(keyPairs...)...)
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
		value  func(t *testing.T, e *testEnv, id, ck string) string
		raw    bool // send the value as a raw Cookie header
		delete bool // delete the session's key first
		jwt    bool // also send an expired JWT cookie
		signed bool // only for sources with signed cookies
		status int
		reason Reason
	}{
		{name: "valid", value: func(_ *testing.T, _ *testEnv, _, ck string) string { return ck }, status: 200},
		{name: "bad MAC", signed: true, value: func(_ *testing.T, _ *testEnv, _, ck string) string { return tamper(ck) },
			status: 401, reason: ReasonSessionInvalid},
		{name: "unknown key", signed: true, value: func(t *testing.T, e *testEnv, id, _ string) string {
			return signed(unknownHashKey, nil)(t, e, id)
		}, status: 401, reason: ReasonSessionInvalid},
		{name: "previous key", signed: true, value: func(t *testing.T, e *testEnv, id, _ string) string {
			return signed(oldHashKey, nil)(t, e, id)
		}, status: 200},
		{name: "over 4096 bytes", value: func(_ *testing.T, _ *testEnv, _, ck string) string {
			return ck + strings.Repeat("A", 4097-len(ck))
		}, status: 401, reason: ReasonSessionInvalid},
		{name: "unparsable", raw: true, value: func(_ *testing.T, _ *testEnv, _, ck string) string { return ck[:4] + `\` + ck[4:] },
			status: 401, reason: ReasonSessionInvalid},
		{name: "key gone", delete: true, jwt: true, value: func(_ *testing.T, _ *testEnv, _, ck string) string { return ck },
			status: 401, reason: ReasonSessionUnknown},
		{name: "unknown id", value: func(t *testing.T, e *testEnv, id, ck string) string {
			if ck == id { // rbcervilla: the raw ID
				return redisstore.NewID()
			}
			return signed(testHashKey, testBlockKey)(t, e, redisstore.NewID())
		}, status: 401, reason: ReasonSessionUnknown},
	}
	sources := []sourceCase{sourceCases[0], sourceCases[2], sourceCases[5]} // store, boj, rbcervilla
	for _, sc := range sources {
		for _, tt := range tests {
			if tt.signed && sc.name == "rbcervilla" {
				continue
			}
			t.Run(sc.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				e := envWithSource(t, srv, sc, nil)
				ck, id, key := sc.save(t, e, testUser("1"), 10*time.Minute)
				if tt.delete {
					if err := e.rdb.Del(context.Background(), key).Err(); err != nil {
						t.Fatal(err)
					}
				}
				v := tt.value(t, e, id, ck.Value)
				e.secret(v)
				hdr := http.Header{}
				var cookies []*http.Cookie
				if tt.raw {
					hdr.Set("Cookie", testSessionName+"="+v)
				} else {
					cookies = append(cookies, &http.Cookie{Name: testSessionName, Value: v})
				}
				if tt.jwt {
					cookies = append(cookies, e.jwtCookie(expiredToken(t, e)))
				}

				for _, route := range []string{"/legacy", "/dual"} {
					resp := do(t, e.ts.Client(), http.MethodGet, e.url(route), hdr, cookies...)
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
						e.secret(c.Value)
						if c.Name == "id_token" {
							set = append(set, c)
						}
					}
					switch {
					case route == "/legacy":
						if len(resp.Cookies()) != 0 {
							t.Errorf("%s: Set-Cookie: got %v, want none", route, cookiesDesc(resp.Cookies()...))
						}
					case tt.status == 200:
						if len(set) != 1 || set[0].MaxAge <= 0 {
							t.Errorf("%s: id_token: got %v, want a minted cookie", route, cookiesDesc(set...))
						}
					case tt.jwt:
						if len(set) != 1 || set[0].MaxAge >= 0 {
							t.Errorf("%s: id_token: got %v, want one clearing Set-Cookie", route, cookiesDesc(set...))
						}
					default:
						if len(resp.Cookies()) != 0 {
							t.Errorf("%s: Set-Cookie: got %v, want none", route, cookiesDesc(resp.Cookies()...))
						}
					}
					if resp.StatusCode == 401 {
						if got := resp.reason(); got != tt.reason.String() {
							t.Errorf("%s: reason: got %q, want %q", route, got, tt.reason)
						}
					}
					mode := testRoutes[route]
					source := SourceSession
					reasons := map[Reason]uint64{}
					if tt.status != 200 {
						source = SourceRejected
						reasons[tt.reason] = 1
					}
					if tt.jwt {
						reasons[ReasonCookieExpired] = 1
					}
					wantRequests(t, e.b, route, map[Mode]map[Source]uint64{mode: {source: 1}})
					wantReasons(t, e.b, route, reasons)
				}
				// The session (when it was there) is left alone.
				if !tt.delete {
					if n, _ := e.rdb.Exists(context.Background(), key).Result(); n != 1 {
						t.Errorf("session key: got %v, want it kept", n)
					}
				}
			})
		}
	}
}

// ghostCart is gob-encoded under a registered name that is then changed
// in the bytes, giving a session value of a type nobody registered.
type ghostCart struct{ Items []string }

var registerGhost sync.Once

// unregisteredGob returns gob of values plus a value of the unregistered
// type "sbtest.GhostZ".
func unregisteredGob(t *testing.T, values map[any]any) []byte {
	t.Helper()
	registerGhost.Do(func() { gob.RegisterName("sbtest.GhostA", ghostCart{}) })
	values["cart"] = ghostCart{Items: []string{"book"}}
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
		sc       sourceCase
		data     func(t *testing.T) []byte
		wantLogs []string
	}{
		{sc: sourceCases[0], data: func(t *testing.T) []byte { return unregisteredGob(t, testUser("1")) },
			wantLogs: []string{"sbtest.GhostZ", "gob.Register"}},
		{sc: sourceCases[2], data: func(t *testing.T) []byte { return unregisteredGob(t, testUser("1")) },
			wantLogs: []string{"sbtest.GhostZ", "gob.Register"}},
		{sc: sourceCases[5], data: func(t *testing.T) []byte { return unregisteredGob(t, testUser("1")) },
			wantLogs: []string{"sbtest.GhostZ", "gob.Register"}},
		{sc: sourceCases[0], data: func(*testing.T) []byte { return []byte("not gob at all") },
			wantLogs: []string{"gob decode"}},
		{sc: sourceCases[3], data: func(*testing.T) []byte { return []byte("{not json") },
			wantLogs: []string{"JSON decode"}},
	}
	for _, tt := range tests {
		name := tt.sc.name + "/" + strings.ReplaceAll(tt.wantLogs[0], " ", "_")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := envWithSource(t, srv, tt.sc, nil)
			ck, _, key := tt.sc.save(t, e, testUser("1"), 10*time.Minute)
			if err := e.rdb.Set(context.Background(), key, tt.data(t), 10*time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			routes := []struct {
				route  string
				status int
				source Source
				reason Reason
			}{
				{"/dual", 500, SourceRejected, ReasonSessionUndecodable},
				{"/legacy", 200, SourceRejected, ReasonSessionUndecodable},
				{"/jwt", 401, SourceRejected, ReasonSessionOnJWT},
			}
			for _, r := range routes {
				resp := do(t, e.ts.Client(), http.MethodGet, e.url(r.route), nil, ck)
				if resp.StatusCode != r.status {
					t.Errorf("%s: status: got %v, want %v (%s)", r.route, resp.StatusCode, r.status, resp.Body)
				}
				if r.status != 200 {
					if got := resp.reason(); got != r.reason.String() {
						t.Errorf("%s: reason: got %q, want %q", r.route, got, r.reason)
					}
				}
				if c := resp.cookie("id_token"); c != nil {
					t.Errorf("%s: id_token set: %v", r.route, c)
				}
				wantRequests(t, e.b, r.route, map[Mode]map[Source]uint64{testRoutes[r.route]: {r.source: 1}})
				wantReasons(t, e.b, r.route, map[Reason]uint64{r.reason: 1})
			}
			logs := e.logs.String()
			for _, want := range tt.wantLogs {
				if !strings.Contains(logs, want) {
					t.Errorf("logs lack %q:\n%s", want, logs)
				}
			}
			if n, _ := e.rdb.Exists(context.Background(), key).Result(); n != 1 {
				t.Errorf("session key: got %v, want it kept", n)
			}
		})
	}
}

// TestSourceConfigErrors: the constructors name what is missing.
func TestSourceConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  RedisSourceConfig
		want string
	}{
		{name: "no client", cfg: RedisSourceConfig{CookieName: "s"}, want: "Client"},
		{name: "no cookie", cfg: RedisSourceConfig{Client: redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})}, want: "CookieName"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := RedisSource(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

func TestDefaultClaims(t *testing.T) {
	tests := []struct {
		name    string
		values  map[any]any
		sub     string
		uname   string
		roles   string
		wantErr bool
	}{
		{name: "strings", values: map[any]any{"user_id": "7", "username": "u", "roles": []string{"a", "b"}}, sub: "7", uname: "u", roles: "a,b"},
		{name: "int", values: map[any]any{"user_id": 7, "role": "admin"}, sub: "7", roles: "admin"},
		{name: "int64", values: map[any]any{"user_id": int64(1) << 40}, sub: "1099511627776"},
		{name: "uint64", values: map[any]any{"user_id": uint64(1) << 63}, sub: "9223372036854775808"},
		{name: "json number", values: map[any]any{"user_id": float64(123456789), "roles": []any{"x", 3, "y"}}, sub: "123456789", roles: "x,y"},
		{name: "roles string", values: map[any]any{"user_id": "1", "roles": "solo", "role": "ignored"}, sub: "1", roles: "solo"},
		{name: "no user", values: map[any]any{"username": "guest"}, uname: "guest"},
		{name: "bad type", values: map[any]any{"user_id": true}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := DefaultClaims(tt.values)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error: got %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if c.Subject != tt.sub || c.Name != tt.uname || strings.Join(c.Roles, ",") != tt.roles {
				t.Errorf("got %q/%q/%v, want %q/%q/%s", c.Subject, c.Name, c.Roles, tt.sub, tt.uname, tt.roles)
			}
		})
	}
}

func TestSIDHash(t *testing.T) {
	h := newSIDHash([]byte("k1"))
	id := redisstore.NewID()
	if got, again := h.sid(id), h.sid(id); got != again {
		t.Errorf("sid not stable: got %q then %q", got, again)
	}
	if got := h.sid(id); got == id || strings.Contains(id, got) || len(got) != 24 {
		t.Errorf("sid: got %q, want a 24-character hash unlike the ID", got)
	}
	if a, b := h.sid(id), newSIDHash([]byte("k2")).sid(id); a == b {
		t.Errorf("sid under two keys: got %q for both, want different", a)
	}
	if h.inRollout(id, 0) || !h.inRollout(id, 100) {
		t.Errorf("inRollout 0/100: got %v/%v, want false/true", h.inRollout(id, 0), h.inRollout(id, 100))
	}
	// Monotonic: in at p means in at every larger p.
	for i := range 100 {
		id := redisstore.NewID()
		was := false
		for p := 0; p <= 100; p++ {
			in := h.inRollout(id, p)
			if was && !in {
				t.Fatalf("session %d: in at %d%% but out at %d%%", i, p-1, p)
			}
			was = in
		}
	}
}

func TestMintFor(t *testing.T) {
	clock := newTestClock()
	b := newTestBridge(t, func(c *Config) { c.Now = clock.Now; c.TokenTTL = 10 * time.Minute })
	tests := []struct {
		name    string
		ttl     time.Duration
		values  map[any]any
		wantExp time.Duration
		wantErr bool
	}{
		{name: "unknown ttl", ttl: 0, values: testUser("1"), wantExp: 10 * time.Minute},
		{name: "longer session", ttl: time.Hour, values: testUser("1"), wantExp: 10 * time.Minute},
		{name: "shorter session", ttl: 90 * time.Second, values: testUser("1"), wantExp: 90 * time.Second},
		{name: "dying session", ttl: 500 * time.Millisecond, values: testUser("1"), wantErr: true},
		{name: "no subject", values: map[any]any{"username": "guest"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := clock.Now()
			tok, c, err := b.mintFor(tt.values, tt.ttl, b.sids.sid("raw-id"), now)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error: got %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if got := c.ExpiresAt.Sub(now); got != tt.wantExp {
				t.Errorf("exp-now: got %v, want %v", got, tt.wantExp)
			}
			if strings.Contains(tok, "raw-id") || c.SID == "raw-id" || c.SID != b.sids.sid("raw-id") {
				t.Errorf("sid: got %q, want the keyed hash of the ID", c.SID)
			}
			e, err := b.verifier.verify(tok)
			if err != nil {
				t.Fatalf("verify minted token: %v", err)
			}
			if e.claims.Subject != "1" {
				t.Errorf("sub: got %q, want 1", e.claims.Subject)
			}
		})
	}
}
