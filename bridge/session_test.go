package bridge_test

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

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
	"github.com/sessionbridge/sessionbridge/internal/bridgetest"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// The read-only Redis sources (redisstore.BojSource, RbcervillaSource,
// NewSource) are tested the same way in bridge/redisstore/source_test.go;
// here, the app's own gorilla store through bridge.StoreSource.

// TestStoreSourceOneRedisGet: the bridge and a legacy handler reading
// store.Get later in the same request share one Redis GET.
func TestStoreSourceOneRedisGet(t *testing.T) {
	srv := redistest.New(t)
	tests := []struct {
		name    string
		mode    bridge.Mode
		rollout int
		convert bool
	}{
		{name: "legacy", mode: bridge.Legacy, rollout: 100},
		{name: "dual unconverted", mode: bridge.Dual, rollout: 0},
		{name: "dual converted", mode: bridge.Dual, rollout: 100, convert: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := bridgetest.NewEnvOn(t, srv, nil)
			if err := e.B.SetMode("/legacy/app", tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := e.B.SetRolloutPercent(tt.rollout); err != nil {
				t.Fatal(err)
			}
			ck, _ := e.Session(t, bridgetest.User("1"))
			bridgetest.ResetRedisStats(t, e.Srv)
			resp := bridgetest.Do(t, e.TS.Client(), http.MethodGet, e.URL("/legacy/app"), nil, ck)
			if resp.StatusCode != 200 {
				t.Fatalf("status: got %v, want 200 (%s)", resp.StatusCode, resp.Body)
			}
			if got := resp.Header.Get("X-Session-User"); got != "1" {
				t.Errorf("legacy handler's session user: got %q, want 1", got)
			}
			if got := resp.Identity(t); got.Source != "session" || got.Subject != "1" {
				t.Errorf("identity: got %s/%s, want 1/session", got.Subject, got.Source)
			}
			if got := e.Srv.CommandCalls("get"); got != 1 {
				t.Errorf("Redis GETs: got %v, want 1", got)
			}
			if got := bridgetest.RedisCalls(t, e.Srv); len(got) != 1 {
				t.Errorf("Redis commands: got %v, want one GET", got)
			}
			if got := resp.Cookie("id_token") != nil; got != tt.convert {
				t.Errorf("converted: got %v, want %v", got, tt.convert)
			}
			if c := resp.Cookie(bridgetest.SessionName); c != nil {
				t.Errorf("legacy cookie rewritten: %v", c)
			}
		})
	}
}

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

// mSaveWith saves sessions with a redisstore.Store changed by mod.
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

func mJSONStore(c *redisstore.Config) { c.Serializer = redisstore.JSONSerializer{} }

var (
	mStoreGob = mSourceCase{
		name: "store gob",
		source: func(t *testing.T, e *bridgetest.Env) bridge.SessionSource {
			return bridge.StoreSource(e.Store, bridgetest.SessionName)
		},
		save: mSaveWith(nil),
	}
	mStoreJSON = mSourceCase{
		name: "store json",
		source: func(t *testing.T, e *bridgetest.Env) bridge.SessionSource {
			return bridge.StoreSource(bridgetest.NewStore(t, e.RDB, mJSONStore), bridgetest.SessionName)
		},
		save: mSaveWith(mJSONStore),
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

func TestSessionSources(t *testing.T) {
	srv := redistest.New(t)
	values := func() map[any]any {
		return map[any]any{"user_id": "42", "username": "ada", "roles": []string{"user", "admin"}}
	}
	for _, sc := range []mSourceCase{mStoreGob, mStoreJSON} {
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
			sid, _ := bridge.SIDHash(e.B.Config().SIDKey)
			if claims.Subject != "42" || claims.SID != sid(id) {
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
			r = httptest.NewRequest(http.MethodGet, "/", nil) // gorilla caches sessions per request
			r.AddCookie(ck)
			if _, err := src.Load(r); !errors.Is(err, bridge.ErrSessionNotFound) {
				t.Errorf("Load after Delete: got %v, want ErrSessionNotFound", err)
			}
		})
	}
}

// TestSessionCookieFaults: legacy cookies that fail verification or name
// no session are refused (401 where auth is needed) and never converted.
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
		status int
		reason bridge.Reason
	}{
		{name: "valid", value: func(_ *testing.T, _, ck string) string { return ck }, status: 200},
		{name: "bad MAC", value: func(_ *testing.T, _, ck string) string { return mTamper(ck) },
			status: 401, reason: bridge.ReasonSessionInvalid},
		{name: "unknown key", value: func(t *testing.T, id, _ string) string {
			return signed(bridgetest.UnknownHashKey, nil)(t, id)
		}, status: 401, reason: bridge.ReasonSessionInvalid},
		{name: "previous key", value: func(t *testing.T, id, _ string) string {
			return signed(bridgetest.OldHashKey, nil)(t, id)
		}, status: 200},
		{name: "over 4096 bytes", value: func(_ *testing.T, _, ck string) string {
			return ck + strings.Repeat("A", 4097-len(ck))
		}, status: 401, reason: bridge.ReasonSessionInvalid},
		{name: "unparsable", raw: true, value: func(_ *testing.T, _, ck string) string { return ck[:4] + `\` + ck[4:] },
			status: 401, reason: bridge.ReasonSessionInvalid},
		{name: "key gone", delete: true, jwt: true, value: func(_ *testing.T, _, ck string) string { return ck },
			status: 401, reason: bridge.ReasonSessionUnknown},
		{name: "unknown id", value: func(t *testing.T, _, _ string) string {
			return signed(bridgetest.HashKey, bridgetest.BlockKey)(t, redisstore.NewID())
		}, status: 401, reason: bridge.ReasonSessionUnknown},
	}
	sc := mStoreGob
	for _, tt := range tests {
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
// on dual with session_undecodable, and the logs name the missing type:
// StoreSource passes redisstore.Store's ErrSessionUndecodable as it is.
func TestSessionUndecodable(t *testing.T) {
	srv := redistest.New(t)
	tests := []struct {
		sc       mSourceCase
		data     func(t *testing.T) []byte
		wantLogs []string
	}{
		{sc: mStoreGob, data: func(t *testing.T) []byte { return mUnregisteredGob(t, bridgetest.User("1")) },
			wantLogs: []string{"sbtest.GhostZ", "gob.Register"}},
		{sc: mStoreGob, data: func(*testing.T) []byte { return []byte("not gob at all") },
			wantLogs: []string{"gob decode"}},
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
			c, err := bridge.DefaultClaims(tt.values)
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
	sid, inRollout := bridge.SIDHash([]byte("k1"))
	id := redisstore.NewID()
	if got, again := sid(id), sid(id); got != again {
		t.Errorf("sid not stable: got %q then %q", got, again)
	}
	if got := sid(id); got == id || strings.Contains(id, got) || len(got) != 24 {
		t.Errorf("sid: got %q, want a 24-character hash unlike the ID", got)
	}
	sid2, _ := bridge.SIDHash([]byte("k2"))
	if a, b := sid(id), sid2(id); a == b {
		t.Errorf("sid under two keys: got %q for both, want different", a)
	}
	if inRollout(id, 0) || !inRollout(id, 100) {
		t.Errorf("inRollout 0/100: got %v/%v, want false/true", inRollout(id, 0), inRollout(id, 100))
	}
	// Monotonic: in at p means in at every larger p.
	for i := range 100 {
		id := redisstore.NewID()
		was := false
		for p := 0; p <= 100; p++ {
			in := inRollout(id, p)
			if was && !in {
				t.Fatalf("session %d: in at %d%% but out at %d%%", i, p-1, p)
			}
			was = in
		}
	}
}

func TestMintFor(t *testing.T) {
	clock := bridgetest.NewClock()
	b, _, _ := bridgetest.NewBridge(t, func(c *bridge.Config) { c.Now = clock.Now; c.TokenTTL = 10 * time.Minute })
	sid, _ := bridge.SIDHash(b.Config().SIDKey)
	tests := []struct {
		name    string
		ttl     time.Duration
		values  map[any]any
		wantExp time.Duration
		wantErr bool
	}{
		{name: "unknown ttl", ttl: 0, values: bridgetest.User("1"), wantExp: 10 * time.Minute},
		{name: "longer session", ttl: time.Hour, values: bridgetest.User("1"), wantExp: 10 * time.Minute},
		{name: "shorter session", ttl: 90 * time.Second, values: bridgetest.User("1"), wantExp: 90 * time.Second},
		{name: "dying session", ttl: 500 * time.Millisecond, values: bridgetest.User("1"), wantErr: true},
		{name: "no subject", values: map[any]any{"username": "guest"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := clock.Now()
			tok, c, err := bridge.MintFor(b, tt.values, tt.ttl, sid("raw-id"), now)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error: got %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if got := c.ExpiresAt.Sub(now); got != tt.wantExp {
				t.Errorf("exp-now: got %v, want %v", got, tt.wantExp)
			}
			if strings.Contains(tok, "raw-id") || c.SID == "raw-id" || c.SID != sid("raw-id") {
				t.Errorf("sid: got %q, want the keyed hash of the ID", c.SID)
			}
			// The bridge verifies the minted token (as a bearer token,
			// through Check).
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header.Set("Authorization", "Bearer "+tok)
			r, err = b.Check(httptest.NewRecorder(), r)
			if err != nil {
				t.Fatalf("verify minted token: %v", err)
			}
			id, ok := bridge.IdentityFrom(r.Context())
			if !ok || id.Source() != bridge.SourceJWTBearer {
				t.Fatalf("verify minted token: identity %v (source %v), want one from the bearer token", ok, id.Source())
			}
			if id.Subject() != "1" {
				t.Errorf("sub: got %q, want 1", id.Subject())
			}
		})
	}
}
