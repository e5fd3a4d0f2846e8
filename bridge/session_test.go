package bridge_test

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/boj/redistore"
	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
	"github.com/sessionbridge/sessionbridge/internal/bridgetest"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// The session-source tests are internal/bridgetest's RunSession*, which
// bridge/redisstore/source_test.go runs on the read-only Redis sources
// (BojSource, RbcervillaSource, NewSource); here, on the app's own gorilla
// store through bridge.StoreSource.

// TestStoreSourceOneRedisGet: the bridge and a legacy handler reading
// store.Get later in the same request share one Redis GET (and a
// conversion adds one PTTL).
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
			// One GET; a conversion asks the session's remaining life
			// too (PTTL), once, so that the token cannot outlive it.
			want := map[string]int64{"get": 1}
			if tt.convert {
				want["pttl"] = 1
			}
			if got := bridgetest.RedisCalls(t, e.Srv); !maps.Equal(got, want) {
				t.Errorf("Redis commands: got %v, want %v", got, want)
			}
			if got := resp.Cookie(bridge.DefaultCookieName) != nil; got != tt.convert {
				t.Errorf("converted: got %v, want %v", got, tt.convert)
			}
			if c := resp.Cookie(bridgetest.SessionName); c != nil {
				t.Errorf("legacy cookie rewritten: %v", c)
			}
		})
	}
}

// mStoreSource is a source case reading with bridge.StoreSource over a
// redisstore.Store changed by mod (nil: e.Store), which saves too.
func mStoreSource(name string, mod func(*redisstore.Config)) bridgetest.SourceCase {
	return bridgetest.SourceCase{
		Name: name,
		New: func(t *testing.T, e *bridgetest.Env) (bridge.SessionSource, error) {
			store := e.Store
			if mod != nil {
				store = bridgetest.NewStore(t, e.RDB, mod)
			}
			return bridge.StoreSource(store, bridgetest.SessionName), nil
		},
		Save:          bridgetest.SaveWith(mod),
		StoreTellsTTL: true,
	}
}

var (
	mStoreGob  = mStoreSource("store gob", nil)
	mStoreJSON = mStoreSource("store json", func(c *redisstore.Config) { c.Serializer = redisstore.JSONSerializer{} })
)

// TestSessionSources: StoreSource loads the session (its TTL unknown),
// decodes gob or JSON, never writes to Redis, and deletes the session.
func TestSessionSources(t *testing.T) {
	bridgetest.RunSessionSources(t, bridge.SIDOf, mStoreGob, mStoreJSON)
}

// TestSessionCookieFaults: legacy cookies that fail verification or name
// no session are refused (401 where auth is needed) and never converted.
func TestSessionCookieFaults(t *testing.T) {
	bridgetest.RunSessionCookieFaults(t, mStoreGob)
}

// mStoreBoj reads with bridge.StoreSource over github.com/boj/redistore
// itself, which returns encoding/gob's errors as they are; sessions are
// saved in its format by a redisstore.Store.
var mStoreBoj = bridgetest.SourceCase{
	Name: "store boj/redistore",
	New: func(t *testing.T, e *bridgetest.Env) (bridge.SessionSource, error) {
		store, err := redistore.NewRediStoreWithURL(2, e.Srv.URL(), bridgetest.KeyPairs()...)
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { _ = store.Close() })
		return bridge.StoreSource(store, bridgetest.SessionName), nil
	},
	Save: bridgetest.SaveWith(nil),
}

// TestSessionUndecodable: stored values that cannot be decoded answer 500
// on dual with session_undecodable, and the logs name the missing type
// and a gob.Register call that compiles (&T{} for a pointer type):
// StoreSource passes redisstore.Store's ErrSessionUndecodable as it is,
// and takes a gob error of another store (boj/redistore's own) as the
// same, never as the store being unavailable.
func TestSessionUndecodable(t *testing.T) {
	bridgetest.RunSessionUndecodable(t,
		bridgetest.UndecodableCase{Source: mStoreGob, Data: bridgetest.Unregistered(true), WantLogs: []string{bridgetest.GhostPointerCall, "*bridgetest.ghostUserZ"}},
		bridgetest.UndecodableCase{Source: mStoreGob, Data: bridgetest.Unregistered(false), WantLogs: []string{bridgetest.GhostValueCall}},
		bridgetest.UndecodableCase{Source: mStoreBoj, Data: bridgetest.Unregistered(true), WantLogs: []string{bridgetest.GhostPointerCall}},
		bridgetest.UndecodableCase{Source: mStoreBoj, Data: bridgetest.Unregistered(false), WantLogs: []string{bridgetest.GhostValueCall}},
		bridgetest.UndecodableCase{Source: mStoreGob,
			Data:     func(*testing.T) []byte { return []byte("not gob at all") },
			WantLogs: []string{"gob decode"}},
	)
}

// TestSessionUndecodableCookieStore: a cookie-store cookie that verifies
// but holds a value of an unregistered type is session_undecodable (500
// on dual, with the gob.Register call in the logs), not session_invalid:
// securecookie reports gob's error as a decode error.
func TestSessionUndecodableCookieStore(t *testing.T) {
	cs := sessions.NewCookieStore(bridgetest.HashKey)
	e := bridgetest.NewEnv(t, func(_ *bridgetest.Env, c *bridge.Config) {
		c.Sessions = bridge.StoreSource(cs, bridgetest.SessionName)
	})
	// The cookie a cookie store would write for these bytes of gob.
	sc := securecookie.New(bridgetest.HashKey, nil).SetSerializer(securecookie.NopEncoder{})
	v, err := sc.Encode(bridgetest.SessionName, bridgetest.UnregisteredGob(t, bridgetest.User("1"), true))
	if err != nil {
		t.Fatal(err)
	}
	e.Secret(v)
	resp := bridgetest.Do(t, e.TS.Client(), http.MethodGet, e.URL("/dual"), nil, &http.Cookie{Name: bridgetest.SessionName, Value: v})
	if resp.StatusCode != http.StatusInternalServerError || resp.Reason() != bridge.ReasonSessionUndecodable.String() {
		t.Errorf("got %d %q, want 500 %s", resp.StatusCode, resp.Reason(), bridge.ReasonSessionUndecodable)
	}
	if logs := e.Logs.String(); !strings.Contains(logs, bridgetest.GhostPointerCall) {
		t.Errorf("logs lack %s:\n%s", bridgetest.GhostPointerCall, logs)
	}
}

// sessionUser and sessionAccount are user values real apps keep in their
// sessions (gob-registered structs).
type sessionUser struct {
	ID       int64
	Username string
	Roles    []string
}

type sessionAccount struct {
	UserID string
	Name   string
	Role   string
	secret string
}

type accountID int32

// sessionKey is an app's own type of session key.
type sessionKey int

// oidcUser is a user an OIDC login put in the session.
type oidcUser struct {
	Subject string
	Groups  []string
}

// TestDefaultClaims: the shapes real apps store their user in (issue 14:
// an int64 under id, a *User struct under user) map to a user; a guest
// session to none; an unusable value to an error.
func TestDefaultClaims(t *testing.T) {
	tests := []struct {
		name    string
		values  map[any]any
		sub     string
		uname   string
		roles   string
		wantErr string
	}{
		{name: "strings", values: map[any]any{"user_id": "7", "username": "u", "roles": []string{"a", "b"}}, sub: "7", uname: "u", roles: "a,b"},
		{name: "int", values: map[any]any{"user_id": 7, "role": "admin"}, sub: "7", roles: "admin"},
		{name: "int64 under id", values: map[any]any{"id": int64(1) << 40, "authenticated": true}, sub: "1099511627776"},
		{name: "uint64", values: map[any]any{"user_id": uint64(1) << 63}, sub: "9223372036854775808"},
		{name: "int8 under uid", values: map[any]any{"uid": int8(-3)}, sub: "-3"},
		{name: "named integer under userID", values: map[any]any{"userID": accountID(42)}, sub: "42"},
		{name: "json number", values: map[any]any{"user_id": float64(123456789), "roles": []any{"x", 3, "y"}}, sub: "123456789", roles: "x,y"},
		{name: "roles string", values: map[any]any{"user_id": "1", "roles": "solo", "role": "ignored"}, sub: "1", roles: "solo"},
		{name: "struct pointer under user", values: map[any]any{"user": &sessionUser{ID: 9, Username: "bob", Roles: []string{"admin"}}}, sub: "9", uname: "bob", roles: "admin"},
		{name: "struct value", values: map[any]any{"user": sessionAccount{UserID: "u-1", Name: "Ann", Role: "editor", secret: "x"}}, sub: "u-1", uname: "Ann", roles: "editor"},
		{name: "session values override the struct's", values: map[any]any{"user": &sessionUser{ID: 9, Username: "bob"}, "username": "robert"}, sub: "9", uname: "robert"},
		{name: "first key wins", values: map[any]any{"user_id": "1", "id": "2"}, sub: "1"},
		{name: "empty first key", values: map[any]any{"user_id": "", "id": "2"}, sub: "2"},
		{name: "no user", values: map[any]any{"username": "guest", "cart": []string{"tea"}}, uname: "guest"},
		{name: "nil struct pointer", values: map[any]any{"user": (*sessionUser)(nil)}},
		{name: "zero user struct", values: map[any]any{"user": sessionUser{}}},
		{name: "zero id", values: map[any]any{"id": 0}},
		{name: "name key", values: map[any]any{"id": "3", "name": "Cy"}, sub: "3", uname: "Cy"},
		{name: "struct with Subject and Groups", values: map[any]any{"user": &oidcUser{Subject: "ab12", Groups: []string{"staff"}}}, sub: "ab12", roles: "staff"},
		{name: "bad type", values: map[any]any{"user_id": true}, wantErr: `"user_id" holds a bool`},
		{name: "struct without ID", values: map[any]any{"user": struct{ Email string }{"a@b"}}, wantErr: "without an ID field"},
		{name: "fractional number", values: map[any]any{"id": 1.5}, wantErr: "float64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := bridge.DefaultClaims(context.Background(), tt.values)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.Subject != tt.sub || u.Name != tt.uname || strings.Join(u.Roles, ",") != tt.roles {
				t.Errorf("got %q/%q/%v, want %q/%q/%s", u.Subject, u.Name, u.Roles, tt.sub, tt.uname, tt.roles)
			}
		})
	}
	// UserKey names the key: nothing else is looked at.
	u, err := bridge.UserKey("account")(context.Background(), map[any]any{"account": uint16(5), "user_id": "1"})
	if err != nil || u.Subject != "5" {
		t.Errorf("UserKey(account): %+v %v, want subject 5", u, err)
	}
	// The app's own key type (a logout that sets the user to nil is a
	// guest session).
	for v, want := range map[any]string{int64(77): "77", nil: ""} {
		u, err = bridge.UserKey(sessionKey(0))(context.Background(), map[any]any{sessionKey(0): v, "id": "1"})
		if err != nil || u.Subject != want {
			t.Errorf("UserKey(sessionKey(0)) of %v: %+v %v, want subject %q", v, u, err, want)
		}
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

// sStore is a gorilla store that StoreSource must delete through: by ID
// (redisstore.Store), by a Save with MaxAge -1 (rbcervilla/redisstore,
// which has no delete by ID), or not at all server-side (a cookie store:
// key is nil).
type sStore struct {
	name  string
	key   func(id string) string // the session's Redis key; nil: none
	store sessions.Store
}

// sStores are the stores of the deletion tests, on rdb.
func sStores(t *testing.T, rdb *redis.Client) []sStore {
	t.Helper()
	bojStore := bridgetest.NewStore(t, rdb, nil)
	rbStore := &bridgetest.RbcervillaStore{Client: rdb}
	return []sStore{
		{name: "delete by ID", store: bojStore, key: bojStore.Key},
		{name: "save MaxAge -1", store: rbStore, key: rbStore.Key},
		{name: "cookie store", store: sessions.NewCookieStore(bridgetest.HashKey)},
	}
}

// TestStoreSourceDelete: StoreSource deletes through any gorilla store:
// by ID where the store can, else with a Save of the loaded session with
// MaxAge -1, which deletes rbcervilla's key and leaves the copy a legacy
// handler reads in the same request as it was. A cookie store keeps
// nothing server-side: Delete succeeds and the cookie still loads (the
// sid's revocation refuses it; TestLogoutThroughAnyStore).
func TestStoreSourceDelete(t *testing.T) {
	srv := redistest.New(t)
	ctx := context.Background()
	for _, st := range sStores(t, srv.Client()) {
		t.Run(st.name, func(t *testing.T) {
			src := bridge.StoreSource(st.store, bridgetest.SessionName)
			ck, _ := bridgetest.SaveSession(t, st.store, bridgetest.User("1"))
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.AddCookie(ck)
			sess, err := src.Load(r)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if err := src.Delete(ctx, sess); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if g, _ := st.store.Get(r, bridgetest.SessionName); g.Options.MaxAge <= 0 || g.Values["user_id"] != "1" {
				t.Errorf("the request's copy after Delete: MaxAge %d, values %v; want it untouched", g.Options.MaxAge, g.Values)
			}
			r = httptest.NewRequest(http.MethodGet, "/", nil)
			r.AddCookie(ck)
			_, err = src.Load(r)
			if st.key == nil {
				if err != nil {
					t.Errorf("cookie store, Load after Delete: %v, want the cookie to load still", err)
				}
				return
			}
			if !errors.Is(err, bridge.ErrSessionNotFound) {
				t.Errorf("Load after Delete: got %v, want ErrSessionNotFound", err)
			}
			if n := srv.Client().Exists(ctx, st.key(sess.ID)).Val(); n != 0 {
				t.Errorf("session key after Delete: got %d, want 0", n)
			}
		})
	}
	t.Run("not loaded by the source", func(t *testing.T) {
		src := bridge.StoreSource(&bridgetest.RbcervillaStore{Client: srv.Client()}, bridgetest.SessionName)
		if err := src.Delete(ctx, &bridge.Session{ID: "x"}); err == nil {
			t.Error("Delete of a session StoreSource did not load, on a store without delete by ID: got nil, want an error")
		}
	})
}
